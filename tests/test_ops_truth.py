"""Operators can trust every run: the stack file says what is deployed whatever fails, dry runs write nothing,
notifications never undo the record, and stack names work in every form.

The real runner seam is driven with the stand-in `pulumi` command of tests/test_runner.py failing at each step
of an update, and with a real SIGKILL of a child process in the middle of `pulumi up`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import stamps.offline
from ops.cli import main
from ops.notify import DeliveryResult, Notifier
from ops.runner import AutomationRunner, OfflineRunner
from stamps.cli import build_parser as stamps_parser
from tests.conftest import ROOT, cached_plan
from tests.test_ops_playbooks import Health, Ops
from tests.test_runner import FakePulumi

LOCKED = "error: [409] Conflict: Another update is currently in progress."
PROVIDER = "error: update failed\nerror: cell-banking-wus-app: Code=\"ContainerAppOperationError\""
CANCELLED = "error: update canceled"
FAILOVER = ("failover", "--region", "eastus", "--force", "--accept-unprotected", "shared-smb", "--actor", "sre-alice")
FAILED_OVER = "servingFrom: dr"  # what the stack file says once eastus serves from its DR region


# The `stamps` commands bind `plan_stack` when first imported: import them before any test patches it.
stamps_parser()


@pytest.fixture(autouse=True)
def _cached_offline_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    # Target URNs come from an offline plan of each config; plan each distinct config once per session.
    monkeypatch.setattr(stamps.offline, "plan_stack",
                        lambda project_dir, stack, config_file=None, **_: cached_plan(project_dir, stack, config_file))


def automation(project: Path, fake: FakePulumi, *argv: str, **seams: Any) -> int:
    def factory(project_dir: Path, stack: str, dry_run: bool, kind: str) -> Any:
        if dry_run:
            return OfflineRunner(project_dir, stack, plan_stack=cached_plan)
        return AutomationRunner(project_dir, stack, pulumi_command=fake, show_progress=False)

    seams = {"metrics_factory": lambda: Health(eastus=False), "now": lambda: _now(), "sleep": lambda s: None,
             **seams}
    return main([*argv, "--project-dir", str(project)], runner_factory=factory, **seams)


def _now() -> Any:
    import datetime as dt

    return dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def tree(project: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under the project (the `stamps` symlink and caches aside) → its SHA-256."""
    out = {}
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project).as_posix()
        if rel == "stamps" or rel.startswith("stamps/") or "__pycache__" in rel or rel.startswith(skip):
            continue
        if path.is_file() and not path.is_symlink():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def ups(fake: FakePulumi) -> list[list[str]]:
    return [c for c in fake.calls if c[0] == "up"]


