"""Values of stack-file edits: plain Python values in, ruamel nodes that keep the file's style out; `secure:`
entries as opaque `Secret`s that never show in change sets or diffs; the recorded `Change`s."""

from __future__ import annotations

import difflib
import enum
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from ops.stackconfig.errors import ConfigEditError
from ops.stackconfig.paths import _item_path, _key_step


class _Absent(enum.Enum):
    MISSING = "<absent>"

    def __repr__(self) -> str:
        return "<absent>"


# Old value of an added key, new value of a deleted one.
MISSING: Final = _Absent.MISSING


@dataclass(frozen=True)
class Secret:
    """A `{secure: <ciphertext>}` config value; the ciphertext never shows in repr/str, diffs, change sets."""

    ciphertext: str = field(repr=False)

    def __str__(self) -> str:
        return "[secret]"

    def __repr__(self) -> str:
        return "Secret([secret])"


class Change(NamedTuple):
    """One recorded edit: `op` is "set" (old MISSING = key added), "delete" or "append" (path = the list)."""

    path: str
    old: Any
    new: Any
    op: str = "set"

    def __str__(self) -> str:
        if self.op == "append":
            return f"{_item_path(self.path, self.new)}: added {_show(self.new)}"
        if self.op == "delete":
            return f"{self.path}: {_show(self.old)} -> (deleted)"
        if self.old is MISSING:
            return f"{self.path}: (absent) -> {_show(self.new)}"
        return f"{self.path}: {_show(self.old)} -> {_show(self.new)}"


class ChangeSet(list[Change]):
    """The edits a playbook made, in order; `str()` is one line per change with secrets redacted."""

    def __str__(self) -> str:
        return "\n".join(str(c) for c in self) if self else "(no config changes)"

    @property
    def paths(self) -> list[str]:
        return [c.path for c in self]


def _is_secure(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and "secure" in node and isinstance(node["secure"], str)


def _to_plain(node: Any) -> Any:
    """ruamel nodes -> plain Python; `{secure: x}` -> Secret(x)."""
    if _is_secure(node):
        return Secret(str(node["secure"]))
    if isinstance(node, dict):
        return {str(k): _to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_to_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _normalize(value: Any, path: str) -> Any:
    """Validate a caller's value and turn `{"secure": "..."}` into Secret."""
    if isinstance(value, Secret) or value is None:
        return value
    # Plain builtins only: a str/int subclass would never compare equal to what is loaded back.
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("secure"), str):
            return Secret(value["secure"])
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigEditError(f"{path}: mapping keys must be strings, got {k!r}")
            out[k] = _normalize(v, f"{path}{_key_step(k)}")
        return out
    if isinstance(value, list | tuple):
        return [_normalize(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise ConfigEditError(
        f"{path}: {type(value).__name__} cannot be stored in stack config "
        "(use str, int, float, bool, None, dict, list or Secret)"
    )


def _same(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 or 1 with 1.0 (a config type change is a change)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _show(value: Any) -> str:
    if value is MISSING:
        return "(absent)"
    return json.dumps(value, default=lambda o: "[secret]" if isinstance(o, Secret) else str(o))


def _secret_overwrites(old: Any, new: Any, path: str) -> list[str]:
    """Paths where a secret would be replaced by a plain value."""
    if isinstance(old, Secret):
        return [] if isinstance(new, Secret) else [path]
    if isinstance(old, dict) and isinstance(new, dict):
        return [p for k in old if k in new
                for p in _secret_overwrites(old[k], new[k], f"{path}{_key_step(k)}")]
    if isinstance(old, list) and isinstance(new, list):
        return [p for i, (o, n) in enumerate(zip(old, new, strict=False))
                for p in _secret_overwrites(o, n, f"{path}[{i}]")]
    return [] if isinstance(new, Secret) else _contains_secret(old, path)


def _contains_secret(node: Any, path: str) -> list[str]:
    if isinstance(node, Secret):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _contains_secret(v, f"{path}{_key_step(k)}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _contains_secret(v, f"{path}[{i}]")]
    return []


def _flow_of(node: Any) -> bool | None:
    if isinstance(node, CommentedMap | CommentedSeq):
        return bool(node.fa.flow_style())
    return None


def _to_node(value: Any, likes: Sequence[Any] = ()) -> Any:
    """Plain value -> ruamel node, styled like existing nodes in the same position (flow maps, quotes)."""
    if isinstance(value, Secret):
        return CommentedMap([("secure", value.ciphertext)])
    if isinstance(value, dict):
        examples = [n for n in likes if isinstance(n, CommentedMap) and not _is_secure(n)]
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _to_node(v, [e[k] for e in examples if k in e])
        flow = next((f for f in map(_flow_of, examples) if f is not None), False)
        if flow:
            m.fa.set_flow_style()
        else:
            m.fa.set_block_style()
        return m
    if isinstance(value, list):
        seqs = [n for n in likes if isinstance(n, CommentedSeq)]
        s = CommentedSeq([_to_node(v, [i for e in seqs for i in e][:8]) for v in value])
        seq_flow = next((f for f in map(_flow_of, seqs) if f is not None), None)
        if seq_flow is None:
            # Lists of scalars are written inline in this repo (`compliance: [pci-dss, sox]`).
            seq_flow = all(not isinstance(v, dict | list | Secret) for v in value)
        if seq_flow:
            s.fa.set_flow_style()
        else:
            s.fa.set_block_style()
        return s
    if isinstance(value, str):
        for like in likes:
            if isinstance(like, DoubleQuotedScalarString):
                return DoubleQuotedScalarString(value)
            if isinstance(like, SingleQuotedScalarString):
                return SingleQuotedScalarString(value)
    return value


def redact(text: str) -> str:
    """Hide `secure:` ciphertexts in any text shown to a person (diffs, logs)."""
    return re.sub(r"(\bsecure:\s*)([^\s,}\]]+)", r"\1[redacted]", text)


def unified_diff(old: str, new: str, name: str = "Pulumi.<stack>.yaml", *, context: int = 3) -> str:
    """The textual change as a reviewer sees it, secure values redacted; "" when nothing changed."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}", n=context
    )
    return redact("".join(line if line.endswith("\n") else line + "\n" for line in lines))
