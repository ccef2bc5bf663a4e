"""The runner seam: how a playbook's stack-config change reaches a preview or an update.

How config changes reach the real CLI (decided here, for a stack file that lives in git):
    The playbook edits `Pulumi.<stack>.yaml` with `ops.stackconfig` under `stack_lock`, in memory. `preview`
    and `up` render the edited file to a temporary copy passed as `--config-file`; the playbook replaces the
    committed file only after `up` succeeded. So the stack file always says what is deployed: a failed,
    cancelled or killed update leaves it as it was, and the re-run does the work again. The runner never
    writes config itself (no `pulumi config set-all`, which would rewrite the file with the CLI's own
    formatting, stringify values, cannot address list items by `[name=...]`, and would put secure values on a
    command line).

Stack names: the runner is given the name as the operator wrote it (`prod`, `org/prod`, `org/project/prod`);
only the Automation API sees it whole. Files, URNs and the offline engine use the bare name.

Policy: both runners run the project's policy pack (`policy/`) when given one, the real one through the
Automation API's `policy_packs`, the offline one over the analyzer protocol; a mandatory violation is a
`PolicyRefused` (exit 3).

`OfflineRunner` answers the same calls from the offline engine (`stamps.offline`), for machines with no CLI.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from ops.stackconfig import (
    Change,
    ChangeSet,
    ConfigEditError,
    StackConfigFile,
    apply_changes,
    stack_file_path,
    unified_diff,
)
from stamps.config.stackfile import bare_stack
from stamps.errors import OperationFailed, PolicyViolation
from stamps.stacks.units import split_stack

if TYPE_CHECKING:
    from pulumi.automation import CommandResult, EngineEvent, Stack

__all__ = [
    "AutomationRunner",
    "Changes",
    "OfflineRunner",
    "PolicyRefused",
    "PulumiCommandLike",
    "Redacted",
    "ResourceChange",
    "RunResult",
    "Runner",
    "RunnerError",
]

# What a playbook hands a runner: the change set it recorded, or the edited file itself.
Changes = ChangeSet | StackConfigFile | Sequence[Change] | None


class RunnerError(OperationFailed):
    """A preview/update/refresh that failed, with one actionable message (the cause is chained)."""


class PolicyRefused(PolicyViolation):
    """The policy pack's mandatory policies refused the change; nothing was deployed."""


@dataclass(frozen=True)
class DeployedConfig:
    """The config of the stack's last update, as the backend recorded it: what is deployed.

    `values` maps `ns:key` to the value (objects decoded); secret keys are left out. `succeeded` is False when
    the last update failed or was cancelled: then the deployed state is somewhere between two configs.
    """

    values: dict[str, Any]
    succeeded: bool
    when: str = ""


@dataclass(frozen=True)
class Redacted:
    """A secret stack output: usable by code via `.value`, never shown by repr/str."""

    value: Any = field(repr=False)

    def __str__(self) -> str:
        return "[secret]"

    def __repr__(self) -> str:
        return "Redacted([secret])"


@dataclass(frozen=True)
class ResourceChange:
    """One resource the operation would change (or changed): op is create/update/delete/replace/…"""

    urn: str
    type: str
    op: str
    diffs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.urn.split("::")[-1] if "::" in self.urn else self.urn

    def __str__(self) -> str:
        detail = f" [{', '.join(self.diffs)}]" if self.diffs else ""
        return f"{self.op:>8}  {self.type}  {self.name}{detail}"


@dataclass
class RunResult:
    """What a runner did or would do: counts per op, the per-resource diff, and the raw output."""

    operation: str  # preview | up | refresh | offline-preview | offline-up | offline-refresh
    stack: str
    config_changes: ChangeSet
    change_summary: dict[str, int]
    resources: list[ResourceChange]
    stdout: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return any(count for op, count in self.change_summary.items() if op != "same")

    def summary_line(self) -> str:
        parts = [f"{n} to {op}" if self.operation.endswith("preview") else f"{n} {op}"
                 for op, n in sorted(self.change_summary.items()) if n and op != "same"]
        same = self.change_summary.get("same", 0)
        if same:
            parts.append(f"{same} unchanged")
        return f"{self.operation} of {self.stack}: {', '.join(parts) or 'no changes'}"

    def __str__(self) -> str:
        return "\n".join([self.summary_line(), *(str(r) for r in self.resources)])


