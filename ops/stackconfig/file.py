"""`StackConfigFile`: a loaded stack file with a path-based edit API, saved atomically; `apply_changes` replays a
recorded change set on another copy."""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from ops.stackconfig.errors import ConfigEditError, PathNotFoundError
from ops.stackconfig.paths import KEY_FIELDS, _Index, _Key, _key_step, _noun, _parse, _selector
from ops.stackconfig.splice import _dash_col, _entry_end, _indent, _shift
from ops.stackconfig.values import (
    MISSING,
    Change,
    ChangeSet,
    _flow_of,
    _is_secure,
    _normalize,
    _same,
    _secret_overwrites,
    _to_node,
    _to_plain,
    unified_diff,
)
from stamps.atomicfile import write_atomic
from stamps.config.stackfile import StackFileError, bare_stack, parse_stack_text

# Candidate (mapping, sequence, offset) indents; the one that round-trips the file unchanged is used, so an
# edit never reformats untouched lines.
_INDENTS: Final[tuple[tuple[int, int, int], ...]] = ((2, 4, 2), (2, 2, 0), (2, 2, 2), (4, 4, 2), (4, 6, 4))


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
