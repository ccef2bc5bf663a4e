"""Reading `Pulumi.<stack>.yaml` the way the Pulumi CLI does, but strictly, and stack names.

Every tool reads stack files through here (`stamps plan`, `stamps capacity`, `stamps-ops`, the stack-file
editor), so a file is accepted or refused the same way everywhere. Refused, with the file and the key named:
invalid UTF-8 or binary data, files over `MAX_STACK_FILE_BYTES`, duplicate keys (YAML keeps the last one
silently, the Go YAML parser of the CLI refuses them), aliases that expand past `MAX_NODES` values (a YAML
bomb: a few lines that expand exponentially) or refer to themselves, nesting deeper than `MAX_DEPTH`, a top
level that is not a mapping, a `config:` that is not a mapping, a namespace that looks like a typo of
`stamps:` (`stmaps:cells`), and a boolean where the model wants a number (`capacity: true` would otherwise be
read as 1).

Stack names: `prod`, `org/prod` and `org/project/prod` all name the same stack; the engine, URNs, file names
and resource naming only ever see the bare name (the backend adds the owner), so the full name goes only to
the Automation API.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from stamps.errors import UsageError, clip

MAX_STACK_FILE_BYTES = 4 * 1024 * 1024  # prod is ~6 KB; a fleet of 1,000 tenants is well under 1 MB
MAX_DEPTH = 32
MAX_NODES = 200_000  # values after alias expansion; prod has ~1,500
# What a Pulumi placeholder stands in for offline; kept here so the engine and the editor agree.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
KNOWN_NAMESPACES = ("stamps", "azure-native", "pulumi", "azure")


class StackFileError(UsageError, ValueError):
    """The project or stack file is missing or unreadable; the message names the file and, where it can, the key."""


# -- stack names --------------------------------------------------------------------------------------------


def bare_stack(name: str, arg: str = "--stack") -> str:
    """`org/project/prod` → `prod`, after checking every part is a valid Pulumi name."""
    parts = str(name).split("/")
    if not 1 <= len(parts) <= 3 or not all(_NAME.match(p) and p.strip(".") for p in parts):
        raise UsageError(f"{arg}: {clip(name, 80)!r} is not a stack name; use NAME, ORG/NAME or ORG/PROJECT/NAME "
                         "(letters, digits, '-', '_', '.')")
    return parts[-1]


def stack_file(project_dir: str | Path, stack: str) -> Path:
    return Path(project_dir) / f"Pulumi.{bare_stack(stack)}.yaml"


def stacks_in(project_dir: Path) -> list[str]:
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in Path(project_dir).glob("Pulumi.*.yaml"))


# -- strict YAML ----------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses what the CLI refuses (duplicate keys) and what can blow up (aliases, depth)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        depth = getattr(self, "_depth", 0) + 1
        if depth > MAX_DEPTH:
            raise yaml.constructor.ConstructorError(
                None, None, f"nesting deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a scalar, not {type(key).__name__}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {clip(key, 80)!r} (first at line {seen[key].line + 1}); YAML "
                    "would silently keep only the last one", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def parse_stack_text(data: str | bytes, where: str) -> dict[str, Any]:
    """The stack file as data, or StackFileError naming `where` and the line."""
    if isinstance(data, bytes):
        if len(data) > MAX_STACK_FILE_BYTES:
            raise StackFileError(f"{where}: {len(data):,} bytes; a stack file is at most "
                                 f"{MAX_STACK_FILE_BYTES:,} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StackFileError(f"{where}: not a UTF-8 text file (byte {err.start}); is it a stack file?") from None
    else:
        text = data
        if len(text) > MAX_STACK_FILE_BYTES:
            raise StackFileError(f"{where}: {len(text):,} characters; a stack file is at most "
                                 f"{MAX_STACK_FILE_BYTES:,} bytes")
    if "\x00" in text:
        raise StackFileError(f"{where}: contains NUL bytes; is it a stack file?")
    try:
        doc = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise StackFileError(f"{where}: not a valid stack file{line}: {clip(problem, 200)}") from None
    except RecursionError:
        raise StackFileError(f"{where}: nesting deeper than {MAX_DEPTH} levels") from None
    if doc is None:
        doc = {}
    _check_expansion(doc, where)
    if not isinstance(doc, dict):
        raise StackFileError(f"{where}: the top level is a {_kind(doc)}; a stack file is a mapping with a "
                             "`config:` key")
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        raise StackFileError(f"{where}: `config:` is a {_kind(config)}; it must be a mapping of keys to values")
    for key in config or {}:
        if not isinstance(key, str):
            raise StackFileError(f"{where}: config key {clip(key, 80)!r} is not a string")
        ns = key.split(":", 1)[0] if ":" in key else ""
        if ns and ns not in KNOWN_NAMESPACES:
            close = difflib.get_close_matches(ns, KNOWN_NAMESPACES, n=1, cutoff=0.6)
            if close:
                raise StackFileError(f"{where}: config key {clip(key, 80)!r}: unknown namespace {ns!r}; "
                                     f"did you mean '{close[0]}:{key.split(':', 1)[1]}'?")
    return doc


def _check_expansion(doc: Any, where: str) -> None:
    """Count values as a reader expanding every alias would see them, stopping at the first limit hit."""
    count = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise StackFileError(f"{where}: expands to more than {MAX_NODES:,} values through YAML aliases (*name); "
                                 "a stack file must not be a YAML bomb")
        if depth > MAX_DEPTH:
            raise StackFileError(f"{where}: nesting deeper than {MAX_DEPTH} levels (or an alias that contains itself)")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__)


def read_stack_doc(config_file: str | Path, arg: str = "--stack") -> dict[str, Any]:
    """Parse a stack file strictly; a missing file names `arg` and the stacks that exist."""
    config_file = Path(config_file)
    if not config_file.is_file():
        here = stacks_in(config_file.parent)
        raise StackFileError(f"{arg}: no stack config file {config_file}; stacks in {config_file.parent}: "
                             f"{', '.join(here) or '(none)'}")
    try:
        with config_file.open("rb") as fh:
            data = fh.read(MAX_STACK_FILE_BYTES + 1)
    except OSError as err:
        raise StackFileError(f"{config_file}: cannot read the stack config ({err.strerror})") from None
    return copy.deepcopy(_parse_cached(data, str(config_file)))


@functools.lru_cache(maxsize=8)
def _parse_cached(data: bytes, where: str) -> dict[str, Any]:
    # A fleet's unit stacks read one fleet file many times in one process (`stamps plan --fleet`); the strict
    # YAML parse is the costliest step, and a file's bytes decide its result.
    return parse_stack_text(data, where)


def read_stack_config(config_file: Path, arg: str = "--stack") -> tuple[dict[str, str], list[str]]:
    """The CLI's view of a stack file: `ns:key` → string (JSON for structured values), plus secret keys."""

    doc = read_stack_doc(config_file, arg)
    values, secrets = _config_view(json.dumps(doc.get("config") or {}, sort_keys=True, default=str),
                                   str(config_file))
    return dict(values), list(secrets)