@runtime_checkable
class Runner(Protocol):
    """The calls every playbook makes; AutomationRunner deploys, OfflineRunner plans."""

    def preview(self, changes: Changes = None, *, targets: Sequence[str] | None = None) -> RunResult: ...

    def up(self, changes: Changes = None, targets: Sequence[str] | None = None) -> RunResult: ...

    def refresh(self, targets: Sequence[str] | None = None) -> RunResult: ...

    def outputs(self) -> dict[str, Any]: ...

    def move_resources(self, dest: str, urns: Sequence[str]) -> None: ...

    def deployed_config(self) -> DeployedConfig | None: ...


class PulumiCommandLike(Protocol):
    """The command object `LocalWorkspace` runs the CLI through (`pulumi.automation.PulumiCommand`)."""

    command: str
    version: Any

    def run(
        self,
        args: list[str],
        cwd: str,
        additional_env: Mapping[str, str],
        on_output: Callable[[str], Any] | None = None,
        on_error: Callable[[str], Any] | None = None,
    ) -> CommandResult: ...


def _change_set(changes: Changes) -> ChangeSet:
    if changes is None:
        return ChangeSet()
    if isinstance(changes, StackConfigFile):
        return ChangeSet(changes.changes)
    return ChangeSet(changes)


def _resource_key(urn: str) -> tuple[str, str]:
    """(type, name) of a URN: offline and real URNs agree on these even where parent chains differ."""
    parts = urn.split("::")
    if len(parts) < 4:
        return ("", urn)
    return (parts[2].split("$")[-1], "::".join(parts[3:]))


# ----------------------------------------------------------------------------------------------------
# Progress


class _EventCollector:
    """Feeds engine events into a rich progress bar and collects the per-resource diff.

    Events arrive on the Automation API's watcher thread (or gRPC pool), hence the lock.
    """

    def __init__(self, label: str, console: Console | None, show: bool) -> None:
        self.started = 0
        self.finished = 0
        self.failed = 0
        self.summary: dict[str, int] | None = None
        self._resources: dict[str, ResourceChange] = {}
        self._lock = threading.Lock()
        self._progress = (
            Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                     console=console or Console(stderr=True), transient=False)
            if show else None
        )
        self._task = self._progress.add_task(label, total=None) if self._progress else None

    @property
    def resources(self) -> list[ResourceChange]:
        with self._lock:
            return list(self._resources.values())

    @contextmanager
    def running(self) -> Iterator[_EventCollector]:
        if self._progress is None:
            yield self
            return
        self._progress.start()
        try:
            yield self
        finally:
            self._progress.stop()

    def on_event(self, event: EngineEvent) -> None:
        with self._lock:
            if event.resource_pre_event is not None:
                md = event.resource_pre_event.metadata
                self.started += 1
                op = getattr(md.op, "value", str(md.op))
                if op != "same":
                    diffs = tuple(sorted(md.detailed_diff or {})) or tuple(md.diffs or ())
                    self._resources[md.urn] = ResourceChange(md.urn, md.type, op, diffs)
            elif event.res_outputs_event is not None:
                self.finished += 1
            elif event.res_op_failed_event is not None:
                self.failed += 1
            elif event.summary_event is not None:
                self.summary = _op_counts(event.summary_event.resource_changes)
            else:
                return
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, total=max(self.started, 1), completed=self.finished)


def _op_counts(changes: Mapping[Any, int] | None) -> dict[str, int]:
    return {getattr(k, "value", str(k)): int(v) for k, v in (changes or {}).items()}


# ----------------------------------------------------------------------------------------------------
# The real CLI


