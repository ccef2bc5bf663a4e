"""What every playbook shares: the context it runs in, the one way it changes the stack, its errors.

A playbook never calls Azure's control plane to change infrastructure: it edits the stack config
(`Pulumi.<stack>.yaml`) and runs a stack update through the runner seam, so every change is declarative,
reviewable as a small diff, and re-running after success changes nothing. `--dry-run` uses the offline
runner and writes nothing anywhere (stack file, tenant directory, journals, audit, logs).

Deployed state is the truth: the edited config is deployed from a temporary copy and the committed stack
file is replaced only after the update succeeded, so a failed, cancelled or killed run leaves the file as it
was and the re-run does the work. "Nothing to change" is judged against the deployed stack (the config of its
last update) when a CLI is there, against the file otherwise, and the message says which. Before any update
the policy pack runs on the offline plan of the change: a mandatory violation refuses it (exit 3).
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

from ops.runner import AutomationRunner, DeployedConfig, OfflineRunner, Runner, RunnerError, RunResult
from ops.stackconfig import ConfigEditError, StackConfigFile, stack_lock
from stamps.atomicfile import PRIVATE
from stamps.config.errors import ConfigError
from stamps.environment import Environment
from stamps.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, StampsError, UsageError, clip

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "Context", "Failed", "PlaybookError", "Refused"]


class PlaybookError(UsageError):
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
    arm_factory: Callable[[], Any] | None = None  # ARM reads and changes (ops.arm.ArmWriter)
    notifier_factory: Callable[[], Any] | None = None
    directory_factory: Callable[[], Any] | None = None
    http_get: Callable[[str], int] | None = None
    sleep: Callable[[float], None] = lambda s: __import__("time").sleep(s)
    now: Callable[[], dt.datetime] = utcnow
    target_local_changes: bool = True
    runner_kind: str = "automation"
    playbook: str = "playbook"
    holds_lock: bool = False  # set while this process holds the stack lock
    qualified_stack: str = ""  # the --stack as given (org/project/stack); `stack` is the bare name
    policy_pack: Path | None = None  # run on the offline plan of every change before it is deployed
    # The runner of another stack of the fleet (a unit stack: `prod.cell.banking.eastus`), same kind as `runner`.
    stack_runner: Callable[[str], Runner] | None = None
    # What this run did, for the CLI's verdict: titles of deployed updates, notification channels that failed.
    deployed: list[str] = field(default_factory=list)
    notify_failures: list[str] = field(default_factory=list)

    @property
    def units(self) -> bool:
        """The fleet is deployed as unit stacks (stamps:layout: units), not as the single stack."""
        try:
            return self.environment().config.layout == "units"
        except (ConfigError, StampsError, OSError):  # reported, with its key, by whatever reads it next
            return False

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
        from stamps.offline.engine import read_project
        from stamps.stacks.fleet import load_fleet

        cfg = cfg or self.config_file()
        with tempfile.TemporaryDirectory(prefix="stamps-env-") as tmp:
            path = Path(tmp) / f"Pulumi.{self.stack}.yaml"
            path.write_text(cfg.render(), encoding="utf-8")
            # The program's own path from a stack file to the Environment (decoding, validation).
            return load_fleet(read_project(self.project_dir), self.stack, path)

    def outputs(self) -> dict[str, Any]:
        """The deployed stack's outputs (the resource ids Azure reads need), in a dry run too.

        A dry run plans with the offline runner, whose outputs are the plan's placeholder ids; reading outputs
        changes nothing, so with `--runner automation` they come from the real stack. Without a Pulumi CLI
        that read fails and the plan's outputs are used, with a warning (Azure reads then find nothing).
        """
        if self.units:
            from ops.unitapply import fleet_outputs

            return fleet_outputs(self)
        if self.dry_run and self.runner_kind == "automation" and isinstance(self.runner, OfflineRunner):
            try:
                return AutomationRunner(self.project_dir, self.qualified_stack or self.stack,
                                        show_progress=False).outputs()
            except RunnerError as err:
                self.console.print(f"[yellow]![/] cannot read the deployed stack's outputs ({escape(str(err))}); "
                                   "using the offline plan's placeholder ids", soft_wrap=True)
        return self.runner.outputs()

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The stack lock around one change, unless this process holds it already (the CLI takes it for a
        whole short playbook; long ones — migrate, scale --watch, incident respond — take it per change, so
        they never block a failover and a page never waits on another playbook)."""
        if self.dry_run or self.holds_lock or self.units:
            # Unit stacks are locked one by one, only those a change updates (ops/unitapply.py).
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
            from ops.arm import ArmWriter  # reads, and the long-running changes of restore-data and failover

            self.arm_factory = lambda: ArmWriter(arm_endpoint=os.environ.get("STAMPS_ARM_ENDPOINT"))
        return self.arm_factory()

    def tenant_directory(self) -> Any:
        """Cosmos DB when the stack is really deployed; a local stand-in when it is only planned offline."""
        if self.directory_factory is None:
            from ops.tenant_directory import CosmosTenantDirectory, LocalTenantDirectory

            if isinstance(self.runner, OfflineRunner):
                self.directory_factory = lambda: LocalTenantDirectory(self.state_dir / f"directory-{self.stack}.json")
            else:
                info = self.outputs().get("tenantDirectory")
                info = info if isinstance(info, dict) else {}
                missing = [k for k in ("endpoint", "database", "container") if not info.get(k)]
                if missing:
                    # Never a local stand-in here: records written beside a deployed stack would be lost to it.
                    what = "output" if len(missing) == 3 else f"output's {', '.join(missing)}"
                    raise Failed(f"the deployed stack {self.qualified_stack or self.stack} has no tenantDirectory "
                                 f"{what}, so the tenant directory (Cosmos DB) cannot be found: deploy the stack "
                                 "first (`pulumi up`), or run with `--runner offline` to edit and plan the stack "
                                 "file only")
                self.directory_factory = lambda: CosmosTenantDirectory(
                    str(info["endpoint"]), database=str(info["database"]), container=str(info["container"]))
        directory = self.directory_factory()
        return _DryRunDirectory(directory, self.console) if self.dry_run else directory

    def notifier(self) -> Any:
        """The notification channels; what fails to deliver is remembered for the run's verdict.

        Channels were validated by `preflight()`; should building them fail anyway once a change is deployed,
        that failure is reported like a failed delivery, never raised: the audit line must still be written.
        """
        from ops.notify import Notifier

        if self.notifier_factory is None:
            from ops.channels import notifier_from_env

            self.notifier_factory = lambda: notifier_from_env(dry_run=self.dry_run)
        try:
            notifier = self.notifier_factory()
        except Exception as err:
            self.notify_failures.append(f"channels could not be built: {err}")
            self.console.print(f"[red]![/] notification channels could not be built: {escape(str(err))}")
            return Notifier([], dry_run=self.dry_run)
        send = notifier.notify

        def notify(incident: Any) -> Any:
            report = send(incident)
            self.notify_failures += [f"{r.channel}: {r.error}" for r in report.results if not r.ok]
            return report

        notifier.notify = notify  # type: ignore[method-assign]  # count failed deliveries of this one instance
        return notifier

    def preflight(self) -> None:
        """Checks every playbook passes before it edits or deploys anything: the notification channels
        (a bad webhook URL must be found now, not after a failover flipped traffic)."""
        if self.notifier_factory is None:
            from ops.channels import notifier_from_env

            notifier_from_env(dry_run=True).close()  # raises ChannelConfigError naming the variable

    # --- changing ---------------------------------------------------------------------------------------
    def apply(self, title: str, edit: Callable[[StackConfigFile], object], *, local: bool = True) -> RunResult | None:
        """Edit the stack config, validate the result, then preview (dry run) or save and update.

        Returns None when the edit changes nothing: re-running a playbook after success is a no-op.
        """
        with self.locked():
            return self._apply(title, edit, local=local)

    def already_done(self, title: str) -> RunResult | None:
        """A playbook found nothing to change in the stack file: make sure the deployed stack agrees.

        Returns None when it does (or offline, where the file is all there is); otherwise deploys the file.
        """
        with self.locked():
            return self._apply(title, lambda cfg: None, local=False)

    def _apply(self, title: str, edit: Callable[[StackConfigFile], object], *, local: bool) -> RunResult | None:
        cfg = self.config_file()
        try:
            edit(cfg)
        except ConfigEditError as err:
            raise PlaybookError(str(err)) from None
        if not cfg.changes:
            return self._deploy_if_behind(title, cfg)
        try:
            env = self.environment(cfg)  # never deploy a config the program would reject
        except ConfigError as err:
            raise Refused(f"{title}: the change would make the stack config invalid:\n{err}") from None
        if env.config.layout == "units":
            from ops.unitapply import apply_units

            return apply_units(self, title, cfg)
        self.console.print(f"[bold]{title}[/] — config change set:")
        for change in cfg.changes:
            self.console.print(f"  {escape(str(change))}")
        offline = self._offline()
        if self.policy_pack is not None:
            offline.check_policy(cfg, self.console, pack=self.policy_pack)  # PolicyRefused: nothing changed
        if self.dry_run:
            result = self.runner.preview(cfg)
            show_result(result, self.console, dry_run=True)
            return result
        targets = self._local_targets(offline, cfg) if local and self.target_local_changes else None
        return self._deploy(title, cfg, targets)

    def _deploy(self, title: str, cfg: StackConfigFile, targets: list[str] | None) -> RunResult:
        """Deploy the edited config from a temporary copy, then (only then) replace the committed file."""
        result = self.runner.up(cfg, targets=targets)
        self.deployed.append(title)
        try:
            cfg.save()
        except (ConfigEditError, OSError) as err:
            raise Failed(f"{title}: deployed, but {cfg.path.name} could not be updated ({err}); the deployed "
                         "stack is ahead of the file: re-run the playbook to record it") from None
        show_result(result, self.console, dry_run=False)
        return result

    def _deploy_if_behind(self, title: str, cfg: StackConfigFile) -> RunResult | None:
        if self.units:
            # Unit stacks take their config from the fleet file, so their history holds none to compare:
            # `stamps-ops deploy` brings every stack to the file.
            self.console.print(f"[green]✓[/] {title}: nothing to change, the fleet file already says so "
                               f"(`stamps-ops deploy --stack {self.stack}` deploys it to every unit stack)")
            return None
        deployed, source = self._deployed_config()
        behind = _behind(cfg, deployed) if deployed is not None else []
        if not behind:
            self.console.print(f"[green]✓[/] {title}: nothing to change, {source} already says so")
            return None
        self.console.print(f"[yellow]![/] {title}: the stack file already says so, but {source} does not "
                           f"({escape(', '.join(behind))}): deploying the stack file")
        if self.dry_run:
            return None
        return self._deploy(title, cfg, None)

    def _deployed_config(self) -> tuple[DeployedConfig | None, str]:
        """What is deployed, and how this run knows: the stack's last update, or only the stack file."""
        if isinstance(self.runner, OfflineRunner) and not (self.dry_run and self.runner_kind == "automation"):
            return None, "the stack file (offline runner: no deployed stack to compare)"
        runner = self.runner if not isinstance(self.runner, OfflineRunner) else AutomationRunner(
            self.project_dir, self.qualified_stack or self.stack, show_progress=False)
        try:
            deployed = runner.deployed_config()
        except (RunnerError, AttributeError) as err:
            first = (str(err).splitlines() or [""])[0]
            return None, f"the stack file (the deployed stack cannot be read: {first[:160]})"
        if deployed is None:
            return DeployedConfig({}, False), "the deployed stack (never updated)"
        return deployed, f"the deployed stack (last update {deployed.when or 'recorded'})"

    def _offline(self) -> OfflineRunner:
        if isinstance(self.runner, OfflineRunner):
            return self.runner
        return OfflineRunner(self.project_dir, self.stack)

    def _local_targets(self, offline: OfflineRunner, cfg: StackConfigFile) -> list[str] | None:
        """URNs the change touches, from the offline plan: `pulumi up --target` then skips the rest."""
        if isinstance(self.runner, OfflineRunner):
            return None
        preview = offline.preview(cfg)
        urns = [r.urn for r in preview.resources if r.urn.startswith("urn:")]
        return urns or None


