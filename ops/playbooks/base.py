"""What every playbook shares: the context it runs in, the one way it changes the stack, its errors.

A playbook never calls Azure's control plane to change infrastructure: it edits the stack config
(`Pulumi.<stack>.yaml`) and runs a stack update through the runner seam, so every change is declarative,
reviewable as a small diff, and re-running after success changes nothing. `--dry-run` uses the offline
runner and touches nothing.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ops.runner import AutomationRunner, OfflineRunner, Runner, RunnerError, RunResult
from ops.stackconfig import ConfigEditError, StackConfigFile, stack_lock
from stamps.config.errors import ConfigError
from stamps.environment import Environment

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 4


class PlaybookError(Exception):
    """Bad input (unknown CELL, tenant, region, malformed argument): exit 2, the message names it."""

    exit_code = EXIT_USAGE


class Refused(PlaybookError):
    """A safety check said no (healthy primary without --force, concurrent playbook, invalid result)."""

    exit_code = EXIT_REFUSED


class Failed(PlaybookError):
    """The operation ran and failed; anything it could undo has been undone."""

    exit_code = EXIT_FAILED


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_actor() -> str:
    try:
        return os.environ.get("STAMPS_ACTOR") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


@dataclass
class Context:
    project_dir: Path
    stack: str
    dry_run: bool
    runner: Runner
    console: Console = field(default_factory=Console)
    actor: str = field(default_factory=default_actor)
    force: bool = False
    # Seams for the outside world; tests inject local fakes, production builds the real clients lazily.
    metrics_factory: Callable[[], Any] | None = None
    arm_factory: Callable[[], Any] | None = None  # generic ARM reads (ops.arm.ArmReader)
    notifier_factory: Callable[[], Any] | None = None
    directory_factory: Callable[[], Any] | None = None
    http_get: Callable[[str], int] | None = None
    sleep: Callable[[float], None] = lambda s: __import__("time").sleep(s)
    now: Callable[[], dt.datetime] = utcnow
    target_local_changes: bool = True
    runner_kind: str = "automation"
    playbook: str = "playbook"
    holds_lock: bool = False  # set while this process holds the stack lock

    @property
    def state_dir(self) -> Path:
        return self.project_dir / ".stamps"

    # --- reading ---------------------------------------------------------------------------------------
    def config_file(self) -> StackConfigFile:
        try:
            return StackConfigFile.for_stack(self.project_dir, self.stack)
        except (ConfigEditError, FileNotFoundError) as err:
            raise PlaybookError(f"--stack: cannot read the stack config of {self.stack!r}: {err}") from None

    def environment(self, cfg: StackConfigFile | None = None) -> Environment:
        """The validated environment of the stack file (or of an edited, unsaved copy of it)."""
        from stamps.config.loader import load_environment
        from stamps.offline.engine import read_project, read_stack_config

        cfg = cfg or self.config_file()
        with tempfile.TemporaryDirectory(prefix="stamps-env-") as tmp:
            path = Path(tmp) / f"Pulumi.{self.stack}.yaml"
            path.write_text(cfg.render(), encoding="utf-8")
            raw, _ = read_stack_config(path)
        values = {k.split(":", 1)[1]: _decode(v) for k, v in raw.items()
                  if k.startswith("stamps:") and k.split(":", 1)[1] not in {"alertWebhookUrl", "pagerDutyWebhookUrl"}}
        return load_environment(read_project(self.project_dir), self.stack, values)

    def outputs(self) -> dict[str, Any]:
        """The deployed stack's outputs (the resource ids Azure reads need), in a dry run too.

        A dry run plans with the offline runner, whose outputs are the plan's placeholder ids; reading outputs
        changes nothing, so with `--runner automation` they come from the real stack. Without a Pulumi CLI
        that read fails and the plan's outputs are used, with a warning (Azure reads then find nothing).
        """
        if self.dry_run and self.runner_kind == "automation" and isinstance(self.runner, OfflineRunner):
            try:
                return AutomationRunner(self.project_dir, self.stack, show_progress=False).outputs()
            except RunnerError as err:
                self.console.print(f"[yellow]![/] cannot read the deployed stack's outputs ({escape(str(err))}); "
                                   "using the offline plan's placeholder ids", soft_wrap=True)
        return self.runner.outputs()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The stack lock around one change, unless this process holds it already (the CLI takes it for a
        whole short playbook; long ones — migrate, scale --watch, incident respond — take it per change, so
        they never block a failover and a page never waits on another playbook)."""
        if self.dry_run or self.holds_lock:
            yield
            return
        with stack_lock(self.project_dir, self.stack, holder=self.playbook):
            self.holds_lock = True
            try:
                yield
            finally:
                self.holds_lock = False

    def health(self, url: str) -> int:
        return (self.http_get or default_http_get)(url)

    def metrics(self) -> Any:
        if self.metrics_factory is None:
            from ops.azure_monitor import MetricsReader

            self.metrics_factory = lambda: MetricsReader(arm_endpoint=os.environ.get("STAMPS_ARM_ENDPOINT"))
        return self.metrics_factory()

    def arm(self) -> Any:
        if self.arm_factory is None:
            from ops.arm import ArmReader

            self.arm_factory = lambda: ArmReader(arm_endpoint=os.environ.get("STAMPS_ARM_ENDPOINT"))
        return self.arm_factory()

    def tenant_directory(self) -> Any:
        """Cosmos DB when the stack is really deployed; a local stand-in when it is only planned offline."""
        if self.directory_factory is None:
            from ops.tenant_directory import CosmosTenantDirectory, LocalTenantDirectory

            if isinstance(self.runner, OfflineRunner):
                self.directory_factory = lambda: LocalTenantDirectory(self.state_dir / f"directory-{self.stack}.json")
            else:
                info = self.outputs().get("tenantDirectory") or {}
                self.directory_factory = lambda: CosmosTenantDirectory(
                    str(info["endpoint"]), database=str(info["database"]), container=str(info["container"]))
        return self.directory_factory()

    def notifier(self) -> Any:
        if self.notifier_factory is None:
            from ops.channels import notifier_from_env

            self.notifier_factory = lambda: notifier_from_env(dry_run=self.dry_run)
        return self.notifier_factory()

    # --- changing ---------------------------------------------------------------------------------------
    def apply(self, title: str, edit: Callable[[StackConfigFile], None], *, local: bool = True) -> RunResult | None:
        """Edit the stack config, validate the result, then preview (dry run) or save and update.

        Returns None when the edit changes nothing: re-running a playbook after success is a no-op.
        """
        with self.locked():
            return self._apply(title, edit, local=local)

    def _apply(self, title: str, edit: Callable[[StackConfigFile], None], *, local: bool) -> RunResult | None:
        cfg = self.config_file()
        try:
            edit(cfg)
        except ConfigEditError as err:
            raise PlaybookError(str(err)) from None
        if not cfg.changes:
            self.console.print(f"[green]✓[/] {title}: nothing to change, the stack already says so")
            return None
        try:
            self.environment(cfg)  # never save a config the program would reject
        except ConfigError as err:
            raise Refused(f"{title}: the change would make the stack config invalid:\n{err}") from None
        self.console.print(f"[bold]{title}[/] — config change set:")
        for change in cfg.changes:
            self.console.print(f"  {escape(str(change))}")
        if self.dry_run:
            result = self.runner.preview(cfg)
            show_result(result, self.console, dry_run=True)
            return result
        targets = self._local_targets(cfg) if local and self.target_local_changes else None
        cfg.save()
        result = self.runner.up(cfg.changes, targets=targets)
        show_result(result, self.console, dry_run=False)
        return result

    def _local_targets(self, cfg: StackConfigFile) -> list[str] | None:
        """URNs the change touches, from the offline plan: `pulumi up --target` then skips the rest."""
        if isinstance(self.runner, OfflineRunner):
            return None
        preview = OfflineRunner(self.project_dir, self.stack).preview(cfg)
        urns = [r.urn for r in preview.resources if r.urn.startswith("urn:")]
        return urns or None


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def show_result(result: RunResult, console: Console, *, dry_run: bool) -> None:
    verb = "would change" if dry_run else "changed"
    table = Table(title=f"stack {result.stack}: resources that {verb}")
    table.add_column("op")
    table.add_column("type", no_wrap=True)
    table.add_column("name")
    table.add_column("changed inputs")
    colour = {"create": "green", "update": "yellow", "delete": "red", "replace": "magenta"}
    for r in result.resources:
        paths = ", ".join(r.diffs[:5]) + (f" (+{len(r.diffs) - 5})" if len(r.diffs) > 5 else "")
        table.add_row(f"[{colour.get(r.op, 'white')}]{r.op}[/]", r.type, escape(r.name), escape(paths))
    console.print(table)
    console.print(result.summary_line())


