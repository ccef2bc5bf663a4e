"""Reading a plan file (`stamps plan --out`) strictly: anything else is bad input naming the argument."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stamps.errors import UsageError, clip
from stamps.offline.plan import Plan

MAX_PLAN_BYTES = 512 * 1024 * 1024  # fleet L (3,192 registrations) is ~15 MB


def load_plan(path: str | Path, arg: str) -> Plan:
    """The plan in `path`, or UsageError saying `arg`, the file and what is wrong with it."""
    path = Path(path)
    hint = "write one with `stamps plan --out FILE.json`"
    if not path.is_file():
        raise UsageError(f"{arg}: no such plan file {clip(path, 200)} ({hint})")
    try:
        if path.stat().st_size > MAX_PLAN_BYTES:
            raise UsageError(f"{arg}: {path} is larger than {MAX_PLAN_BYTES:,} bytes; not a stamps plan")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{arg}: {path} is not a text file; not a stamps plan ({hint})") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{arg}: {path} is not JSON (line {err.lineno}: {err.msg}); {hint}") from None
    except RecursionError:
        raise UsageError(f"{arg}: {path} nests too deeply; not a stamps plan") from None
    except OSError as err:
        raise UsageError(f"{arg}: cannot read {path} ({err.strerror})") from None
    problem = _shape(data)
    if problem:
        raise UsageError(f"{arg}: {path} is not a stamps plan ({problem}); {hint}")
    return Plan.from_dict(data)


def _shape(data: Any) -> str:
    if not isinstance(data, dict):
        return f"the top level is a {type(data).__name__}, not an object"
    for key, kind in (("project", str), ("stack", str), ("resources", list)):
        if not isinstance(data.get(key), kind):
            return f"`{key}` is missing or not a {kind.__name__}"
    if not isinstance(data.get("outputs", {}), dict):
        return "`outputs` is not an object"
    for i, r in enumerate(data["resources"]):
        if not isinstance(r, dict):
            return f"resources[{i}] is not an object"
        for key, kinds in (("urn", (str,)), ("type", (str,)), ("name", (str,)), ("custom", (bool,)),
                           ("inputs", (dict,)), ("parent", (str, type(None)))):
            if not isinstance(r.get(key), kinds):
                return f"resources[{i}].{key} is missing or of the wrong kind"
        if not isinstance(r.get("dependencies", []), list):
            return f"resources[{i}].dependencies is not a list"
    return ""
