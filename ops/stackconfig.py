"""Minimal, atomic, comment-preserving edits of `Pulumi.<stack>.yaml`: the only way playbooks change config.

The stack file lives in git and is reviewed as a diff, so every edit keeps comments, key order, flow style
(`{min: 3, max: 10}`), quoting and `secure:` entries, and records a change set a playbook can show.

Paths address the `config:` mapping: `stamps:cells[name=banking].replicas.min`, `stamps:tenants[id=startup]`,
`stamps:regions[0].drRegion`, `azure-native:location`. A first segment without `:` gets the default namespace.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import enum
import errno
import fcntl
import io
import json
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from stamps.atomicfile import PRIVATE, write_atomic
from stamps.config.stackfile import StackFileError, bare_stack, parse_stack_text
from stamps.errors import SafetyRefusal, UsageError

__all__ = [
    "KEY_FIELDS",
    "MISSING",
    "Change",
    "ChangeSet",
    "ConfigEditError",
    "LockInfo",
    "PathNotFoundError",
    "Secret",
    "StackConfigFile",
    "StackLockedError",
    "apply_changes",
    "lock_path",
    "redact",
    "stack_file_path",
    "stack_lock",
    "unified_diff",
]

# List items are addressed by these fields when present (cells and regions have `name`, tenants `id`).
KEY_FIELDS: Final[tuple[str, ...]] = ("name", "id")

# Candidate (mapping, sequence, offset) indents; the one that round-trips the file unchanged is used, so an
# edit never reformats untouched lines.
_INDENTS: Final[tuple[tuple[int, int, int], ...]] = ((2, 4, 2), (2, 2, 0), (2, 2, 2), (4, 4, 2), (4, 6, 4))


class ConfigEditError(UsageError):
    """An edit that cannot be made; the message names the offending path and what would be valid."""


class PathNotFoundError(ConfigEditError):
    """The path names a key or list item that does not exist.

    `final` is true when only the last step is missing (its parent exists): what `missing_ok` tolerates.
    """

    def __init__(self, message: str, *, final: bool) -> None:
        super().__init__(message)
        self.final = final


class StackLockedError(SafetyRefusal):
    """Another playbook holds the stack lock; the message says who, since when, and where the lock file is."""

    def __init__(self, stack: str, path: Path, holder: dict[str, Any] | None) -> None:
        self.stack = stack
        self.path = path
        self.holder = holder or {}
        if holder:
            who = (
                f"playbook '{holder.get('holder', '?')}' (pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
            )
        else:
            who = "another process (it has not recorded who it is yet)"
        super().__init__(
            f"stack '{stack}' is locked by {who}; wait for it to finish, then rerun. "
            f"Playbooks on one stack never interleave (lock file: {path})."
        )


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


# ----------------------------------------------------------------------------------------------------
# Paths


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


# ----------------------------------------------------------------------------------------------------
# Values


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
        examples = [n for n in likes if isinstance(n, CommentedSeq)]
        s = CommentedSeq([_to_node(v, [i for e in examples for i in e][:8]) for v in value])
        flow = next((f for f in map(_flow_of, examples) if f is not None), None)
        if flow is None:
            # Lists of scalars are written inline in this repo (`compliance: [pci-dss, sox]`).
            flow = all(not isinstance(v, dict | list | Secret) for v in value)
        if flow:
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


# ----------------------------------------------------------------------------------------------------
# Text splicing: inserting/removing whole block entries by line keeps neighbouring comments where they were
# (ruamel attaches a comment to the *preceding* node: a structural delete would drop the next key's comment).


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _entry_end(lines: Sequence[str], start: int, col: int, dash_children: bool) -> int:
    """End (exclusive) of the block entry starting on `start` at column `col`.

    Deeper-indented comments belong to the entry; comments at or left of `col` introduce what follows.
    """
    end = start + 1
    for j in range(start + 1, len(lines)):
        text = lines[j].strip()
        if not text:
            continue
        ind = _indent(lines[j])
        if text.startswith("#"):
            if ind > col:
                end = j + 1
            continue
        if ind > col or (dash_children and ind == col and text.startswith("-")):
            end = j + 1
            continue
        break
    return end


def _dash_col(line: str, item_col: int) -> int | None:
    """Column of the `- ` introducing a block sequence item whose value starts at `item_col`, if it leads."""
    head = line[:item_col].rstrip()
    if not head.endswith("-") or head[:-1].strip():
        return None
    return len(head) - 1


def _shift(lines: Sequence[str], by: int) -> list[str] | None:
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif by >= 0:
            out.append(" " * by + line)
        elif line[:-by].strip():
            return None
        else:
            out.append(line[-by:])
    return out


# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    cpath: tuple[str | int, ...]  # concrete keys/indexes from the document root
    display: str  # normalised path: list items by [name=..]/[id=..] where possible
    exists: bool


def stack_file_path(project_dir: str | Path, stack: str) -> Path:
    """`Pulumi.<stack>.yaml` for a stack name that may be fully qualified (`org/project/prod`)."""
    return Path(project_dir) / f"Pulumi.{bare_stack(stack)}.yaml"


class StackConfigFile:
    """A loaded stack file with a path-based edit API; nothing touches disk until `save()`."""

    def __init__(self, path: str | Path, *, namespace: str = "stamps") -> None:
        self.path = Path(path)
        self.namespace = namespace
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise ConfigEditError(f"stack config file {self.path} does not exist") from None
        try:
            # The same strict reading as every other tool: duplicate keys, bombs, binary data are refused.
            parse_stack_text(data, str(self.path))
        except StackFileError as err:
            raise ConfigEditError(str(err)) from None
        text = data.decode("utf-8")
        self._yaml, self.roundtrip_clean = _pick_yaml(text)
        self._doc = self._load(text)
        self.original_text = text  # as loaded: the "before" of diff()
        self._disk_text = text  # what we last read or wrote: detects edits made behind our back
        self.changes = ChangeSet()

    @classmethod
    def for_stack(cls, project_dir: str | Path, stack: str, *, namespace: str = "stamps") -> StackConfigFile:
        return cls(stack_file_path(project_dir, stack), namespace=namespace)

    # -- reading -----------------------------------------------------------------------------------------

    def get(self, path: str, default: Any = MISSING) -> Any:
        """Plain value at `path` (secrets as Secret); `default` if given and the path does not exist."""
        try:
            r = self._resolve(path, final_missing_ok=False)
        except PathNotFoundError:
            if default is MISSING:
                raise
            return default
        return _to_plain(self._node(r.cpath))

    def exists(self, path: str) -> bool:
        try:
            return self._resolve(path, final_missing_ok=True).exists
        except PathNotFoundError:
            return False

    def keys(self, namespace: str | None = None) -> list[str]:
        """Config keys, optionally only those of one namespace."""
        config = self._config(create=False)
        keys = [str(k) for k in config] if config is not None else []
        return [k for k in keys if namespace is None or k.startswith(f"{namespace}:")]

    def render(self) -> str:
        """The file text with all edits applied (what `save()` would write); for dry runs."""
        if not self._doc and not self.original_text.strip():
            return ""  # ruamel would write `{}` for an empty stack file
        buf = io.StringIO()
        self._yaml.dump(self._doc, buf)
        return buf.getvalue()

    def diff(self, *, context: int = 3) -> str:
        """Unified diff from the text as loaded to the current edits; secure values redacted."""
        return unified_diff(self.original_text, self.render(), self.path.name, context=context)

    @property
    def dirty(self) -> bool:
        """True when the edits differ from what is on disk (since load or the last save)."""
        return self.render() != self._disk_text

    # -- editing -----------------------------------------------------------------------------------------

    def set(self, path: str, value: Any, *, allow_plaintext_over_secret: bool = False) -> Change | None:
        """Set a value (adding the last key if missing). Records nothing and returns None if already equal.

        A list item cannot be created by `set` (use `append`). A `{secure: ...}` value is only replaced by a
        Secret unless `allow_plaintext_over_secret` is passed.
        """
        value = _normalize(value, path)
        r = self._resolve(path, final_missing_ok=True)
        if not r.exists and not isinstance(r.cpath[-1], str):
            raise ConfigEditError(f"{r.display} does not exist; add list items with append()")
        old = _to_plain(self._node(r.cpath)) if r.exists else MISSING
        if old is not MISSING and _same(old, value):
            return None
        if old is not MISSING and not allow_plaintext_over_secret:
            clobbered = _secret_overwrites(old, value, r.display)
            if clobbered:
                raise ConfigEditError(
                    f"{', '.join(clobbered)} holds a secret ({{secure: ...}}); refusing to replace it with a "
                    "plain value. Set Secret(<ciphertext>) (from `pulumi config set --secret`), or pass "
                    "allow_plaintext_over_secret=True to store it unencrypted on purpose."
                )
        if r.exists:
            self._assign(r.cpath, value)
        else:
            self._config(create=True)
            self._insert_key(r.cpath[:-1], str(r.cpath[-1]), value)
        change = Change(r.display, copy.deepcopy(old), copy.deepcopy(value), "set")
        self.changes.append(change)
        return change

    def delete(self, path: str, *, missing_ok: bool = False) -> Change | None:
        """Delete a key or list item. With `missing_ok`, a missing last step records nothing (re-runs)."""
        try:
            r = self._resolve(path, final_missing_ok=missing_ok)
        except PathNotFoundError as err:
            if missing_ok and err.final:
                return None
            raise
        if not r.exists:
            return None
        old = _to_plain(self._node(r.cpath))
        self._remove(r.cpath)
        change = Change(r.display, old, MISSING, "delete")
        self.changes.append(change)
        return change

    def append(self, path: str, value: Any) -> Change | None:
        """Ensure `value` is in the list at `path` (created if the last key is missing).

        Config lists behave as sets: an equal item already present records nothing, so re-runs are no-ops.
        An item whose `name`/`id` matches an existing, different item is refused (use set on that item).
        """
        value = _normalize(value, path)
        r = self._resolve(path, final_missing_ok=True)
        if not r.exists:
            if not isinstance(r.cpath[-1], str):
                raise ConfigEditError(f"{r.display} does not exist")
            self._config(create=True)
            self._insert_key(r.cpath[:-1], str(r.cpath[-1]), [value])
        else:
            node = self._node(r.cpath)
            if not isinstance(node, CommentedSeq):
                raise ConfigEditError(f"{r.display} is a {_kind(node)}, not a list; append() adds list items")
            items = _to_plain(node)
            if any(_same(i, value) for i in items):
                return None
            if isinstance(value, dict):
                for f in KEY_FIELDS:
                    if f in value and any(isinstance(i, dict) and i.get(f) == value[f] for i in items):
                        raise ConfigEditError(
                            f"{r.display} already has a {_noun(r.display)} with {f} '{value[f]}' that "
                            f"differs; change it with set('{r.display}[{f}={value[f]}]', ...)"
                        )
            self._append_item(r.cpath, value)
        change = Change(r.display, MISSING, copy.deepcopy(value), "append")
        self.changes.append(change)
        return change

    def unapplied(self, changes: Iterable[Change]) -> list[Change]:
        """The changes whose effect is not (yet) in this file: a runner checks the saved file against them."""
        pending = []
        for c in changes:
            if c.op == "append":
                current = self.get(c.path, default=MISSING)
                ok = isinstance(current, list) and any(_same(i, c.new) for i in current)
            elif c.op == "delete":
                ok = not self.exists(c.path)
            else:
                ok = _same(self.get(c.path, default=MISSING), c.new)
            if not ok:
                pending.append(c)
        return pending

    # -- writing -----------------------------------------------------------------------------------------

    def save(self) -> bool:
        """Write atomically if anything changed; returns whether the file was written.

        Refuses if the file changed on disk since it was loaded (another editor) rather than lose that edit.
        """
        new = self.render()
        target = Path(os.path.realpath(self.path))
        try:
            current = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != self._disk_text:
            raise ConfigEditError(
                f"{self.path} changed on disk since it was loaded; reload it and re-apply the edits "
                "(nothing was written)"
            )
        if new == current:
            return False
        _remove_stale_temps(target)
        write_atomic(target, new)
        self._disk_text = new
        return True

    # -- internals ---------------------------------------------------------------------------------------

    def _load(self, text: str) -> Any:
        try:
            doc = self._yaml.load(text)
        except YAMLError as err:
            raise ConfigEditError(f"{self.path} is not valid YAML: {err}") from None
        if doc is None:
            doc = CommentedMap()
        if not isinstance(doc, CommentedMap):
            raise ConfigEditError(f"{self.path}: a stack file is a mapping with a `config:` key")
        return doc

    def _config(self, *, create: bool) -> CommentedMap | None:
        config = self._doc.get("config")
        if config is None and create:
            config = self._doc["config"] = CommentedMap()
        if config is not None and not isinstance(config, CommentedMap):
            raise ConfigEditError(f"{self.path}: `config:` must be a mapping")
        return config

    def _node(self, cpath: Sequence[str | int]) -> Any:
        node: Any = self._doc
        for step in cpath:
            node = node[step]
        return node

    def _resolve(self, path: str, *, final_missing_ok: bool) -> _Resolved:
        first, steps = _parse(path, self.namespace)
        config = self._config(create=False)
        if config is None or first not in config:
            if final_missing_ok and not steps:
                return _Resolved(("config", first), first, exists=False)
            ns = first.split(":", 1)[0]
            known = [k for k in (config or {}) if str(k).startswith(f"{ns}:")]
            raise PathNotFoundError(
                f"no config key '{first}' in {self.path.name}; known {ns}: keys: {_known(known, first)}",
                final=not steps,
            )
        node: Any = config[first]
        cpath: list[str | int] = ["config", first]
        display = first
        for n, step in enumerate(steps):
            last = n == len(steps) - 1
            if _is_secure(node):
                raise ConfigEditError(f"{display} is a secret ({{secure: ...}}); address the whole value")
            if isinstance(step, _Key):
                if not isinstance(node, CommentedMap):
                    raise ConfigEditError(f"{display} is a {_kind(node)}; it has no key '{step.name}'")
                if step.name not in node:
                    if last and final_missing_ok:
                        return _Resolved((*cpath, step.name), display + _key_step(step.name), exists=False)
                    raise PathNotFoundError(
                        f"no key '{step.name}' under {display}; known: {_known(list(node), step.name)}",
                        final=last,
                    )
                cpath.append(step.name)
                display += _key_step(step.name)
                node = node[step.name]
                continue
            if not isinstance(node, CommentedSeq):
                what = f"[{step.index}]" if isinstance(step, _Index) else f"[{step.field}={step.value}]"
                raise ConfigEditError(f"{display} is a {_kind(node)}, not a list; {what} selects list items")
            if isinstance(step, _Index):
                i = step.index + len(node) if step.index < 0 else step.index
                if not 0 <= i < len(node):
                    valid = f"valid: 0..{len(node) - 1}" if len(node) else "the list is empty"
                    raise PathNotFoundError(
                        f"index {step.index} out of range under {display} ({len(node)} items; {valid})",
                        final=last,
                    )
            else:
                matches = [
                    j for j, item in enumerate(node)
                    if isinstance(item, CommentedMap) and str(item.get(step.field)) == step.value
                ]
                if not matches:
                    noun = _noun(display)
                    what = (
                        f"no {noun} named '{step.value}'" if step.field == "name"
                        else f"no {noun} with {step.field} '{step.value}'"
                    )
                    known = [str(item.get(step.field)) for item in node
                             if isinstance(item, CommentedMap) and step.field in item]
                    if last and final_missing_ok:
                        return _Resolved((*cpath, len(node)), f"{display}[{step.field}={step.value}]", False)
                    raise PathNotFoundError(
                        f"{what} under {display}; known: {_known(known, step.value)}", final=last
                    )
                if len(matches) > 1:
                    raise ConfigEditError(
                        f"{len(matches)} items under {display} have {step.field}={step.value}; use an index "
                        f"({', '.join(map(str, matches))})"
                    )
                i = matches[0]
            item = node[i]
            cpath.append(i)
            display += _selector(_to_plain(item), _to_plain(node)) or f"[{i}]"
            node = item
        return _Resolved(tuple(cpath), display, exists=True)

    def _sibling_likes(self, cpath_map: Sequence[str | int], key: str) -> list[Any]:
        """Nodes under the same key in sibling list items: the style a new key should copy."""
        if len(cpath_map) < 2 or not isinstance(cpath_map[-1], int):
            return []
        parent = self._node(cpath_map[:-1])
        return [it[key] for it in parent if isinstance(it, CommentedMap) and key in it]

    def _assign(self, cpath: tuple[str | int, ...], value: Any) -> None:
        """Change the node at cpath to `value`, in place where the shape allows (keeps nested comments)."""
        node = self._node(cpath)
        if isinstance(node, CommentedMap) and not _is_secure(node) and isinstance(value, dict):
            for k in [k for k in node if k not in value]:
                self._remove((*cpath, k))
            for k, v in value.items():
                current = self._node(cpath)
                if k not in current:
                    self._insert_key(cpath, k, v)
                elif not _same(_to_plain(current[k]), v):
                    self._assign((*cpath, k), v)
            return
        if isinstance(node, CommentedSeq) and isinstance(value, list):
            n_old = len(node)
            for i in range(min(n_old, len(value))):
                if not _same(_to_plain(self._node(cpath)[i]), value[i]):
                    self._assign((*cpath, i), value[i])
            for i in reversed(range(len(value), n_old)):
                self._remove((*cpath, i))
            for v in value[n_old:]:
                self._append_item(cpath, v)
            return
        parent = self._node(cpath[:-1])
        key = cpath[-1]
        likes = [parent[key]]
        if isinstance(key, str):
            likes += self._sibling_likes(cpath[:-1], key)
        parent[key] = _to_node(value, likes)

    def _expected(self, mutate: Any) -> Any:
        data = _to_plain(self._doc)
        mutate(data)
        return data

    def _try_splice(self, new_lines: list[str], expected: Any) -> bool:
        """Adopt the spliced text if it parses to exactly the expected data."""
        try:
            doc = self._yaml.load("".join(new_lines))
        except YAMLError:
            return False
        if not _same(_to_plain(doc), expected):
            return False
        self._doc = doc
        return True

    def _fresh(self) -> tuple[Any, list[str]]:
        """The current edits re-parsed, so ruamel's line/column info matches the text being spliced."""
        text = self.render()
        return self._yaml.load(text), text.splitlines(keepends=True)

    def _remove(self, cpath: tuple[str | int, ...]) -> None:
        parent_path, key = cpath[:-1], cpath[-1]

        def mutate(data: Any) -> None:
            p = data
            for s in parent_path:
                p = p[s]
            del p[key]

        expected = self._expected(mutate)
        doc, lines = self._fresh()
        parent = doc
        for s in parent_path:
            parent = parent[s]
        span = self._entry_span(parent, key, lines)
        if span is not None and self._try_splice(lines[: span[0]] + lines[span[1]:], expected):
            return
        del self._node(parent_path)[key]

    def _entry_span(self, parent: Any, key: str | int, lines: Sequence[str]) -> tuple[int, int] | None:
        """Line range of a block entry that starts its line and is not the only entry (which would leave
        `key:` with no value); None where only a structural edit is safe."""
        if _flow_of(parent) or len(parent) < 2:
            return None
        if isinstance(parent, CommentedMap):
            line, col = parent.lc.key(key)
            if lines[line][:col].strip():
                return None
            value = parent[key]
            dash_children = isinstance(value, CommentedSeq) and not value.fa.flow_style()
            return line, _entry_end(lines, line, col, dash_children)
        line, item_col = parent.lc.item(key)
        col = _dash_col(lines[line], item_col)
        if col is None:
            return None
        return line, _entry_end(lines, line, col, False)

    def _insert_key(self, cpath_map: tuple[str | int, ...], key: str, value: Any) -> None:
        mapping = self._node(cpath_map)
        if not isinstance(mapping, CommentedMap):
            raise ConfigEditError(f"cannot add key '{key}': its parent is a {_kind(mapping)}")
        node = _to_node(value, self._sibling_likes(cpath_map, key))

        def mutate(data: Any) -> None:
            p = data
            for s in cpath_map:
                p = p[s]
            p[key] = copy.deepcopy(value)

        if len(mapping) and not _flow_of(mapping):
            expected = self._expected(mutate)
            doc, lines = self._fresh()
            fresh = doc
            for s in cpath_map:
                fresh = fresh[s]
            last = list(fresh)[-1]
            line, col = fresh.lc.key(last)
            last_value = fresh[last]
            dash_children = isinstance(last_value, CommentedSeq) and not last_value.fa.flow_style()
            at = _entry_end(lines, line, col, dash_children)
            fragment = _shift(self._dump_lines(CommentedMap([(key, node)])), col)
            if fragment is not None and self._try_splice(lines[:at] + fragment + lines[at:], expected):
                return
        mapping[key] = node

    def _append_item(self, cpath_seq: tuple[str | int, ...], value: Any) -> None:
        seq = self._node(cpath_seq)
        node = _to_node(value, list(seq))

        def mutate(data: Any) -> None:
            p = data
            for s in cpath_seq:
                p = p[s]
            p.append(copy.deepcopy(value))

        if len(seq) and not _flow_of(seq):
            expected = self._expected(mutate)
            doc, lines = self._fresh()
            fresh = doc
            for s in cpath_seq:
                fresh = fresh[s]
            line, item_col = fresh.lc.item(len(fresh) - 1)
            col = _dash_col(lines[line], item_col)
            if col is not None:
                at = _entry_end(lines, line, col, False)
                generated = self._dump_lines(CommentedMap([("k", CommentedSeq([node]))]))[1:]
                gen_col = _indent(generated[0]) if generated else 0
                fragment = _shift(generated, col - gen_col)
                if fragment is not None and self._try_splice(lines[:at] + fragment + lines[at:], expected):
                    return
        seq.append(node)

    def _dump_lines(self, obj: Any) -> list[str]:
        buf = io.StringIO()
        self._yaml.dump(obj, buf)
        return buf.getvalue().splitlines(keepends=True)