# --- 1. deployed state is the truth ------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "stderr"), [
    ("stack select", "error: failed to load checkpoint: blob (code=Unknown): context deadline exceeded"),
    ("up", LOCKED),
    ("up", PROVIDER),
    ("up", CANCELLED),
    ("stack output", "error: could not read outputs"),  # after the update itself succeeded
    ("stack history", "error: could not read history"),
])
def test_a_failed_update_leaves_the_stack_file_as_before_and_the_rerun_deploys(
        project: Path, op: str, stderr: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()
    files = tree(project, skip=(".stamps/logs", ".stamps/locks"))
    broken = FakePulumi(failures={op: (255, stderr)})
    assert automation(project, broken, *FAILOVER) == 1
    assert "failed:" in capsys.readouterr().err
    assert (project / "Pulumi.prod.yaml").read_bytes() == before, "the file must not claim an undeployed change"
    assert tree(project, skip=(".stamps/logs", ".stamps/locks")) == files, "no temp copy, audit or record left"
    # The re-run the error message asks for does the work: one update, then the file records it.
    healthy = FakePulumi(history=broken.history)
    assert automation(project, healthy, *FAILOVER) == 0
    assert len(ups(healthy)) == 1
    assert FAILED_OVER in (project / "Pulumi.prod.yaml").read_text()
    audit = (project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in audit] == ["failed-over"]


def test_no_pulumi_cli_on_the_default_runner_changes_nothing(project: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-cli"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    before = (project / "Pulumi.prod.yaml").read_bytes()
    rc = main([*FAILOVER, "--project-dir", str(project)], metrics_factory=lambda: Health(eastus=False),
              sleep=lambda s: None)
    assert rc == 1
    assert (project / "Pulumi.prod.yaml").read_bytes() == before


CHILD = """
import sys, time
from pathlib import Path
import stamps.offline
from ops.cli import main
from ops.runner import AutomationRunner
from tests.conftest import cached_plan
from tests.test_ops_playbooks import Health
from tests.test_runner import FakePulumi

project, marker = Path(sys.argv[1]), Path(sys.argv[2])
stamps.offline.plan_stack = cached_plan

def on_up():
    marker.write_text("up started")
    time.sleep(120)  # the parent kills us here

fake = FakePulumi(on_up=on_up)
factory = lambda d, s, dry, kind: AutomationRunner(d, s, pulumi_command=fake, show_progress=False)
sys.exit(main(["failover", "--region", "eastus", "--force", "--accept-unprotected", "shared-smb",
               "--project-dir", str(project)], runner_factory=factory,
              metrics_factory=lambda: Health(eastus=False)))
"""


def test_sigkill_in_the_middle_of_up_leaves_the_file_as_before_and_the_rerun_deploys(
        project: Path, tmp_path: Path) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()
    files = tree(project, skip=(".stamps/logs", ".stamps/locks"))
    marker = tmp_path / "up-started"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(project), str(marker)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else "child exited"
        assert time.monotonic() < deadline, "the child never reached `pulumi up`"
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    assert tree(project, skip=(".stamps/logs", ".stamps/locks")) == files
    # The kernel dropped the stack lock with the process: the re-run is not refused, and it deploys.
    fake = FakePulumi()
    assert automation(project, fake, *FAILOVER) == 0
    assert len(ups(fake)) == 1 and FAILED_OVER in (project / "Pulumi.prod.yaml").read_text()


def test_killed_stack_file_writes_leave_no_temp_copies(project: Path) -> None:
    from ops.stackconfig import StackConfigFile

    leftover = project / ".Pulumi.prod.yaml.k1ll3d.tmp"  # what a SIGKILL inside write_atomic leaves
    leftover.write_text("half a file")
    cfg = StackConfigFile.for_stack(project, "prod")
    cfg.set("stamps:regions[name=eastus].servingFrom", "dr")
    cfg.save()
    assert not leftover.exists()
    assert sorted(p.name for p in project.glob(".Pulumi.prod.yaml.*")) == []


def test_already_done_is_judged_against_the_deployed_stack_and_says_so(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Deployed: the file as it is. Then someone edits the file (isolates retail) without deploying it.
    fake = FakePulumi()
    fake.deploy_file(project / "Pulumi.prod.yaml")
    text = (project / "Pulumi.prod.yaml").read_text()
    ops = Ops(project)
    assert ops("isolate", "retail", "--reason", "drill", "--dry-run") == 0  # reads only
    record = "isolation: {reason: hand edit, by: bob, at: '2026-11-27T11:00:00+00:00'}"
    edited = text.replace("    - name: retail\n", f"    - name: retail\n      {record}\n", 1)
    assert edited != text
    (project / "Pulumi.prod.yaml").write_text(edited)
    capsys.readouterr()
    assert automation(project, fake, "isolate", "retail", "--reason", "x") == 0
    out = capsys.readouterr().out
    assert "the deployed stack" in out and "does not" in out and "stamps:cells" in out
    assert len(ups(fake)) == 1, "the file was ahead of the deployed stack: the re-run deploys it"
    # Now both agree: nothing to change, and the verdict names its source.
    assert automation(project, fake, "isolate", "retail", "--reason", "x") == 0
    out = capsys.readouterr().out
    assert "nothing to change, the deployed stack (last update" in out
    assert len(ups(fake)) == 1
    # Offline there is no deployed stack: the verdict says it judged the file.
    assert ops("isolate", "retail", "--reason", "x") == 0
    assert "nothing to change, the stack file (offline runner" in capsys.readouterr().out


class Directory:
    """The tenant directory (Cosmos DB) as a dict; `fail` makes every write fail as an unreachable account does."""

    def __init__(self, fail: bool = False) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.fail = fail

    def get(self, tenant_id: str) -> dict[str, Any] | None:
        return self.records.get(tenant_id)

    def upsert(self, record: dict[str, Any]) -> None:
        from ops.tenant_directory import DirectoryError

        if self.fail:
            raise DirectoryError("tenant directory: HTTP 503 from the Cosmos DB account")
        self.records[record["tenantId"]] = record


ONBOARD = ("onboard", "acme", "--tier", "basic", "--email", "it@acme.example")


def test_onboard_after_a_failed_up_leaves_the_file_and_the_rerun_onboards(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()
    directory = Directory()
    broken = FakePulumi(failures={"up": (255, PROVIDER)})
    assert automation(project, broken, *ONBOARD, directory_factory=lambda: directory) == 1
    assert "failed:" in capsys.readouterr().err
    assert (project / "Pulumi.prod.yaml").read_bytes() == before, "the file must not claim acme is onboarded"
    assert directory.records == {} and not (project / ".stamps" / "audit").exists()
    # The re-run does not judge the work done: it deploys, then records the tenant.
    healthy = FakePulumi(history=broken.history)
    assert automation(project, healthy, *ONBOARD, directory_factory=lambda: directory) == 0
    assert len(ups(healthy)) == 1
    assert "id: acme" in (project / "Pulumi.prod.yaml").read_text()
    assert directory.records["acme"]["cellName"] == "retail"


def test_onboard_whose_directory_write_failed_after_the_update_records_it_on_the_rerun(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePulumi()
    assert automation(project, fake, *ONBOARD, directory_factory=lambda: Directory(fail=True)) == 1
    err = capsys.readouterr().err
    assert "HTTP 503" in err and "this run deployed" in err
    assert len(ups(fake)) == 1 and "id: acme" in (project / "Pulumi.prod.yaml").read_text()
    # Deployed and in the file, but not in the directory: the re-run writes the record, with no second update.
    directory = Directory()
    assert automation(project, fake, *ONBOARD, directory_factory=lambda: directory) == 0
    assert "no record of 'acme'" in capsys.readouterr().out
    assert directory.records["acme"]["cellName"] == "retail" and len(ups(fake)) == 1
    events = [json.loads(x)["event"] for x in (project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()]
    assert events == ["onboarded"]


def test_onboard_on_a_stack_without_a_tenant_directory_output_names_it_and_changes_nothing(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Once `KeyError: 'endpoint'`, after the update: the stand-in stack's outputs have no tenantDirectory."""
    before = (project / "Pulumi.prod.yaml").read_bytes()
    fake = FakePulumi()
    assert automation(project, fake, *ONBOARD) == 1
    err = capsys.readouterr().err
    assert "has no tenantDirectory output" in err and "deploy the stack first" in err
    assert "KeyError" not in err and "Traceback" not in err
    assert ups(fake) == [] and (project / "Pulumi.prod.yaml").read_bytes() == before


# --- 3. a dry run writes nothing ---------------------------------------------------------------------------


DRY_RUNS = [
    ("onboard", "acme", "--tier", "basic", "--email", "it@acme.example"),
    ("onboard", "megabank", "--tier", "enterprise", "--email", "x@megabank.example"),
    ("failover", "--region", "eastus", "--accept-unprotected", "shared-smb"),
    ("failback",),
    ("dr-drill", "--poll", "0.01"),
    ("isolate", "retail", "--reason", "x"),
    ("reinstate", "retail"),
    ("restore-data", "banking", "--to", "2026-11-26T03:00:00Z"),
    ("release", "1.5.0", "--cells", "retail", "--wait", "0"),
    ("release", "1.5.0", "--cells", "retail", "--rollback"),
    ("scale", "--simulate", "retail:cpu=95,sql=88"),
    ("incident", "classify", "--scope", "cells", "--cells", "2"),
    ("failover-storage", "--region", "eastus"),
    ("split-state",),
    ("migrate-unfreeze", "fintech-scale"),
    ("rollout",),
    ("migrate", "fintech-scale", "--to", "dedicated", "--source-url", "sqlite:////nonexistent/shared.db",
     "--target-url", "sqlite:////nonexistent/dedicated.db"),
]


NONE = re.compile(r"\bNone\b")  # Python's None in a verdict: a value that was never filled in


@pytest.mark.parametrize("argv", DRY_RUNS, ids=[" ".join(a[:2]) for a in DRY_RUNS])
def test_every_playbooks_dry_run_writes_nothing_and_prints_no_python_none(
        project: Path, argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    (project / ".stamps" / "audit").mkdir(parents=True)
    (project / ".stamps" / "audit" / "prod.jsonl").write_text('{"event": "earlier"}\n')
    (project / ".stamps" / "directory-prod.json").write_text("{}")
    before = tree(project)
    ops = Ops(project)
    rc = ops(*argv, "--dry-run", metrics_factory=lambda: Health(eastus=False, westus=True),
             http_get=lambda url: 200)
    assert rc == 0
    assert tree(project) == before
    assert not (project / ".stamps" / "logs").exists() and not (project / ".stamps" / "locks").exists()
    out, err = capsys.readouterr()
    assert out.strip() and not NONE.search(out + err), NONE.findall(out + err)


# --- 4. notifications never undo the record --------------------------------------------------------------


def test_a_bad_channel_setting_is_refused_before_anything_changes(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STAMPS_SLACK_WEBHOOK_URL", "http://hooks.example.com/services/T/B/secret-token")
    before = tree(project)
    fake = FakePulumi()
    rc = automation(project, fake, *FAILOVER, notifier_factory=None)
    err = capsys.readouterr().err
    assert rc == 2 and "STAMPS_SLACK_WEBHOOK_URL" in err and "https" in err
    assert "secret-token" not in err
    assert fake.calls == [] and tree(project, skip=(".stamps/logs",)) == \
        {k: v for k, v in before.items() if not k.startswith(".stamps/logs")}


class _Channel:
    def __init__(self, name: str, ok: bool) -> None:
        self.name, self.ok, self.sent = name, ok, []

    def send(self, incident: Any) -> DeliveryResult:
        self.sent.append(incident)
        if not self.ok:
            raise ConnectionError("statuspage.io: connection reset")
        return DeliveryResult(self.name, ok=True)

    def preview(self, incident: Any) -> DeliveryResult:
        return DeliveryResult(self.name, ok=True, dry_run=True)

    def close(self) -> None:
        pass


def test_a_failing_channel_after_the_change_is_reported_others_fire_audit_written_exit_5(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slack, statuspage = _Channel("slack", ok=True), _Channel("statuspage", ok=False)
    fake = FakePulumi()
    rc = automation(project, fake, *FAILOVER, notifier_factory=lambda: Notifier([statuspage, slack]))
    err = capsys.readouterr().err
    assert rc == 5, "the exit code says the change happened and a channel failed"
    assert "statuspage" in err and "deployed" in err
    assert len(slack.sent) == 1 and len(statuspage.sent) == 1
    assert len(ups(fake)) == 1 and FAILED_OVER in (project / "Pulumi.prod.yaml").read_text()
    audit = [json.loads(x) for x in (project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()]
    assert [a["event"] for a in audit] == ["failed-over"]


def test_channels_that_cannot_be_built_after_the_change_still_leave_the_audit_line(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    calls = iter([Notifier([])])  # preflight is skipped for injected factories; the second build breaks

    def factory() -> Notifier:
        try:
            return next(calls)
        except StopIteration:
            raise ValueError("Slack webhook URL must be an https URL") from None

    fake = FakePulumi()
    next(calls)  # the failover's notifier build is the one that fails
    assert automation(project, fake, *FAILOVER, notifier_factory=factory) == 5
    assert (project / ".stamps" / "audit" / "prod.jsonl").read_text().count("failed-over") == 1


# --- 6. stack names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prod", "acme/prod", "acme/stamps/prod"])
def test_bare_and_qualified_stack_names_use_the_bare_name_for_files_urns_and_naming(
        project: Path, name: str) -> None:
    fake = FakePulumi()
    assert automation(project, fake, *FAILOVER, "--stack", name) == 0
    assert fake.calls[0] == ["stack", "select", "--stack", name]
    up = ups(fake)[0]
    targets = [up[i + 1] for i, a in enumerate(up) if a == "--target"]
    assert targets and all(t.startswith("urn:pulumi:prod::stamps::") for t in targets)
    assert any(t.endswith("::cell-banking-wus-app") for t in targets), "names use the bare stack's suffix"
    assert (project / ".stamps" / "audit" / "prod.jsonl").is_file()
    assert FAILED_OVER in (project / "Pulumi.prod.yaml").read_text()


@pytest.mark.parametrize(("name", "message"), [
    ("staging", "--stack: no stack 'staging'"),
    ("a/b/c/prod", "--stack: 'a/b/c/prod' is not a stack name"),
    ("../prod", "--stack: '../prod' is not a stack name"),
])
def test_unknown_or_malformed_stack_exits_2_naming_stack(project: Path, name: str, message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert Ops(project)("isolate", "retail", "--reason", "x", "--stack", name) == 2
    assert message in capsys.readouterr().err


def _upserts(path: str, start: int, count: int) -> None:
    from ops.tenant_directory import LocalTenantDirectory

    directory = LocalTenantDirectory(Path(path))
    for i in range(start, start + count):
        directory.upsert({"tenantId": f"t{i}", "cellName": "retail"})


def test_concurrent_directory_updates_are_all_kept(tmp_path: Path) -> None:
    """The offline tenant directory once lost 112 of 300 concurrent updates (read-modify-write races)."""
    import multiprocessing
    import threading

    path = tmp_path / "directory-prod.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_upserts, args=(str(path), n * 75, 75)) for n in range(2)]
    threads = [threading.Thread(target=_upserts, args=(str(path), 150 + n * 75, 75)) for n in range(2)]
    for w in [*procs, *threads]:
        w.start()
    for w in [*procs, *threads]:
        w.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    assert len(json.loads(path.read_text())) == 300


PACK = '''
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


def no_scale_to_zero(args, report_violation):
    if args.resource_type == "azure-native:app:ContainerApp":
        scale = (args.props.get("template") or {}).get("scale") or {}
        if scale.get("minReplicas") == 0:
            report_violation("a CELL app may not scale to zero")


PolicyPack("test-pack", enforcement_level=EnforcementLevel.MANDATORY, policies=[
    ResourceValidationPolicy(name="no-scale-to-zero", description="CELL apps keep a replica",
                             validate=no_scale_to_zero),
])
'''


def test_a_mandatory_policy_violation_refuses_the_playbook_with_exit_3_and_changes_nothing(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Isolating a CELL scales its app to zero; a pack that forbids that refuses the update before `up`."""
    pack = project / "policy"
    pack.mkdir()
    (pack / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 0.0.1\n")
    (pack / "__main__.py").write_text(PACK)
    before = tree(project)
    fake = FakePulumi()
    assert automation(project, fake, "isolate", "retail", "--reason", "x") == 3
    err = capsys.readouterr().err
    assert "refused by policy" in err and "no-scale-to-zero" in err
    assert ups(fake) == [] and tree(project, skip=(".stamps/logs", ".stamps/locks")) == \
        {k: v for k, v in before.items()}
    # The dry run runs the pack too; --no-policy skips the offline check (the CLI still enforces its packs).
    assert Ops(project)("isolate", "retail", "--reason", "x", "--dry-run") == 3
    assert automation(project, fake, "isolate", "retail", "--reason", "x", "--no-policy") == 0
    assert len(ups(fake)) == 1 and "--policy-pack" not in ups(fake)[0]


def test_the_stamps_cli_takes_qualified_stack_names_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stamps.cli import main as stamps_main

    out = tmp_path / "plan.json"
    assert stamps_main(["plan", "--project-dir", str(ROOT), "--stack", "acme/stamps/prod", "--quiet",
                        "--out", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert plan["stack"] == "prod" and plan["resources"][0]["urn"].startswith("urn:pulumi:prod::stamps::")
    assert stamps_main(["capacity", "--project-dir", str(ROOT), "--stack", "acme/prod", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stack"] == "prod"


# --- 2. preflight, and rollback of what a run deployed ---------------------------------------------------------


def test_an_error_after_a_release_step_was_deployed_rolls_the_canary_back(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Once `release --health-url '…/{nope}/…'` crashed after the 0 % step and left the canary in the stack."""
    def probe(url: str) -> int:
        raise RuntimeError("the health probe crashed")

    ops = Ops(project)
    before = ops.text()
    assert ops("release", "1.5.0", "--cells", "retail", "--wait", "0", http_get=probe) == 1
    err = capsys.readouterr().err
    assert "rolled back after an error" in err and "this run deployed" in err
    assert ops.text() == before, "the canary step and its rollback leave the file as it was"
    events = [json.loads(x)["event"] for x in (project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()]
    assert events == ["step", "rolled-back"]
    # A template error is found before anything is deployed.
    assert ops("release", "1.5.0", "--cells", "retail", "--health-url", "https://x/{nope}/health") == 2
    assert "--health-url: unknown placeholder {nope}" in capsys.readouterr().err
    assert ops.text() == before


# --- file modes -----------------------------------------------------------------------------------------------


def test_files_with_operator_data_are_private_from_their_first_byte(project: Path) -> None:
    """Audit log, stack lock, run log and the directory stand-in name who ran what on which tenant: 0600 under
    the usual umask 022, and files an older version left 0640/0644 are tightened."""
    import stat

    from ops.stackconfig import lock_path

    state = project / ".stamps"
    audit, lock = state / "audit" / "prod.jsonl", lock_path(project, "prod")
    for path, mode in ((audit, 0o640), (lock, 0o644)):
        path.parent.mkdir(parents=True)
        path.write_text("")
        path.chmod(mode)
    old = os.umask(0o022)
    try:
        rc = main(["onboard", "acme", "--tier", "basic", "--email", "it@acme.example", "--runner", "offline",
                   "--project-dir", str(project)], notifier_factory=lambda: Notifier([]),
                  runner_factory=lambda d, s, dry, kind: OfflineRunner(d, s, plan_stack=cached_plan))
    finally:
        os.umask(old)
    assert rc == 0
    modes = {p.relative_to(state).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in state.rglob("*")
             if p.is_file()}
    assert {"audit/prod.jsonl", "locks/prod.lock", "directory-prod.json"} <= set(modes), modes
    assert any(k.startswith("logs/") for k in modes), modes
    assert {k: m for k, m in modes.items() if m != 0o600} == {}


# --- 7. the policy pack runs on every playbook update ---------------------------------------------------------


UPDATES = [
    ("onboard", "acme", "--tier", "basic", "--email", "it@acme.example"),
    ("isolate", "retail", "--reason", "drill"),
    ("reinstate", "retail"),
    ("release", "1.5.0", "--cells", "retail", "--wait", "0"),
    FAILOVER,
    ("failback", "--region", "eastus", "--force"),
]


def test_the_default_runner_passes_the_policy_pack_on_every_playbook_update(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`stamps-ops` as shipped (its default runner, the stand-in CLI in place of `pulumi`): every `pulumi up`
    a playbook runs carries the project's pack, so the CLI enforces it whatever the offline check saw."""
    from functools import partial

    from ops.cli import default_runner

    (project / "policy").mkdir()
    (project / "policy" / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 0.0.1\n")
    (project / "policy" / "__main__.py").write_text(PACK.replace("minReplicas\") == 0", "minReplicas\") == -1"))
    fake = FakePulumi()
    seams: dict[str, Any] = {"metrics_factory": lambda: Health(eastus=False), "now": _now, "sleep": lambda s: None,
                             "http_get": lambda url: 200, "notifier_factory": lambda: Notifier([]),
                             "directory_factory": Directory}
    for i, argv in enumerate(UPDATES):
        before = len(ups(fake))
        # The offline pre-check runs once (it is slow); --no-policy skips only that check, never the CLI's.
        extra = () if i == 0 else ("--no-policy",)
        rc = main([*argv, *extra, "--project-dir", str(project)],
                  runner_factory=partial(default_runner, pulumi_command=fake), **seams)
        assert rc == 0, argv
        assert len(ups(fake)) > before, f"{argv[0]} deployed nothing"
        out = capsys.readouterr().out
        assert not NONE.search(out), f"{argv[0]}: {NONE.findall(out)}"
    for up in ups(fake):
        packs = [up[i + 1] for i, a in enumerate(up) if a == "--policy-pack"]
        assert packs == [str(project / "policy")], up


# --- 10. output like the tools beside it --------------------------------------------------------------------


def test_a_failing_credential_chain_is_one_console_line_and_whole_in_the_log(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The real DefaultAzureCredential with nothing to find: no env credentials, no managed identity endpoint,
    no `az`/`azd`/`pwsh` on PATH (each fails at once: the chain takes a fraction of a second)."""
    import time

    for name in [n for n in os.environ if n.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("STAMPS_ARM_ENDPOINT", raising=False)
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no token cache, no az profile
    # IMDS at a closed local port: refused at once, whatever network this machine has.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")
    chain = ("EnvironmentCredential:", "ManagedIdentityCredential:", "AzureCliCredential:")

    def failover(*extra: str) -> int:
        # Health is read through the real MetricsReader (no metrics seam); the playbook goes on with "unknown".
        return main([*FAILOVER, "--runner", "offline", *extra, "--project-dir", str(project)],
                    runner_factory=lambda d, s, dry, kind: OfflineRunner(d, s, plan_stack=cached_plan),
                    notifier_factory=lambda: Notifier([]), sleep=lambda s: None)

    before = (project / "Pulumi.prod.yaml").read_bytes()
    started = time.monotonic()
    assert failover() == 0
    assert time.monotonic() - started < 120
    out, err = capsys.readouterr()
    said = [line for line in (out + err).splitlines() if "credential" in line.lower()]
    assert len(said) == 1, said
    assert "no Azure credential worked (DefaultAzureCredential tried" in said[0] and "az login" in said[0]
    assert not any(c in out + err for c in chain), "the chain itself stays off the console"
    [log] = (project / ".stamps" / "logs").glob("*failover*.log")
    assert all(c in log.read_text() for c in chain), "the run's log has every credential's error"
    # -v: the chain on the console too (the same failover again, from the file as it was).
    (project / "Pulumi.prod.yaml").write_bytes(before)
    assert failover("-v") == 0
    out, err = capsys.readouterr()
    assert all(c in err for c in chain), out + err


@pytest.mark.parametrize(("flag", "passed"), [
    ("-v", ["--debug"]),
    ("-vv", ["--debug", "--logflow", "--verbose", "9", "--logtostderr"]),
])
def test_verbose_passes_the_automation_apis_debug_flags_to_the_update(
        project: Path, flag: str, passed: list[str]) -> None:
    fake = FakePulumi()
    assert automation(project, fake, "isolate", "retail", "--reason", "x", flag) == 0
    [up] = ups(fake)
    assert all(a in up for a in passed), up
    if flag == "-v":
        assert "--logflow" not in up and "--logtostderr" not in up