class _DryRunDirectory:
    """The tenant directory in a dry run: reads go through, writes are only described."""

    def __init__(self, inner: Any, console: Console) -> None:
        self._inner = inner
        self._console = console

    def get(self, tenant_id: str) -> Any:
        return self._inner.get(tenant_id)

    def upsert(self, record: dict[str, Any]) -> None:
        self._console.print(f"  (dry run) would record tenant {escape(str(record.get('tenantId')))} on CELL "
                            f"{escape(str(record.get('cellName')))} in the tenant directory")

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def _behind(cfg: StackConfigFile, deployed: DeployedConfig) -> list[str]:
    """Config keys where the deployed stack differs from the file (secrets are compared by nobody)."""
    if not deployed.succeeded and deployed.values == {}:
        return ["the stack was never updated"]
    behind = [] if deployed.succeeded else ["the last update did not succeed"]
    from stamps.config.stackfile import parse_stack_text

    doc = parse_stack_text(cfg.render(), str(cfg.path))
    config = doc.get("config") or {}
    for key in sorted(set(config) | set(deployed.values)):
        mine = config.get(key)
        if isinstance(mine, dict) and set(mine) == {"secure"}:
            continue
        if key not in deployed.values:
            if key in config:
                behind.append(key)
            continue
        if _canonical(mine) != _canonical(deployed.values[key]):
            behind.append(key)
    return behind