def _remove_stale_temps(target: Path) -> None:
    """Temp copies a killed write left next to the stack file (`stamps.atomicfile` names them
    `.<name>.<random>.tmp`); writes happen under the stack lock, so none of them is still being written."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _kind(node: Any) -> str:
    if _is_secure(node):
        return "secret"
    if isinstance(node, dict):
        return "mapping"
    if isinstance(node, list):
        return "list"
    return f"{type(node).__name__} value" if node is not None else "null value"


def _known(options: Sequence[Any], wanted: str) -> str:
    names = [str(o) for o in options]
    if not names:
        return "(none)"
    text = ", ".join(names)
    close = difflib.get_close_matches(wanted, names, n=1)
    return f"{text} (did you mean '{close[0]}'?)" if close else text


def _make_yaml(indent: tuple[int, int, int]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long lines or flow maps
    y.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    return y


def _pick_yaml(text: str) -> tuple[YAML, bool]:
    """The YAML settings that reproduce `text` byte for byte, so untouched lines never show in a diff."""
    for indent in _INDENTS:
        y = _make_yaml(indent)
        try:
            doc = y.load(text)
        except YAMLError:
            return y, False  # _load reports the parse error with the file name
        buf = io.StringIO()
        y.dump(doc, buf)
        if buf.getvalue() == text:
            return y, True
    return _make_yaml(_INDENTS[0]), False


def apply_changes(cfg: StackConfigFile, changes: Iterable[Change]) -> ChangeSet:
    """Replay a change set onto another copy of the stack file; returns what actually changed there."""
    applied = ChangeSet()
    for c in changes:
        if c.op == "append":
            done = cfg.append(c.path, c.new)
        elif c.op == "delete":
            done = cfg.delete(c.path, missing_ok=True)
        else:
            # A recorded set already passed the secret guard (or had explicit opt-in) when it was made.
            done = cfg.set(c.path, c.new, allow_plaintext_over_secret=True)
        if done is not None:
            applied.append(done)
    return applied


# ----------------------------------------------------------------------------------------------------
# Stack lock


@dataclass(frozen=True)
class LockInfo:
    """Who holds a stack lock; written into the lock file only so a refused playbook can say who."""

    holder: str
    pid: int
    host: str
    since: str
    path: Path


def lock_path(project_dir: str | Path, stack: str) -> Path:
    safe = re.sub(r"[^\w.-]", "_", bare_stack(stack))
    return Path(project_dir) / ".stamps" / "locks" / f"{safe}.lock"


@contextlib.contextmanager
def stack_lock(project_dir: str | Path, stack: str, holder: str = "playbook") -> Iterator[LockInfo]:
    """Hold the per-stack lock for the duration of a playbook, or fail at once with StackLockedError.

    `flock` on `.stamps/locks/<stack>.lock`: the kernel drops it when the holder dies, so a lock file left by
    a crashed playbook never blocks. It is per open file: a second attempt in the same process is refused too.
    """
    path = lock_path(project_dir, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 in one open (the record names who runs what), never through a planted symlink.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise StackLockedError(stack, path, _read_holder(fd)) from None
        os.fchmod(fd, PRIVATE)  # also tightens a lock file an older version created 0644
        info = LockInfo(holder, os.getpid(), socket.gethostname(),
                        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), path)
        payload = (json.dumps({"holder": info.holder, "pid": info.pid, "host": info.host, "since": info.since})
                   + "\n").encode()
        # One write, then cut what a longer stale record left behind: a reader sees a whole record, never a
        # half-written one.
        os.pwrite(fd, payload, 0)
        os.ftruncate(fd, len(payload))
        os.fsync(fd)
        try:
            yield info
        finally:
            # Clear the holder record before unlocking so nobody reads a stale "who".
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int, wait: float = 0.5) -> dict[str, Any] | None:
    """The holder's record; the lock is taken a moment before it is written, so an empty file is re-read
    for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            data = os.pread(fd, 4096, 0)
            info = json.loads(data.decode() or "null")
        except (OSError, ValueError):
            return None
        if info is not None or time.monotonic() >= deadline:
            return info if isinstance(info, dict) else None
        time.sleep(0.02)
