"""Shared pieces of the scale, maintenance and incident playbooks: atomic JSON files, status styling, the
stack lock around a single change, and the deployed stack's outputs in a dry run.

State files (scaling records, incident logs) and reports are written with the same discipline as the
stack file: a temp file in the same directory, fsync, `os.replace`, fsync of the directory. A reader (or a
crash) never sees half a file, and a failed write leaves the previous version intact.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stamps.errors import UsageError

if TYPE_CHECKING:
    pass

__all__ = ["STATUS_ORDER", "STATUS_STYLE", "iso", "parse_iso", "read_json",
           "worst"]

# Check/step outcomes from best to worst; a report's overall status is the worst of its parts.
STATUS_ORDER: Final[tuple[str, ...]] = ("ok", "skipped", "warn", "fail", "error")
STATUS_STYLE: Final[dict[str, str]] = {
    "ok": "green", "skipped": "dim", "warn": "yellow", "fail": "red", "error": "bold red",
}


def worst(statuses: list[str] | tuple[str, ...]) -> str:
    return max(statuses, key=STATUS_ORDER.index, default="ok")


def iso(stamp: dt.datetime) -> str:
    """UTC, second precision, `Z` suffix: the one timestamp format of every report and state file."""
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


_KIND = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def read_json(path: Path, default: Any, kind: type = dict) -> Any:
    """The JSON `kind` in `path`, or `default` when the file does not exist; a corrupt or wrong-kind file is
    bad input (exit 2) naming the file: state is never guessed at."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot read it ({err}); fix or move it aside") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{path} is not valid JSON ({err}); fix or move it aside") from None
    if not isinstance(data, kind):
        want, found = _KIND.get(kind, kind.__name__), _KIND.get(type(data), type(data).__name__)
        raise UsageError(f"{path}: expected a JSON {want}, found {found}; fix or move it aside")
    return data


# ------------------------------------------------------------------------------------------ the stack