@functools.lru_cache(maxsize=8)
def _config_view(config_json: str, where: str) -> tuple[dict[str, str], tuple[str, ...]]:
    from stamps.offline.plan import SECRET

    config = json.loads(config_json)
    values: dict[str, str] = {}
    secrets: list[str] = []
    for k, v in config.items():
        if isinstance(v, dict) and set(v) == {"secure"}:
            # Offline there is no secrets provider: an opaque placeholder stands in and is marked secret.
            values[k] = SECRET
            secrets.append(k)
        elif isinstance(v, str):
            values[k] = v
        else:
            if k.startswith("stamps:"):
                _no_bool_for_number(v, k, where)
            values[k] = json.dumps(v)
    return values, tuple(secrets)


# -- bool where a number is wanted -------------------------------------------------------------------------


@cache
def _schema() -> dict[str, Any]:
    from stamps.config.model import StampsConfig

    return StampsConfig.model_json_schema(by_alias=True)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _schema().get("$defs", {}).get(ref.split("/")[-1], {})
    return schema


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema)
    subs = schema.get("anyOf") or schema.get("oneOf") or schema.get("allOf")
    if subs:
        return [b for s in subs for b in _branches(s)]
    return [schema]


def _types(schema: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for b in _branches(schema):
        t = b.get("type")
        out |= set(t) if isinstance(t, list) else {t} if t else {"any"}
    return out


def _no_bool_for_number(value: Any, key: str, where: str) -> None:
    top = _schema().get("properties", {}).get(key.split(":", 1)[1])
    if top is not None:
        _walk(value, top, key, where)


def _walk(value: Any, schema: dict[str, Any], path: str, where: str) -> None:
    if isinstance(value, bool):
        types = _types(schema)
        if types & {"integer", "number"} and not types & {"boolean", "any"}:
            raise StackFileError(f"{where}: {path}: {str(value).lower()} is a boolean; a number is expected here")
        return
    branches = _branches(schema)
    if isinstance(value, dict):
        for k, v in value.items():
            subs = [b["properties"][k] for b in branches if isinstance(b.get("properties"), dict)
                    and k in b["properties"]]
            subs += [b["additionalProperties"] for b in branches if isinstance(b.get("additionalProperties"), dict)]
            if subs:
                _walk(v, subs[0], f"{path}.{k}", where)
    elif isinstance(value, list):
        items = [b["items"] for b in branches if isinstance(b.get("items"), dict)]
        if items:
            for i, v in enumerate(value):
                _walk(v, items[0], f"{path}[{i}]", where)


def stack_config_path(project_dir: str | Path, stack: str, config_file: str | Path | None = None) -> Path:
    """The stack file a command reads, blaming the argument that named it when it does not exist."""
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise UsageError(f"--config-file: {clip(path, 200)} does not exist")
        return path
    path = stack_file(project_dir, stack)
    if not path.is_file():
        raise UsageError(f"--stack: no stack {clip(stack, 80)!r} in {Path(project_dir).resolve()} (no {path.name}); "
                         f"stacks there: {', '.join(stacks_in(Path(project_dir))) or '(none)'}")
    return path
