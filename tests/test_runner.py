"""ops.runner without a Pulumi CLI: the Automation API drives a stand-in command that records argv and plays
back canned output, engine events and the CLI's error texts; OfflineRunner runs on fake plan/diff functions."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from pulumi.automation import CommandResult
from pulumi.automation import errors as auto_errors
from pulumi.automation.errors import create_command_error
from pulumi.runtime.proto import events_pb2, events_pb2_grpc
from rich.console import Console
from semver import VersionInfo

from ops.runner import (
    AutomationRunner,
    OfflineRunner,
    Redacted,
    ResourceChange,
    Runner,
    RunnerError,
)
from ops.stackconfig import ChangeSet, StackConfigFile

STACK = """\
encryptionsalt: v1:Cq8RfRqmXy8=:v1:sFBt3JHmBvbA2qz0:p2sU0o4nCkpR6kD3bn+9EgC8HUd1hA==
config:
  # Which region serves traffic now.
  stamps:activeRegion: eastus
  stamps:cells:
    - name: banking
      replicas: {min: 3, max: 10}
    - name: retail
      replicas: {min: 2, max: 10}
  stamps:tenants:
    - id: banking-corp
      cell: banking
    - id: shop
      cell: retail
  stamps:alertWebhookUrl:
    secure: v1:Wc0n5kCN4V2m0i8D:6t9mR2qgYV3o9v0b1Zr0vSOFH4k4b0dYx1V2lq8pJm0=