class AutomationRunner:
    """Runs preview/up/refresh on this project's directory and stack through `pulumi.automation`.

    `pulumi_command` replaces the CLI (tests inject a stand-in); by default `LocalWorkspace` finds `pulumi` on
    PATH. The stack is selected lazily, so constructing a runner never needs a CLI. `verbose` passes the
    Automation API's debug flags through (1: `--debug`; 2: also `-v=9 --logflow --logtostderr`).
    """

    def __init__(
        self,
        project_dir: str | Path,
        stack: str,
        *,
        pulumi_command: PulumiCommandLike | None = None,
        env_vars: Mapping[str, str] | None = None,
        console: Console | None = None,
        show_progress: bool = True,
        on_output: Callable[[str], Any] | None = None,
        policy_pack: str | Path | None = None,
        verbose: int = 0,
        create_missing: bool = False,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        # A fleet's unit stacks are created by their first deployment (`stamps-ops deploy`).
        self.create_missing = create_missing
        self.stack_name = stack  # as given: the Automation API resolves org/project itself
        self.engine_stack = bare_stack(stack)
        # A unit stack (`prod.cell.banking.eastus`) is configured by its fleet's file; changes reach its program
        # as a temporary copy named by $STAMPS_FLEET_FILE (the program reads that file, not --config-file).
        fleet, self.unit = split_stack(self.engine_stack)
        self.stack_file = stack_file_path(self.project_dir, fleet if self.unit else stack)
        self._command = pulumi_command
        self._env_vars = dict(env_vars or {})
        self._console = console
        self._show_progress = show_progress
        self._on_output = on_output
        self.policy_pack = Path(policy_pack).resolve() if policy_pack else None
        self.verbose = verbose
        self._stack: Stack | None = None

    # -- Runner ------------------------------------------------------------------------------------------

    def preview(self, changes: Changes = None, *, targets: Sequence[str] | None = None) -> RunResult:
        """`pulumi preview` with the changes: saved ones as is, unsaved ones via a temp --config-file."""
        change_set = _change_set(changes)
        with self._config_override(changes) as config_file:
            stack = self._select()
            events = _EventCollector(f"preview {self.stack_name}", self._console, self._show_progress)
            config_file = self._fleet_file(stack, config_file)
            with events.running():
                result = self._call("preview", lambda: stack.preview(
                    target=list(targets) if targets else None,
                    target_dependents=True if targets else None,
                    on_event=events.on_event,
                    on_output=self._on_output,
                    config_file=str(config_file) if config_file else None,
                    **self._extra(),
                ))
        return RunResult("preview", self.stack_name, change_set, _op_counts(result.change_summary),
                         events.resources, result.stdout)

    def up(self, changes: Changes = None, targets: Sequence[str] | None = None) -> RunResult:
        """`pulumi up` of the stack file with `changes` applied, from a temporary `--config-file`.

        The committed stack file is not touched here: the caller replaces it once this returned (the update
        succeeded). `targets` (URNs) limit the update to what a local change touches, plus its dependents.
        """
        change_set = _change_set(changes)
        message = "stamps-ops: " + ("; ".join(str(c) for c in change_set) or "no config change")
        with self._config_override(changes) as config_file:
            stack = self._select()
            events = _EventCollector(f"up {self.stack_name}", self._console, self._show_progress)
            config_file = self._fleet_file(stack, config_file)
            with events.running():
                result = self._call("up", lambda: stack.up(
                    message=message[:500],
                    target=list(targets) if targets else None,
                    target_dependents=True if targets else None,
                    on_event=events.on_event,
                    on_output=self._on_output,
                    config_file=str(config_file) if config_file else None,
                    **self._extra(),
                ))
        summary = _op_counts(result.summary.resource_changes) or events.summary or {}
        return RunResult("up", self.stack_name, change_set, summary, events.resources, result.stdout,
                         _plain_outputs(result.outputs))

    def refresh(self, targets: Sequence[str] | None = None) -> RunResult:
        """`pulumi refresh` (of `targets` only, when given): adopt drift made outside Pulumi into the state.

        A targeted refresh reads only those resources: during a regional outage a whole-stack refresh would
        read (and fail on, and wait for) every resource of the failed region.
        """
        stack = self._select()
        events = _EventCollector(f"refresh {self.stack_name}", self._console, self._show_progress)
        debug = {k: v for k, v in self._extra().items() if k != "policy_packs"}
        with events.running():
            result = self._call("refresh", lambda: stack.refresh(
                target=list(targets) if targets else None,
                on_event=events.on_event, on_output=self._on_output, **debug))
        summary = _op_counts(result.summary.resource_changes) or events.summary or {}
        return RunResult("refresh", self.stack_name, ChangeSet(), summary, events.resources, result.stdout)

    def move_resources(self, dest: str, urns: Sequence[str]) -> None:
        """`pulumi state move` of `urns` from this stack to `dest` (same project): state only, no cloud call.

        Already moved (a re-run after a later step failed) is success: the CLI then finds none of them here.
        """
        stack = self._select()
        ws = stack.workspace
        env = {**({"PULUMI_HOME": ws.pulumi_home} if ws.pulumi_home else {}), **ws.env_vars}
        args = ["state", "move", "--source", self.stack_name, "--dest", dest, "--yes", *urns]
        try:
            self._call("state move", lambda: ws.pulumi_command.run(args, ws.work_dir, env))
        except RunnerError as err:
            if "no resources found to move" not in str(err):
                raise

    def outputs(self) -> dict[str, Any]:
        """Stack outputs; secret ones wrapped in Redacted."""
        stack = self._select()
        return _plain_outputs(self._call("stack output", stack.outputs))

    def deployed_config(self) -> DeployedConfig | None:
        """The config of the last update in the stack's history (None: the stack was never updated)."""
        stack = self._select()
        history = self._call("stack history", lambda: self._history(stack))
        for entry in history:
            if entry.kind not in ("update", "destroy", "import"):
                continue  # previews and refreshes do not change what the program deployed
            values = {}
            for key, raw in (entry.config or {}).items():
                if isinstance(raw, Mapping):
                    if raw.get("secret"):
                        continue
                    value = raw["objectValue"] if "objectValue" in raw else raw.get("value")
                else:
                    value = getattr(raw, "value", raw)
                    if getattr(raw, "secret", False):
                        continue
                if isinstance(value, str) and value[:1] in ("{", "["):
                    # The SDK keeps only `value`, the JSON text of an object (the CLI also sends objectValue).
                    with suppress(ValueError):
                        value = json.loads(value)
                values[str(key)] = value
            when = entry.end_time.isoformat(timespec="seconds") if entry.end_time else ""
            return DeployedConfig(values, entry.result == "succeeded", when)
        return None

    # -- internals ---------------------------------------------------------------------------------------

    def _history(self, stack: Any) -> Any:
        return stack.history(page_size=10, show_secrets=False)

    def _fleet_file(self, stack: Stack, config_file: Path | None) -> Path | None:
        """For a unit stack, hand the changed fleet file to the program through the workspace's environment
        (for this runner's calls); what remains to pass as --config-file (nothing, then)."""
        if self.unit is None:
            return config_file
        from stamps.program import FLEET_FILE_ENV

        env = cast(dict[str, str], stack.workspace.env_vars)  # a dict in LocalWorkspace; the base says Mapping
        if config_file is None:
            env.pop(FLEET_FILE_ENV, None)
        else:
            env[FLEET_FILE_ENV] = str(config_file)
        return None

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.policy_pack is not None:
            extra["policy_packs"] = [str(self.policy_pack)]
        if self.verbose >= 1:
            extra["debug"] = True
        if self.verbose >= 2:
            extra.update(log_verbosity=9, log_flow=True, log_to_std_err=True)
        return extra

    def _select(self) -> Stack:
        if self._stack is None:
            from pulumi import automation as auto

            opts = auto.LocalWorkspaceOptions(
                pulumi_command=cast("auto.PulumiCommand", self._command) if self._command else None,
                env_vars=self._env_vars or None,
            )
            select = auto.create_or_select_stack if self.create_missing else auto.select_stack
            self._stack = self._call("stack select", lambda: select(
                self.stack_name, work_dir=str(self.project_dir), opts=opts))
        return self._stack

    def _call(self, action: str, fn: Callable[[], Any]) -> Any:
        """Run one Automation API call, turning each failure mode into one RunnerError."""
        from pulumi.automation import errors as auto_errors

        try:
            return fn()
        except auto_errors.ConcurrentUpdateError as err:
            raise RunnerError(
                f"another update is running on stack '{self.stack_name}' (the backend holds its lock); "
                "wait for it to finish and rerun. If none is running (a crashed run left the lock), clear "
                f"it with `pulumi cancel --stack {self.stack_name}` and rerun."
            ) from err
        except auto_errors.StackNotFoundError as err:
            raise RunnerError(
                f"stack '{self.stack_name}' does not exist in the Pulumi backend you are logged in to "
                f"({self.stack_file.name} is only its config); check `pulumi whoami -v` / PULUMI_BACKEND_URL "
                "and `pulumi stack ls`."
            ) from err
        except auto_errors.CommandError as err:
            code, tail = _command_failure(str(err))
            if "[mandatory]" in str(err):
                raise PolicyRefused(
                    f"`pulumi {action}` on stack '{self.stack_name}': the policy pack refused the change "
                    f"(mandatory violation):\n{tail}"
                ) from err
            raise RunnerError(
                f"`pulumi {action}` failed on stack '{self.stack_name}' (exit {code}):\n{tail}"
            ) from err
        except FileNotFoundError as err:
            command = getattr(self._command, "command", "pulumi")
            if err.filename and os.path.basename(str(err.filename)) in ("pulumi", os.path.basename(command)):
                raise RunnerError(
                    f"the Pulumi CLI was not found ('{command}' is not on PATH); install it "
                    "(https://www.pulumi.com/docs/iac/download-install/) or run the playbook with "
                    "`--runner offline` to edit the stack file and plan it without deploying."
                ) from err
            raise RunnerError(f"`pulumi {action}` failed: {err}") from err
        except auto_errors.InvalidVersionError as err:
            raise RunnerError(f"unsupported Pulumi CLI: {err}") from err
        except builtins.RuntimeError as err:
            # The Automation API raises this when the CLI ends a preview without a summary event.
            raise RunnerError(
                f"`pulumi {action}` on stack '{self.stack_name}' ended without a result ({err}); the CLI "
                "probably crashed: rerun with `--verbose --verbose` for its debug log."
            ) from err

    def _pending(self, changes: Changes, change_set: ChangeSet) -> tuple[list[Change], str | None]:
        """Changes the saved file lacks, and the text to run them with (None if the file has them all)."""
        try:
            disk = StackConfigFile(self.stack_file)
            if isinstance(changes, StackConfigFile):
                wanted = changes.render()
                if wanted == disk.render():
                    return [], None
                return list(change_set) or [Change(str(changes.path), "(edited)", "(edited)")], wanted
            pending = disk.unapplied(change_set)
            if not pending:
                return [], None
            apply_changes(disk, change_set)
            return pending, disk.render()
        except ConfigEditError as err:
            raise RunnerError(f"cannot apply the config changes to {self.stack_file.name}: {err}") from err

    @contextmanager
    def _config_override(self, changes: Changes) -> Iterator[Path | None]:
        """A temporary copy of the stack file with the changes, outside the project (nothing to leave behind
        there if this process is killed), or None when the committed file already has them all."""
        if changes is None:
            yield None  # the stack as configured (a unit stack may have no file of its own)
            return
        _, text = self._pending(changes, _change_set(changes))
        if text is None:
            yield None
            return
        tmp = Path(tempfile.mkdtemp(prefix="stamps-config-"))
        try:
            path = tmp / self.stack_file.name
            path.write_text(text, encoding="utf-8")
            yield path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _command_failure(text: str) -> tuple[str, str]:
    """Exit code and the last stderr lines (stdout if stderr is empty) from a CommandError's text."""
    head, _, stderr = text.rpartition("\n stderr: ")
    code_part, _, stdout = head.partition("\n stdout: ")
    code = code_part.replace("code:", "").strip() or "?"
    body = stderr.strip() or stdout.strip() or "(no output)"
    return code, "\n".join(body.splitlines()[-15:])


def _plain_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: Redacted(v.value) if getattr(v, "secret", False) else getattr(v, "value", v)
            for k, v in outputs.items()}