def find_cell(env: Environment, name: str, arg: str = "CELL") -> None:
    names = sorted({c.name for c in env.cells})
    if name not in names:
        raise PlaybookError(f"{arg}: no CELL named {name!r}; known CELLs: {', '.join(names)}")


def cell_path(name: str) -> str:
    return f"stamps:cells[name={name}]"


def tenant_path(tenant: str) -> str:
    return f"stamps:tenants[id={tenant}]"


def audit(ctx: Context, playbook: str, event: str, **details: Any) -> None:
    """Append one line to the stack's audit log: who ran what, when, with which outcome.

    One `write` of a whole line on an O_APPEND descriptor: concurrent writers never interleave lines.
    Dry runs are not recorded; they change nothing.
    """
    if ctx.dry_run:
        return
    log_dir = ctx.state_dir / "audit"
    log_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": ctx.now().isoformat(timespec="seconds"), "stack": ctx.stack, "actor": ctx.actor,
                       "playbook": playbook, "event": event, **details}, default=str) + "\n"
    fd = os.open(log_dir / f"{ctx.stack}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def default_http_get(url: str, timeout: float = 10.0) -> int:
    """Status of a GET, 0 when unreachable: health gates treat both as 'not healthy'."""
    import requests

    try:
        return requests.get(url, timeout=timeout, allow_redirects=False).status_code
    except requests.RequestException:
        return 0