"""
DB_URN = "urn:pulumi:prod::stamps::stamps:cell$azure-native:sql:Database::sqldb-banking"
STACK_URN = "urn:pulumi:prod::stamps::pulumi:pulumi:Stack::stamps-prod"
LOG = "<event-log>"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "Pulumi.yaml").write_text("name: stamps\nruntime: python\n")
    (root / "Pulumi.prod.yaml").write_text(STACK)
    return root


# -- the CLI stand-in ---------------------------------------------------------------------------------------------


def _meta(op: str, urn: str, typ: str, **extra: Any) -> dict[str, Any]:
    return {"op": op, "urn": urn, "type": typ, "provider": "", **extra}


def engine_events(summary: bool = True) -> list[dict[str, Any]]:
    """What the engine streams for a one-resource change: pre/outputs per resource, a summary, a cancel."""
    db = _meta("update", DB_URN, "azure-native:sql:Database", diffs=["sku"],
               detailedDiff={"sku.name": {"diffKind": "update", "inputDiff": True}})
    stack = _meta("same", STACK_URN, "pulumi:pulumi:Stack")
    events: list[dict[str, Any]] = [
        {"preludeEvent": {"config": {}}},
        {"resourcePreEvent": {"metadata": stack, "planning": True}},
        {"resourcePreEvent": {"metadata": db, "planning": True}},
        {"resOutputsEvent": {"metadata": db, "planning": True}},
        {"resOutputsEvent": {"metadata": stack, "planning": True}},
    ]
    if summary:
        events.append({"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 3,
                                        "resourceChanges": {"update": 1, "same": 5}, "PolicyPacks": {}}})
    events.append({"cancelEvent": {}})
    return [{"sequence": i, "timestamp": 1700000000 + i, **e} for i, e in enumerate(events)]


@dataclass
class FakePulumi:
    """Stands in for `PulumiCommand`: same attributes and `run` signature, no subprocess.

    Like the real one, a non-zero exit raises `create_command_error(result)`, so the Automation API's own
    stderr classification (ConcurrentUpdateError, StackNotFoundError, ...) is what the runner sees.
    """

    version_text: str = "3.272.0"
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)  # op -> (exit code, stderr)
    summary: bool = True
    command: str = "pulumi"
    calls: list[list[str]] = field(default_factory=list)
    config_files: dict[str, str] = field(default_factory=dict)  # --config-file path -> its text at run time
    event_logs: list[str] = field(default_factory=list)
    cwds: list[str] = field(default_factory=list)
    fleet_files: list[str] = field(default_factory=list)
    # The backend's update history, newest first, in `pulumi stack history --json` form.
    history: list[dict[str, Any]] = field(default_factory=list)
    on_up: Callable[[], Any] | None = None  # runs when `up` starts (a test blocks or kills here)

    def deploy_file(self, path: Path, result: str = "succeeded") -> None:
        """Record an update of the config in `path`, as the backend does after `pulumi up`."""
        config = {}
        # A fleet's unit stack may have no file of its own (its config is the fleet file's).
        doc = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
        for key, value in doc.get("config", {}).items():
            if isinstance(value, dict) and set(value) == {"secure"}:
                config[key] = {"secret": True}
            elif isinstance(value, dict | list):
                config[key] = {"value": json.dumps(value), "objectValue": value, "secret": False}
            else:
                config[key] = {"value": str(value).lower() if isinstance(value, bool) else str(value),
                               "secret": False}
        self.history.insert(0, {
            "kind": "update", "startTime": "2025-01-01T10:00:00.000000Z", "endTime": "2025-01-01T10:02:00.000000Z",
            "message": "m", "environment": {}, "config": config, "result": result,
            "resourceChanges": {"update": 1, "same": 5},
        })

    @property
    def version(self) -> VersionInfo:
        return VersionInfo.parse(self.version_text)

    def run(self, args: list[str], cwd: str, additional_env: Mapping[str, str],
            on_output: Callable[[str], Any] | None = None,
            on_error: Callable[[str], Any] | None = None) -> CommandResult:
        args = list(args)
        self.calls.append(args)
        self.cwds.append(cwd)
        if "STAMPS_FLEET_FILE" in additional_env:
            # A unit stack's program reads the fleet file named here: keep what it said at run time.
            self.fleet_files.append(Path(additional_env["STAMPS_FLEET_FILE"]).read_text())
        op = " ".join(args[:2]) if args[0] == "stack" else args[0]
        if "--config-file" in args:
            path = args[args.index("--config-file") + 1]
            self.config_files[path] = Path(path).read_text()
        if op == "up" and self.on_up is not None:
            self.on_up()
        if op in self.failures:
            if op == "up":
                self._record_up(args, cwd, "failed")
            code, stderr = self.failures[op]
            if on_error:
                for line in stderr.splitlines():
                    on_error(line)
            raise create_command_error(CommandResult(stdout="", stderr=stderr, code=code))
        if op == "up":
            self._record_up(args, cwd, "succeeded")
        if op == "refresh":
            self.history.insert(0, {"kind": "refresh", "startTime": "2025-01-01T11:00:00.000000Z",
                                    "endTime": "2025-01-01T11:01:00.000000Z", "message": "", "environment": {},
                                    "config": {}, "result": "succeeded", "resourceChanges": {"update": 1, "same": 5}})
        if "--event-log" in args:
            self._emit(args[args.index("--event-log") + 1])
        stdout = self._stdout(op, args)
        if on_output:
            for line in stdout.splitlines():
                on_output(line)
        return CommandResult(stdout=stdout, stderr="", code=0)

    def _record_up(self, args: list[str], cwd: str, result: str) -> None:
        stack = args[args.index("--stack") + 1].split("/")[-1] if "--stack" in args else "prod"
        path = Path(args[args.index("--config-file") + 1]) if "--config-file" in args else \
            Path(cwd) / f"Pulumi.{stack}.yaml"
        self.deploy_file(path, result)

    def _emit(self, target: str) -> None:
        self.event_logs.append(target)
        lines = [json.dumps(e) for e in engine_events(self.summary)]
        if target.startswith("tcp://"):
            # CLI > 3.205: the Automation API listens on gRPC and the CLI streams events to it.
            with grpc.insecure_channel(target.removeprefix("tcp://")) as channel:
                events_pb2_grpc.EventsStub(channel).StreamEvents(
                    iter([events_pb2.EventRequest(event=line) for line in lines]))
        else:
            # Older CLIs append JSON lines to a file the Automation API tails until the cancel event.
            with open(target, "a", encoding="utf-8") as log:
                log.write("".join(line + "\n" for line in lines))

    def _stdout(self, op: str, args: list[str]) -> str:
        if op == "stack output":
            secret = "hunter2-plain" if "--show-secrets" in args else "[secret]"
            return json.dumps({"frontDoorHost": "stamps.azurefd.net", "sqlAdminPassword": secret})
        if op == "stack history":
            size = int(args[args.index("--page-size") + 1]) if "--page-size" in args else len(self.history)
            return json.dumps(self.history[:size])
        if op in ("preview", "up", "refresh"):
            return f"Updating (prod)\n    ~ azure-native:sql:Database sqldb-banking {op}\nResources:\n    1 changed"
        return ""

    def argv(self) -> list[list[str]]:
        """Recorded calls with the (random) event-log address replaced by a marker."""
        out = []
        for call in self.calls:
            call = list(call)
            if "--event-log" in call:
                call[call.index("--event-log") + 1] = LOG
            out.append(call)
        return out


def make_runner(project: Path, fake: FakePulumi, **kw: Any) -> tuple[AutomationRunner, io.StringIO]:
    out = io.StringIO()
    runner = AutomationRunner(project, "prod", pulumi_command=fake,
                              console=Console(file=out, width=120), **kw)
    return runner, out


SELECT = ["stack", "select", "--stack", "prod"]
HISTORY = ["stack", "history", "--json", "--show-secrets", "--page-size", "1", "--page", "1", "--stack", "prod"]
OUTPUTS = [["stack", "output", "--json", "--stack", "prod"],
           ["stack", "output", "--json", "--show-secrets", "--stack", "prod"]]


# -- AutomationRunner ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "transport"), [("3.200.0", "file"), ("3.272.0", "grpc")])
def test_preview_argv_events_and_progress(project: Path, version: str, transport: str) -> None:
    fake = FakePulumi(version_text=version)
    runner, console = make_runner(project, fake)
    result = runner.preview()
    assert fake.argv() == [SELECT, ["preview", "--exec-kind", "auto.local", "--event-log", LOG, "--stack", "prod"]]
    assert fake.cwds == [str(project), str(project)]
    assert fake.event_logs[0].startswith("tcp://") == (transport == "grpc")
    # Everything below came through the event stream, not stdout.
    assert result.change_summary == {"update": 1, "same": 5}
    assert result.resources == [ResourceChange(DB_URN, "azure-native:sql:Database", "update", ("sku.name",))]
    assert result.has_changes
    assert "preview prod" in console.getvalue() and "2/2" in console.getvalue()
    assert result.summary_line() == "preview of prod: 1 to update, 5 unchanged"
    assert "sqldb-banking" in result.stdout


def test_preview_of_unsaved_edits_goes_through_a_temporary_config_file(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:cells[name=banking].replicas.min", 5)
    result = runner.preview(cfg)
    preview = fake.argv()[1]
    assert preview[:1] == ["preview"] and "--config-file" in preview
    temp = preview[preview.index("--config-file") + 1]
    assert not temp.startswith(str(project))
    assert "replicas: {min: 5, max: 10}" in fake.config_files[temp]
    assert "# Which region serves traffic now." in fake.config_files[temp]
    assert not Path(temp).exists()  # cleaned up
    assert (project / "Pulumi.prod.yaml").read_text() == STACK  # the real file is untouched
    assert [c.path for c in result.config_changes] == ["stamps:cells[name=banking].replicas.min"]
    assert not any(call[0] == "config" for call in fake.calls)


def test_preview_of_an_unsaved_change_set_applies_it_to_the_copy(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.append("stamps:tenants", {"id": "newco", "cell": "retail"})
    runner.preview(ChangeSet(cfg.changes))
    preview = fake.argv()[1]
    text = fake.config_files[preview[preview.index("--config-file") + 1]]
    assert "    - id: newco\n      cell: retail\n  stamps:alertWebhookUrl:" in text


def test_preview_of_saved_changes_uses_the_stack_file_itself(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:activeRegion", "westus")
    cfg.save()
    runner.preview(cfg.changes)
    assert fake.argv()[1] == ["preview", "--exec-kind", "auto.local", "--event-log", LOG, "--stack", "prod"]


def test_up_runs_the_saved_file_with_targets_and_reads_outputs_and_summary(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:cells[name=banking].replicas.min", 5)
    cfg.save()
    result = runner.up(cfg.changes, targets=[DB_URN])
    assert fake.argv() == [
        SELECT,
        ["up", "--yes", "--skip-preview",
         "--message", "stamps-ops: stamps:cells[name=banking].replicas.min: 3 -> 5",
         "--target", DB_URN, "--target-dependents",
         "--exec-kind", "auto.local", "--event-log", LOG, "--stack", "prod"],
        *OUTPUTS,
        HISTORY,
    ]
    assert result.operation == "up"
    assert result.change_summary == {"update": 1, "same": 5}
    assert [r.urn for r in result.resources] == [DB_URN]
    assert result.outputs["frontDoorHost"] == "stamps.azurefd.net"
    secret = result.outputs["sqlAdminPassword"]
    assert isinstance(secret, Redacted) and secret.value == "hunter2-plain"
    assert "hunter2" not in repr(result.outputs) + str(result)


def test_up_without_targets_updates_everything(project: Path) -> None:
    fake = FakePulumi(version_text="3.200.0")
    runner, _ = make_runner(project, fake, show_progress=False)
    runner.up()
    assert fake.argv()[1] == ["up", "--yes", "--skip-preview", "--message", "stamps-ops: no config change",
                              "--exec-kind", "auto.local", "--event-log", LOG, "--stack", "prod"]


def test_up_of_unsaved_edits_deploys_a_temporary_copy_and_leaves_the_stack_file_alone(project: Path) -> None:
    """Deployed state is the truth: the committed file changes only after `up` succeeded (the caller saves)."""
    for changes_of in (lambda c: c, lambda c: c.changes):
        fake = FakePulumi()
        runner, _ = make_runner(project, fake)
        cfg = StackConfigFile.for_stack(project, "prod")
        cfg.set("stamps:activeRegion", "westus")
        runner.up(changes_of(cfg))
        up = fake.argv()[1]
        temp = up[up.index("--config-file") + 1]
        assert "stamps:activeRegion: westus" in fake.config_files[temp]
        assert not temp.startswith(str(project)) and not Path(temp).exists()
        assert (project / "Pulumi.prod.yaml").read_text() == STACK
        assert fake.history[0]["config"]["stamps:activeRegion"]["value"] == "westus"


def test_deployed_config_is_the_last_update_in_the_history(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    assert runner.deployed_config() is None  # never updated
    fake.deploy_file(project / "Pulumi.prod.yaml")
    deployed = runner.deployed_config()
    assert deployed is not None and deployed.succeeded
    assert deployed.values["stamps:activeRegion"] == "eastus"
    assert deployed.values["stamps:cells"][0] == {"name": "banking", "replicas": {"min": 3, "max": 10}}
    assert "stamps:alertWebhookUrl" not in deployed.values  # secrets are compared by nobody
    fake.deploy_file(project / "Pulumi.prod.yaml", result="failed")
    deployed = runner.deployed_config()
    assert deployed is not None and not deployed.succeeded
    assert fake.argv()[-1] == ["stack", "history", "--json", "--page-size", "10", "--page", "1",
                               "--stack", "prod"]


def test_refresh_of_targets_reads_only_those(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    runner.refresh(targets=[DB_URN])
    assert fake.argv()[1] == ["refresh", "--skip-preview", "--yes", "--target", DB_URN, "--exec-kind",
                              "auto.local", "--event-log", LOG, "--stack", "prod"]


def test_updates_run_the_policy_pack_and_a_mandatory_violation_is_exit_3(project: Path) -> None:
    from ops.runner import PolicyRefused

    pack = project / "policy"
    pack.mkdir()
    fake = FakePulumi()
    runner, _ = make_runner(project, fake, policy_pack=pack)
    runner.up()
    runner.preview()
    assert [c[:1] + c[c.index("--policy-pack"):c.index("--policy-pack") + 2] for c in fake.argv()
            if c[0] in ("up", "preview")] == [["up", "--policy-pack", str(pack)],
                                              ["preview", "--policy-pack", str(pack)]]
    violation = ("Policy Violations:\n    [mandatory]  stamps-policy v1.0.0  allowed-regions "
                 "(azure-native:sql:Server: sql-x)\n    region northeurope is not allowed\nerror: update failed")
    refused = FakePulumi(failures={"up": (255, violation)})
    runner, _ = make_runner(project, refused, policy_pack=pack)
    with pytest.raises(PolicyRefused, match="policy pack refused") as err:
        runner.up()
    assert err.value.exit_code == 3


def test_a_fully_qualified_stack_name_goes_whole_to_the_cli_only(project: Path) -> None:
    fake = FakePulumi()
    runner = AutomationRunner(project, "acme/stamps/prod", pulumi_command=fake, show_progress=False)
    runner.up()
    assert fake.argv()[0] == ["stack", "select", "--stack", "acme/stamps/prod"]
    assert runner.stack_file == project / "Pulumi.prod.yaml" and runner.engine_stack == "prod"
    engine = FakeEngine()
    offline_runner = OfflineRunner(project, "acme/stamps/prod", plan_stack=engine.plan, diff_plans=fake_diff)
    offline_runner.preview()
    assert {stack for _, stack, _, _ in engine.calls} == {"prod"}


def test_refresh_and_outputs_argv(project: Path) -> None:
    fake = FakePulumi()
    runner, _ = make_runner(project, fake)
    result = runner.refresh()
    outputs = runner.outputs()
    assert fake.argv() == [
        SELECT,
        ["refresh", "--skip-preview", "--yes", "--exec-kind", "auto.local", "--event-log", LOG, "--stack", "prod"],
        HISTORY,
        *OUTPUTS,
    ]
    assert result.operation == "refresh" and result.change_summary == {"update": 1, "same": 5}
    assert outputs["frontDoorHost"] == "stamps.azurefd.net"
    assert str(outputs["sqlAdminPassword"]) == "[secret]"


LOCKED_DIY = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
    "delete the lock file with `pulumi cancel`.\n  azblob://state/.pulumi/locks/organization/stamps/prod/"
    "2b8d.json: created by sre@ops-1 (pid 4242) at 2025-01-01T10:00:00Z"
)


@pytest.mark.parametrize(
    ("op", "code", "stderr", "cause", "message"),
    [
        ("up", 255, LOCKED_DIY, auto_errors.ConcurrentUpdateError,
         r"another update is running on stack 'prod'.*`pulumi cancel --stack prod`"),
        ("up", 255, "error: [409] Conflict: Another update is currently in progress.",
         auto_errors.ConcurrentUpdateError, r"another update is running on stack 'prod'"),
        ("stack select", 255, "error: no stack named 'prod' found", auto_errors.StackNotFoundError,
         r"stack 'prod' does not exist in the Pulumi backend.*`pulumi stack ls`"),
        ("up", 255, "error: update failed\nerror: sqldb-banking: Code=\"QuotaExceeded\"",
         auto_errors.CommandError, r"`pulumi up` failed on stack 'prod' \(exit 255\):\n"
                                   r"error: update failed\nerror: sqldb-banking: Code=\"QuotaExceeded\"$"),
    ],
)
def test_cli_failures_become_one_actionable_runner_error(
    project: Path, op: str, code: int, stderr: str, cause: type[Exception], message: str
) -> None:
    fake = FakePulumi(failures={op: (code, stderr)})
    runner, _ = make_runner(project, fake)
    with pytest.raises(RunnerError, match=message) as err:
        runner.up()
    assert type(err.value.__cause__) is cause


def test_preview_without_a_summary_event_is_an_error(project: Path) -> None:
    runner, _ = make_runner(project, FakePulumi(summary=False))
    with pytest.raises(RunnerError, match="ended without a result"):
        runner.preview()


def test_missing_cli_is_reported_with_what_to_do(project: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    runner = AutomationRunner(project, "prod", show_progress=False)  # the real PulumiCommand, no stand-in
    with pytest.raises(RunnerError, match=r"Pulumi CLI was not found.*install it.*`--runner offline`") as err:
        runner.preview()
    assert isinstance(err.value.__cause__, FileNotFoundError)


def test_both_runners_satisfy_the_protocol(project: Path) -> None:
    assert isinstance(AutomationRunner(project, "prod"), Runner)
    assert isinstance(OfflineRunner(project, "prod", plan_stack=FakeEngine().plan, diff_plans=fake_diff), Runner)


# -- OfflineRunner ------------------------------------------------------------------------------------------------


@dataclass
class FakePlan:
    resources: list[dict[str, Any]]
    outputs: dict[str, Any]


@dataclass
class FakeUpdate:
    type: str
    name: str
    paths: list[str]


@dataclass
class FakeDiff:
    creates: list[tuple[str, str]]
    updates: list[FakeUpdate]
    deletes: list[tuple[str, str]]

    @property
    def is_empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes)


APP = "azure-native:app:ContainerApp"
SUB = "azure-native:apimanagement:Subscription"


def _urn(typ: str, name: str, parent_type: str | None = None) -> str:
    qualified = f"{parent_type}${typ}" if parent_type else typ
    return f"urn:pulumi:prod::stamps::{qualified}::{name}"


@dataclass
class FakeEngine:
    """plan_stack stand-in: a cell component + container app per cell, an APIM subscription per tenant."""

    calls: list[tuple[Path, str, Path | None, str]] = field(default_factory=list)

    def plan(self, project_dir: Path, stack: str, config_file: Path | None = None) -> FakePlan:
        assert config_file is not None
        text = Path(config_file).read_text()
        self.calls.append((project_dir, stack, config_file, text))
        config = yaml.safe_load(text)["config"]
        resources: list[dict[str, Any]] = []
        apps = {}
        for cell in config["stamps:cells"]:
            comp = _urn("stamps:cell", cell["name"])
            app = _urn(APP, f"ca-{cell['name']}", "stamps:cell")
            apps[cell["name"]] = app
            resources += [
                {"urn": comp, "type": "stamps:cell", "name": cell["name"], "parent": None, "custom": False,
                 "inputs": {}, "dependencies": []},
                {"urn": app, "type": APP, "name": f"ca-{cell['name']}", "parent": comp, "custom": True,
                 "inputs": {"replicas": cell["replicas"]}, "dependencies": []},
            ]
        for tenant in config["stamps:tenants"]:
            resources.append({"urn": _urn(SUB, f"sub-{tenant['id']}"), "type": SUB, "name": f"sub-{tenant['id']}",
                              "parent": None, "custom": True, "inputs": {"scope": tenant["cell"]},
                              "dependencies": [apps[tenant["cell"]]]})
        return FakePlan(resources, {"activeRegion": config["stamps:activeRegion"]})


def fake_diff(old: FakePlan, new: FakePlan) -> FakeDiff:
    a = {(r["type"], r["name"]): r for r in old.resources if r["custom"]}
    b = {(r["type"], r["name"]): r for r in new.resources if r["custom"]}
    updates = []
    for k in sorted(set(a) & set(b)):
        old_in, new_in = a[k]["inputs"], b[k]["inputs"]
        paths = sorted(f"{p}.{q}" for p in old_in for q in (old_in[p] if isinstance(old_in[p], dict) else {})
                       if old_in[p][q] != new_in.get(p, {}).get(q))
        if old_in != new_in:
            updates.append(FakeUpdate(k[0], k[1], paths or ["(root)"]))
    return FakeDiff(sorted(set(b) - set(a)), updates, sorted(set(a) - set(b)))


def offline(project: Path) -> tuple[OfflineRunner, FakeEngine]:
    engine = FakeEngine()
    return OfflineRunner(project, "prod", plan_stack=engine.plan, diff_plans=fake_diff), engine


def test_offline_preview_applies_changes_to_a_copy_only(project: Path) -> None:
    real = project / "Pulumi.prod.yaml"
    before = real.stat()
    runner, engine = offline(project)
    cfg = StackConfigFile(real)
    cfg.set("stamps:cells[name=banking].replicas.min", 5)
    result = runner.preview(ChangeSet(cfg.changes))
    assert result.operation == "offline-preview"
    assert result.resources == [ResourceChange(_urn(APP, "ca-banking", "stamps:cell"), APP, "update",
                                               ("replicas.min",))]
    assert result.change_summary == {"update": 1, "same": 6}  # 6 registrations + the stack, 1 changed
    assert "+      replicas: {min: 5, max: 10}" in result.stdout and "secure: [redacted]" not in result.stdout
    assert [c.path for c in result.config_changes] == ["stamps:cells[name=banking].replicas.min"]
    after = real.stat()
    assert real.read_text() == STACK and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    for project_dir, stack, config_file, _ in engine.calls:
        assert (project_dir, stack) == (project.resolve(), "prod")
        assert config_file is not None and config_file.name == "Pulumi.prod.yaml"
        assert project not in config_file.parents and not config_file.exists()


def test_offline_preview_of_an_edited_file_and_of_creates_and_deletes(project: Path) -> None:
    runner, _ = offline(project)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.delete("stamps:tenants[id=shop]")
    cfg.append("stamps:tenants", {"id": "newco", "cell": "banking"})
    result = runner.preview(cfg)
    assert sorted((r.op, r.type, r.urn.rsplit("::", 1)[-1]) for r in result.resources) == [
        ("create", SUB, "sub-newco"), ("delete", SUB, "sub-shop")]
    assert result.change_summary == {"create": 1, "delete": 1, "same": 6}


def test_offline_up_adopts_the_new_config_so_a_rerun_changes_nothing(project: Path) -> None:
    runner, engine = offline(project)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:activeRegion", "westus")
    cfg.set("stamps:cells[name=retail].replicas.max", 20)
    preview = runner.preview(cfg.changes)
    up = runner.up(cfg.changes)
    assert len(engine.calls) == 2  # baseline and new config, each planned once
    assert up.resources == preview.resources and len(up.resources) == 1  # retail's app; region is an output
    assert up.operation == "offline-up" and up.outputs == {"activeRegion": "westus"}
    assert runner.outputs() == {"activeRegion": "westus"}
    again = runner.preview(cfg.changes)
    assert not again.has_changes and again.resources == []
    assert (project / "Pulumi.prod.yaml").read_text() == STACK


def test_offline_targets_keep_their_dependents_only(project: Path) -> None:
    runner, _ = offline(project)
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:cells[name=banking].replicas.min", 4)
    cfg.set("stamps:cells[name=retail].replicas.min", 4)
    cfg.set("stamps:tenants[id=banking-corp].cell", "banking")  # unchanged: no-op
    cfg.set("stamps:tenants[id=shop].cell", "banking")
    everything = runner.preview(cfg.changes)
    assert {r.urn.rsplit("::", 1)[-1] for r in everything.resources} == {"ca-banking", "ca-retail", "sub-shop"}
    targeted = runner.preview(cfg.changes, targets=[_urn(APP, "ca-retail", "stamps:cell")])
    # sub-shop depends on ca-retail in the old plan, so --target-dependents takes it along.
    assert {r.urn.rsplit("::", 1)[-1] for r in targeted.resources} == {"ca-retail", "sub-shop"}


def test_offline_refresh_touches_nothing(project: Path) -> None:
    runner, engine = offline(project)
    result = runner.refresh()
    assert result.operation == "offline-refresh" and not result.has_changes and engine.calls == []


def test_offline_engine_is_imported_lazily_with_a_clear_error(project: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stamps.offline", None)  # makes `import stamps.offline` fail
    runner = OfflineRunner(project, "prod")
    with pytest.raises(RunnerError, match=r"offline engine \(stamps.offline\) is not available"):
        runner.preview()


def test_offline_runner_defaults_to_the_stamps_offline_engine(project: Path) -> None:
    engine = pytest.importorskip("stamps.offline")
    plan_fn, diff_fn = OfflineRunner(project, "prod")._engine()
    assert (plan_fn, diff_fn) == (engine.plan_stack, engine.diff_plans)