# ----------------------------------------------------------------------------------------------------
# Offline


PlanFn = Callable[..., Any]  # plan_stack(project_dir, stack, config_file=...) -> Plan


def _takes(fn: Callable[..., Any], keyword: str) -> bool:
    """Does `fn` accept `keyword` (tests pass plan functions without the progress callback)?"""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
DiffFn = Callable[[Any, Any], Any]  # diff_plans(old, new) -> PlanDiff


class OfflineRunner:
    """Answers preview/up from the offline engine; only temporary copies of the stack file are written.

    The deployed state is modelled as the stack file as it was when the runner was created (or
    `baseline_text`): `preview` plans that baseline and the baseline with the changes and diffs the two; `up`
    does the same, then adopts the new config as the baseline, as a deployment would. The real stack file is
    never touched.
    """

    def __init__(
        self,
        project_dir: str | Path,
        stack: str,
        *,
        plan_stack: PlanFn | None = None,
        diff_plans: DiffFn | None = None,
        baseline_text: str | None = None,
        policy_pack: str | Path | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.stack_name = stack
        self.engine_stack = bare_stack(stack)  # what the engine calls the stack: URNs and names use it
        self.stack_file = stack_file_path(self.project_dir, stack)
        self.policy_pack = Path(policy_pack).resolve() if policy_pack else None
        self._plan_fn = plan_stack
        self._diff_fn = diff_plans
        if baseline_text is None:
            try:
                baseline_text = self.stack_file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise RunnerError(f"stack config file {self.stack_file} does not exist") from None
        self.baseline_text = baseline_text
        self._plans: dict[str, Any] = {}  # config text -> plan; a preview then up plans each config once

    def preview(self, changes: Changes = None, *, targets: Sequence[str] | None = None) -> RunResult:
        return self._run("offline-preview", changes, targets)

    def up(self, changes: Changes = None, targets: Sequence[str] | None = None) -> RunResult:
        result = self._run("offline-up", changes, targets)
        self.baseline_text = self._target_text(changes)
        return result

    def refresh(self, targets: Sequence[str] | None = None) -> RunResult:
        # Offline there is no cloud to read drift from: the modelled state is already current.
        return RunResult("offline-refresh", self.stack_name, ChangeSet(), {}, [])

    def outputs(self) -> dict[str, Any]:
        return dict(self._plan(self.baseline_text).outputs)

    def move_resources(self, dest: str, urns: Sequence[str]) -> None:
        """State lives in the backend; offline there is none to move (the plan has no state)."""

    def deployed_config(self) -> DeployedConfig | None:
        """None: offline, the stack file is the only record of what is (to be) deployed."""
        return None

    def plan(self, changes: Changes = None) -> Any:
        """The offline plan of the stack file with `changes` applied."""
        return self._plan(self._target_text(changes))

    def check_policy(self, changes: Changes = None, console: Console | None = None, *,
                     pack: Path | None = None) -> Any:
        """Run the policy pack on the plan with `changes`; PolicyRefused on a mandatory violation.

        The pack runs over the analyzer protocol exactly as `pulumi preview --policy-pack` starts it, so a
        dry run and the offline runner refuse what the CLI's update would refuse. None without a pack.
        """
        pack = pack or self.policy_pack
        if pack is None:
            return None
        from stamps.policycheck import check_reports
        from stamps.policycheck.report import render

        # A fleet's check takes tens of seconds: a progress line on a terminal (nothing in logs or pipes).
        [report] = check_reports([self.plan(changes)], pack, progress=sys.stdout)
        if report.mandatory:
            if console is not None:
                render(report, console)
            names = sorted({v.policy for v in report.mandatory})
            raise PolicyRefused(f"the policy pack refused the change: {len(report.mandatory)} mandatory "
                                f"violation(s) of {', '.join(names)}; nothing was changed")
        return report

    # -- internals ---------------------------------------------------------------------------------------

    def _engine(self) -> tuple[PlanFn, DiffFn]:
        if self._plan_fn is None or self._diff_fn is None:
            try:
                from stamps.offline import diff_plans, plan_stack
            except ImportError as err:
                raise RunnerError(f"the offline engine (stamps.offline) is not available: {err}") from err
            self._plan_fn = self._plan_fn or plan_stack
            self._diff_fn = self._diff_fn or diff_plans
        return self._plan_fn, self._diff_fn

    def _target_text(self, changes: Changes) -> str:
        if isinstance(changes, StackConfigFile):
            return changes.render()
        with self._copy(self.baseline_text) as path:
            cfg = StackConfigFile(path)
            try:
                apply_changes(cfg, _change_set(changes))
            except ConfigEditError as err:
                raise RunnerError(
                    f"cannot apply the config changes to {self.stack_file.name}: {err}") from err
            cfg.save()  # to the temp copy: the change goes through the same write path as a playbook's
            return path.read_text(encoding="utf-8")

    @contextmanager
    def _copy(self, text: str) -> Iterator[Path]:
        tmp = Path(tempfile.mkdtemp(prefix="stamps-offline-"))
        try:
            path = tmp / self.stack_file.name
            path.write_text(text, encoding="utf-8")
            yield path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _plan(self, text: str) -> Any:
        if text not in self._plans:
            from stamps.offline.progress import progress_line

            plan_fn, _ = self._engine()
            # A fleet's plan takes tens of seconds: the `stamps plan` progress line, on a terminal only.
            with self._copy(text) as path, progress_line(sys.stdout, 1) as line:
                count = {"on_register": line.stack(self.engine_stack)} if _takes(plan_fn, "on_register") else {}
                self._plans[text] = plan_fn(self.project_dir, self.engine_stack, config_file=path, **count)
        return self._plans[text]

    def _run(self, operation: str, changes: Changes, targets: Sequence[str] | None) -> RunResult:
        change_set = _change_set(changes)
        after_text = self._target_text(changes)
        before, after = self._plan(self.baseline_text), self._plan(after_text)
        _, diff_fn = self._engine()
        diff = diff_fn(before, after)
        urns = {(r["type"], r["name"]): r["urn"] for r in [*before.resources, *after.resources]}
        resources = [
            *(ResourceChange(urns.get((t, n), n), t, "create") for t, n in diff.creates),
            *(ResourceChange(urns.get((u.type, u.name), u.name), u.type, "update", tuple(u.paths))
              for u in diff.updates),
            *(ResourceChange(urns.get((t, n), n), t, "delete") for t, n in diff.deletes),
        ]
        if targets:
            everything = [*before.resources, *after.resources]
            keep = _with_dependents({_resource_key(t) for t in targets}, everything)
            resources = [r for r in resources if (r.type, _resource_key(r.urn)[1]) in keep]
        counts = Counter(r.op for r in resources)
        # The engine's count (as `stamps plan` prints it): every registration plus the stack; a new component
        # is a change too.
        before_keys = {(r["type"], r["name"]) for r in before.resources}
        new_components = sum(1 for r in after.resources
                             if not r.get("custom", True) and (r["type"], r["name"]) not in before_keys)
        total = len(after.resources) + 1
        summary = {**counts, "same": max(total - counts["create"] - counts["update"] - new_components, 0)}
        text_diff = unified_diff(self.baseline_text, after_text, self.stack_file.name)
        return RunResult(operation, self.stack_name, change_set, dict(summary), resources, text_diff,
                         dict(after.outputs) if operation == "offline-up" else {})


def _with_dependents(
    targets: set[tuple[str, str]], resources: Sequence[Mapping[str, Any]]
) -> set[tuple[str, str]]:
    """Targets plus every resource that depends on or is parented by one of them (--target-dependents)."""
    by_urn = {r["urn"]: (r["type"], r["name"]) for r in resources}
    keep = set(targets)
    grew = True
    while grew:
        grew = False
        for r in resources:
            k = (r["type"], r["name"])
            if k in keep:
                continue
            upstream = [r.get("parent"), *(r.get("dependencies") or [])]
            if any(by_urn.get(u) in keep for u in upstream if u):
                keep.add(k)
                grew = True
    return keep
