"""Shared pieces of the scale, maintenance and incident playbooks: atomic JSON files, status styling, the
stack lock around a single change, and the deployed stack's outputs in a dry run.

State files (scaling records, incident logs) and reports are written with the same discipline as the
stack file: a temp file in the same directory, fsync, `os.replace`, fsync of the directory. A reader (or a
crash) never sees half a file, and a failed write leaves the previous version intact.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from rich.markup import escape

from ops.runner import AutomationRunner, OfflineRunner, RunnerError
from ops.stackconfig import lock_path, stack_lock

if TYPE_CHECKING:
    from ops.playbooks.base import Context

__all__ = ["STATUS_ORDER", "STATUS_STYLE", "apply_lock", "deployed_outputs", "iso", "parse_iso", "read_json",
           "worst", "write_json_atomic"]

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


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o640) -> None:
    """Write `data` as indented JSON to `path` atomically (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # persist the rename itself
    finally:
        os.close(dir_fd)


def read_json(path: Path, default: Any) -> Any:
    """The JSON in `path`, or `default` when the file does not exist; a corrupt file is an error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or remove it") from None


# ------------------------------------------------------------------------------------------ the stack


def _lock_held_by_this_process(ctx: Context) -> bool:
    try:
        holder = json.loads(lock_path(ctx.project_dir, ctx.stack).read_text() or "null")
    except (OSError, ValueError):
        return False
    return isinstance(holder, dict) and holder.get("pid") == os.getpid()


@contextlib.contextmanager
def apply_lock(ctx: Context, holder: str) -> Iterator[None]:
    """The stack lock around one change, unless this process already holds it (the CLI takes it for a whole
    run). Long-running playbooks (`scale --watch`, `incident respond`) register `lock_stack=False`, so a CLI
    that honours it leaves the lock free between changes: a watch never blocks a failover, and a stack
    locked by another playbook never delays a page."""
    if ctx.dry_run or _lock_held_by_this_process(ctx):
        yield
        return
    with stack_lock(ctx.project_dir, ctx.stack, holder=holder):
        yield


def deployed_outputs(ctx: Context, runner_kind: str) -> dict[str, Any]:
    """The deployed stack's outputs (resource ids to read Azure for), in a dry run too.

    A dry run plans with the offline runner, whose outputs are the plan's placeholder ids; reading outputs
    changes nothing, so with `--runner automation` they come from the real stack. Without a Pulumi CLI
    that read fails and the plan's outputs are used, with a warning (Azure reads then find nothing).
    """
    if ctx.dry_run and runner_kind == "automation" and isinstance(ctx.runner, OfflineRunner):
        try:
            return AutomationRunner(ctx.project_dir, ctx.stack, show_progress=False).outputs()
        except RunnerError as err:
            ctx.console.print(f"[yellow]![/] cannot read the deployed stack's outputs ({escape(str(err))}); "
                              "using the offline plan's placeholder ids", soft_wrap=True)
    return ctx.outputs()