def _canonical(value: Any) -> Any:
    """Compare as the CLI stores config: top-level scalars are strings, objects are JSON."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        return _canonical(decoded) if isinstance(decoded, dict | list) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) or value is None:
        return "" if value is None else str(value)
    return json.dumps(value, sort_keys=True)


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
        raise PlaybookError(f"{arg}: no CELL named {clip(name, 80)!r}; known CELLs: {', '.join(names)}")


def cell_path(name: str) -> str:
    return f"stamps:cells[name={name}]"


def stack_subscription(ctx: Context, why: str) -> str:
    """The deployed stack's subscription id, read from its workspaceId output (an ARM id)."""
    from ops.arm import subscription_of

    try:
        return subscription_of(str(ctx.outputs().get("workspaceId") or ""))
    except ValueError:
        raise Failed(f"the stack has no workspaceId output to find its subscription: deploy it before {why}") from None


def cell_storage_id(env: Environment, subscription: str, cell: str) -> str:
    """The ARM id of a CELL's storage account: its primary's (a standby keeps none of its own)."""
    n = env.naming
    key = env.instance(cell).key
    return (f"/subscriptions/{subscription}/resourceGroups/{n.cell_group(key)}/providers/"
            f"Microsoft.Storage/storageAccounts/{n.storage(key)}")


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
    fd = os.open(log_dir / f"{ctx.stack}.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)  # also tightens a log an older version created 0640
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
