"""The path language of stack-file edits: `stamps:cells[name=banking].replicas.min`, `stamps:tenants[id=startup]`,
`stamps:regions[0].drRegion`, `azure-native:location`; a first segment without `:` gets the default namespace.
List items are named by their `name`/`id` field where they have one, by index otherwise."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ops.stackconfig.errors import ConfigEditError

# List items are addressed by these fields when present (cells and regions have `name`, tenants `id`).
KEY_FIELDS: Final[tuple[str, ...]] = ("name", "id")

@dataclass(frozen=True)
class _Key:
    name: str


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Select:
    field: str
    value: str


_Step = _Key | _Index | _Select

_STEP_RE = re.compile(
    r"""\.(?P<key>[^.\[\]]+)"""
    r"""|\[(?P<idx>-?\d+)\]"""
    r"""|\[(?P<qk>["'])(?P<qkey>.*?)(?P=qk)\]"""
    r"""|\[(?P<field>[A-Za-z_][\w-]*)=(?P<q>["']?)(?P<val>[^\]]*?)(?P=q)\]"""
)


def _parse(path: str, namespace: str) -> tuple[str, list[_Step]]:
    m = re.match(r"[^.\[\]]+", path)
    if not m:
        raise ConfigEditError(f"bad config path {path!r}: it must start with a key such as 'stamps:cells'")
    first = m.group(0)
    if ":" not in first:
        first = f"{namespace}:{first}"
    steps: list[_Step] = []
    pos = m.end()
    while pos < len(path):
        sm = _STEP_RE.match(path, pos)
        if not sm:
            raise ConfigEditError(
                f"bad config path {path!r} at {path[pos:]!r}: use .key, [index], [name=value] or [\"key\"]"
            )
        if sm.group("key") is not None:
            steps.append(_Key(sm.group("key")))
        elif sm.group("idx") is not None:
            steps.append(_Index(int(sm.group("idx"))))
        elif sm.group("qkey") is not None:
            steps.append(_Key(sm.group("qkey")))
        else:
            steps.append(_Select(sm.group("field"), sm.group("val")))
        pos = sm.end()
    return first, steps


def _key_step(name: str) -> str:
    return f".{name}" if re.fullmatch(r"[^.\[\]\"']+", name) else f'["{name}"]'


def _selector(item: Any, siblings: Sequence[Any]) -> str | None:
    """`[name=x]` / `[id=x]` for a mapping item whose key field is unique among its siblings."""
    if not isinstance(item, dict):
        return None
    for f in KEY_FIELDS:
        v = item.get(f)
        unique = sum(1 for s in siblings if isinstance(s, dict) and s.get(f) == v) == 1
        if isinstance(v, str) and v and "]" not in v and unique:
            return f"[{f}={v}]"
    return None


def _item_path(list_path: str, item: Any) -> str:
    if isinstance(item, dict):
        for f in KEY_FIELDS:
            v = item.get(f)
            if isinstance(v, str) and v:
                return f"{list_path}[{f}={v}]"
    return f"{list_path}[+]"


def _noun(list_display: str) -> str:
    m = re.search(r"([A-Za-z]+)$", list_display.split(":")[-1])
    word = m.group(1) if m else ""
    return word[:-1] if len(word) > 1 and word.endswith("s") else "item"
