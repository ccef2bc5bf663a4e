"""Playbooks through the offline runner on a copy of the project: each one's plan diff, re-runs, refusals."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.azure_monitor import TM_ENDPOINT_STATE, MetricsReader
from ops.cli import main
from ops.notify import Notifier, PagerDutyEvents, Secret, SlackWebhook
from ops.runner import OfflineRunner
from ops.stackconfig import stack_lock
from tests.conftest import cached_plan
from tests.fake_arm import FakeArm, fake_arm_fixture  # noqa: F401
from tests.test_notify import Receiver, receiver  # noqa: F401

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


class Ops:
    """Runs `stamps-ops` against the project copy; remembers the last runner to read its diff."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.runners: list[OfflineRunner] = []
        self.seams: dict[str, Any] = {"now": lambda: NOW, "sleep": lambda s: None}

    def factory(self, project_dir: Path, stack: str, dry_run: bool, kind: str) -> OfflineRunner:
        runner = OfflineRunner(project_dir, stack, plan_stack=cached_plan)
        self.runners.append(runner)
        return runner

    def __call__(self, *argv: str, **seams: Any) -> int:
        args = [*argv, "--project-dir", str(self.project), "--runner", "offline", "--actor", "sre-alice"]
        return main(args, runner_factory=self.factory, **{**self.seams, **seams})

    @property
    def stack(self) -> dict[str, Any]:
        return yaml.safe_load((self.project / "Pulumi.prod.yaml").read_text())["config"]

    def text(self) -> str:
        return (self.project / "Pulumi.prod.yaml").read_text()


@pytest.fixture
def ops(project: Path) -> Ops:
    return Ops(project)


def diff_of(ops: Ops, *argv: str, **seams: Any) -> set[tuple[str, str]]:
    """Run a playbook and return the (op, name) pairs of resources its stack update changed."""
    captured: list[Any] = []

    def factory(project_dir: Path, stack: str, dry_run: bool, kind: str) -> OfflineRunner:
        runner = ops.factory(project_dir, stack, dry_run, kind)
        original = runner.up if not dry_run else runner.preview

        def record(*a: Any, **k: Any) -> Any:
            result = original(*a, **k)
            captured.append(result)
            return result

        if dry_run:
            runner.preview = record  # type: ignore[method-assign]
        else:
            runner.up = record  # type: ignore[method-assign]
        return runner

    args = [*argv, "--project-dir", str(ops.project), "--runner", "offline", "--actor", "sre-alice"]
    rc = main(args, runner_factory=factory, **{**ops.seams, **seams})
    assert rc == 0, f"{argv} exited {rc}"
    return {(r.op, r.name) for result in captured for r in result.resources}


class Health:
    """Traffic Manager endpoint health as the failover playbook reads it."""

    def __init__(self, **regions: bool | None) -> None:
        self.regions = regions

    def endpoint_health(self, profile_id: str, endpoint: str) -> bool | None:
        # The health check reads the failing region's own profile: eastus's endpoints live in eastus's profile.
        assert profile_id.endswith("/trafficManagerProfiles/tm-stamps-prod-eus")
        return self.regions.get(endpoint.removeprefix("endpoint-"))


def serving(ops: Ops, region: str = "eastus") -> str:
    return next(r for r in ops.stack["stamps:regions"] if r["name"] == region).get("servingFrom", "primary")


UNPROTECTED = ("--accept-unprotected", "shared-smb")


# --- onboarding ---------------------------------------------------------------------------------------

def test_onboard_shared_tenant_adds_two_resources_and_reruns_clean(ops: Ops) -> None:
    changes = diff_of(ops, "onboard", "acme", "--tier", "basic", "--email", "it@acme.example")
    creates = {name for op, name in changes if op == "create"}
    assert len(creates) == 2 and all("acme" in n for n in creates), changes
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == "acme")
    # Least-loaded shared CELL with room in eastus, no compliance needs: retail (0 tenants) before others.
    assert tenant == {"id": "acme", "tier": "basic", "cell": "retail", "email": "it@acme.example"}
    directory = json.loads((ops.project / ".stamps" / "directory-prod.json").read_text())
    assert directory["acme"]["cellName"] == "retail" and directory["acme"]["cellType"] == "shared"
    before = ops.text()
    assert diff_of(ops, "onboard", "acme", "--tier", "basic", "--email", "it@acme.example") == set()
    assert ops.text() == before


def test_onboard_respects_compliance(ops: Ops) -> None:
    assert ops("onboard", "clinic", "--tier", "premium", "--email", "a@clinic.example",
               "--compliance", "hipaa") == 0
    assert next(t for t in ops.stack["stamps:tenants"] if t["id"] == "clinic")["cell"] == "healthcare"


def test_onboard_enterprise_gets_a_dedicated_cell(ops: Ops) -> None:
    changes = diff_of(ops, "onboard", "megabank", "--tier", "enterprise", "--email", "x@megabank.example")
    cell = next(c for c in ops.stack["stamps:cells"] if c["name"] == "megabank")
    assert cell["model"] == "dedicated" and cell["standby"]["region"] == "westus"
    assert cell["slot"] == 4, "a new CELL is written with the next free subnet slot, its own for life"
    assert ("create", "cell-megabank-eus-app") in changes and ("create", "cell-megabank-wus-app") in changes


def test_onboard_bad_input_names_the_argument(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    assert ops("onboard", "Bad_Id", "--tier", "basic", "--email", "a@b.example") == 2
    assert "TENANT" in capsys.readouterr().err
    assert ops("onboard", "newco", "--tier", "gold", "--email", "a@b.example") == 2
    assert "--tier: unknown tier 'gold'; valid: basic, enterprise, premium" in capsys.readouterr().err
    assert ops("onboard", "newco", "--tier", "basic", "--email", "a@b.example", "--cell", "nope") == 2
    assert "--cell: no CELL named 'nope'" in capsys.readouterr().err
    assert ops.text() == before


# --- failover -------------------------------------------------------------------------------------------

def test_failover_refuses_a_healthy_primary_without_force(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    rc = ops("failover", "--region", "eastus", *UNPROTECTED, metrics_factory=lambda: Health(eastus=True, westus=True))
    assert rc == 4
    assert "eastus is healthy" in capsys.readouterr().err
    assert ops.text() == before


def test_failover_refuses_to_strand_cells_without_a_standby(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    assert ops("failover", "--region", "eastus", metrics_factory=lambda: Health(eastus=False)) == 4
    err = capsys.readouterr().err
    assert "CELLs without a standby: shared-smb" in err and "--accept-unprotected shared-smb" in err
    assert ops("failover", "--region", "eastus", "--accept-unprotected", "nope",
               metrics_factory=lambda: Health(eastus=False)) == 2
    assert "--accept-unprotected: no CELL named nope" in capsys.readouterr().err
    assert ops.text() == before


def test_failover_changes_only_its_region_and_notifies(ops: Ops, receiver: Receiver) -> None:  # noqa: F811
    notifier = lambda: Notifier([  # noqa: E731
        SlackWebhook(Secret(receiver.base_url + "/services/T1/B1/xyz"), channel="#operations"),
        PagerDutyEvents(Secret("routing-key-123"), events_url=receiver.base_url + "/v2/enqueue"),
    ])
    changes = diff_of(ops, "failover", "--region", "eastus", *UNPROTECTED,
                      metrics_factory=lambda: Health(eastus=False), notifier_factory=notifier)
    # eastus's Traffic Manager profile (priorities + TTL, one PUT) and its three standbys scaled up.
    assert {n for _, n in changes} == {
        "routing-tm-eastus", "cell-banking-wus-app", "cell-retail-wus-app", "cell-healthcare-wus-app"}
    assert serving(ops) == "dr"
    slack = receiver.on("/services/")[0].json()
    assert "westus" in slack["text"] and slack["channel"] == "#operations"
    page = receiver.on("/v2/enqueue")[0].json()
    assert page["event_action"] == "trigger" and page["payload"]["severity"] == "critical"
    assert page["dedup_key"] == "stamps-prod-dr-eastus"
    # A re-run is a no-op; failback reverses exactly those resources and resolves the page.
    assert diff_of(ops, "failover", "--region", "eastus", metrics_factory=lambda: Health(eastus=False)) == set()
    back = diff_of(ops, "failback", "--region", "eastus", metrics_factory=lambda: Health(eastus=True),
                   notifier_factory=notifier)
    assert {n for _, n in back} == {n for _, n in changes}
    assert receiver.on("/v2/enqueue")[-1].json()["event_action"] == "resolve"
    assert serving(ops) == "primary"


def test_failover_reads_health_through_azure_monitor(ops: Ops, fake_arm: FakeArm) -> None:
    profile = ("/subscriptions/00000000-0000-4000-8000-00000000c0de/resourceGroups/rg-stamps-prod-global/"
               "providers/Microsoft.Network/trafficManagerProfiles/tm-stamps-prod-eus")
    eastus = {"EndpointName": "endpoint-eastus"}
    fake_arm.set_metric(profile, TM_ENDPOINT_STATE, [1, 1], unit="Count", dimensions=eastus)
    reader = lambda: MetricsReader(arm_endpoint=fake_arm.base_url, connection_verify=fake_arm.ca_file)  # noqa: E731
    assert ops("failover", "--region", "eastus", *UNPROTECTED, metrics_factory=reader) == 4
    sent = fake_arm.metric_requests()
    assert sent and sent[0].query["metricnames"] == TM_ENDPOINT_STATE
    assert sent[0].path.lower().endswith("tm-stamps-prod-eus/providers/microsoft.insights/metrics")
    fake_arm.clear_metrics()
    fake_arm.set_metric(profile, TM_ENDPOINT_STATE, [1, 0], unit="Count", dimensions=eastus)
    assert ops("failover", "--region", "eastus", *UNPROTECTED, metrics_factory=reader) == 0
    assert serving(ops) == "dr"


def test_failover_bad_region_and_forced(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops("failover", "--region", "westus", metrics_factory=lambda: Health()) == 2
    assert "--region: 'westus' is not a primary region; valid: eastus" in capsys.readouterr().err
    assert ops("failover", "--region", "eastus", "--force", *UNPROTECTED,
               metrics_factory=lambda: Health(eastus=True)) == 0


def test_dry_run_changes_nothing(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    changes = diff_of(ops, "failover", "--region", "eastus", "--dry-run", *UNPROTECTED,
                      metrics_factory=lambda: Health(eastus=False))
    assert len(changes) == 4
    assert ops.text() == before
    assert not (ops.project / ".stamps" / "audit").exists()


def test_dr_drill_disables_verifies_and_reenables(ops: Ops) -> None:
    reads = iter([Health(westus=True, eastus=True), Health(westus=True, eastus=False)])
    before = ops.text()
    changes = diff_of(ops, "dr-drill", "--region", "eastus", "--poll", "0.01", metrics_factory=lambda: next(reads))
    assert ("update", "routing-tm-eastus") in changes
    assert ops.text() == before, "a drill leaves the stack file exactly as it found it"
    log = (ops.project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in log] == ["primary-disabled", "primary-enabled"]


def test_dr_drill_failure_still_reenables(ops: Ops) -> None:
    before = ops.text()
    rc = ops("dr-drill", "--verify-timeout", "0.01", "--poll", "0.01", metrics_factory=lambda: Health(westus=False))
    assert rc == 1
    assert ops.text() == before


# --- isolation, restore ------------------------------------------------------------------------------------

def test_isolate_and_reinstate(ops: Ops) -> None:
    changes = diff_of(ops, "isolate", "retail", "--reason", "suspected credential leak")
    names = {n for _, n in changes}
    assert {"cell-retail-eus-app", "region-eastus-agw"} <= names
    assert any(n.startswith("monitoring-cell-retail-eus") for n in names), "alerts are muted"
    assert not any("banking" in n or "healthcare" in n for n in names)
    record = next(c for c in ops.stack["stamps:cells"] if c["name"] == "retail")["isolation"]
    assert record == {"reason": "suspected credential leak", "by": "sre-alice", "at": "2026-11-27T12:00:00+00:00"}
    assert diff_of(ops, "isolate", "retail", "--reason", "again") == set()
    back = diff_of(ops, "reinstate", "retail")
    assert {n for _, n in back} == names
    assert "isolation" not in next(c for c in ops.stack["stamps:cells"] if c["name"] == "retail")


def test_unknown_cell_is_named(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    assert ops("isolate", "retial", "--reason", "x") == 2
    assert "CELL: no CELL named 'retial'; known CELLs: banking, healthcare, retail, shared-smb" in \
        capsys.readouterr().err


def test_restore_data_creates_a_new_database(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    # Blobs and the directory are Azure operations (tests/test_restore_data.py); the database is a stack update.
    changes = diff_of(ops, "restore-data", "banking", "--to", "2026-11-26T03:00:00Z", "--what", "sql")
    assert changes == {("create", "cell-banking-eus-restore-r202611260300")}
    assert diff_of(ops, "restore-data", "banking", "--to", "2026-11-26T03:00:00Z", "--what", "sql") == set()
    assert ops("restore-data", "banking", "--to", "2027-01-01T00:00:00Z") == 2
    assert "in the future" in capsys.readouterr().err
    assert ops("restore-data", "banking", "--to", "2026-01-01T00:00:00Z") == 2
    assert "35-day" in capsys.readouterr().err


def test_restore_data_names_the_blob_and_directory_restores(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    # Blob point-in-time restore and a Cosmos DB continuous-backup restore are ARM operations; a dry run prints
    # each with the stack's real names and changes nothing.
    assert ops("restore-data", "banking", "--to", "2026-11-26T03:00:00Z", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "/resourceGroups/rg-stamps-prod-cell-banking-eus/providers/Microsoft.Storage/storageAccounts/" \
           "stbankingeusa57dd/restoreBlobRanges" in out
    assert "/resourceGroups/rg-stamps-prod-global/providers/Microsoft.DocumentDB/databaseAccounts/" \
           "cosmos-stamps-prod-a57dd-r202611" in out
    assert "restores" not in str(ops.stack["stamps:cells"][0])


def test_restore_data_refuses_a_time_outside_a_window_before_changing_anything(
        ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    # Ten days back: inside SQL's 35 days, outside the blobs' 7-day restore policy.
    assert ops("restore-data", "banking", "--to", "2026-11-17T12:00:00Z") == 2
    err = capsys.readouterr().err
    assert "--to: 2026-11-17T12:00:00Z is older than the 7-day blobs restore window" in err
    assert "--what sql,directory" in err and ops.text() == before
    assert ops("restore-data", "banking", "--to", "2026-11-26T03:00:00Z", "--what", "tables") == 2
    assert "--what: 'tables'" in capsys.readouterr().err
    assert diff_of(ops, "restore-data", "banking", "--to", "2026-11-17T12:00:00Z", "--what", "sql") == \
        {("create", "cell-banking-eus-restore-r202611171200")}


# --- release -------------------------------------------------------------------------------------------------

def _statuses(codes: dict[str, list[int]]) -> Callable[[str], int]:
    def get(url: str) -> int:
        queue = next(v for k, v in codes.items() if k in url)
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return get


def test_release_shifts_traffic_in_steps(ops: Ops, receiver: Receiver) -> None:  # noqa: F811
    receiver.script("/retail/health", 200, times=10)
    url = receiver.base_url + "/{cell}/health"
    changes = diff_of(ops, "release", "1.5.0", "--cells", "retail", "--health-url", url, "--wait", "0")
    assert {n for _, n in changes} == {"cell-retail-eus-app", "cell-retail-wus-app"}
    cell = next(c for c in ops.stack["stamps:cells"] if c["name"] == "retail")
    assert cell["version"] == "1.5.0" and "canary" not in cell
    steps = [json.loads(x)["weight"] for x in
             (ops.project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()]
    assert steps == [0, 10, 50, 100]
    assert len(receiver.on("/retail/health")) == 3  # gate at 0 %, checks at 10 % and 50 %
    assert diff_of(ops, "release", "1.5.0", "--cells", "retail") == set()


def test_release_rolls_back_on_a_failed_check(ops: Ops) -> None:
    rc = ops("release", "1.5.0", "--cells", "retail", "--wait", "0",
             http_get=_statuses({"retail": [200, 503]}))
    assert rc == 1
    cell = next(c for c in ops.stack["stamps:cells"] if c["name"] == "retail")
    assert "canary" not in cell and cell.get("version", "1.0.0") == "1.0.0"


# --- concurrency -----------------------------------------------------------------------------------------------

def test_concurrent_playbook_is_refused(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    with stack_lock(ops.project, "prod", holder="failover"):
        assert ops("isolate", "retail", "--reason", "x") == 4
    err = capsys.readouterr().err
    assert "failover" in err
    assert ops.text() == before


def test_scale_what_if_shows_its_change_set_without_azure(ops: Ops, capsys: pytest.CaptureFixture[str]) -> None:
    before = ops.text()
    changes = diff_of(ops, "scale", "--dry-run", "--simulate", "retail:cpu=95,sql=88")
    assert {("update", "cell-retail-eus-app"), ("update", "cell-retail-eus-db")} <= changes
    assert not any("banking" in n or "shared-smb" in n for _, n in changes)
    assert ops.text() == before
    assert ops("scale", "--simulate", "retail:cpu=95") == 2
    assert "only go with --dry-run" in capsys.readouterr().err
    assert ops("scale", "--dry-run", "--simulate", "retail:heat=3") == 2
    assert "unknown metric 'heat'" in capsys.readouterr().err


def test_cross_edition_sql_upgrade_leads_with_the_geo_secondary(ops: Ops) -> None:
    text = ops.text().replace("sql: {sku: S3}\n      standby: {region: westus, replicas: {min: 1, max: 10}}\n"
                              "    - name: healthcare", "sql: {sku: S6}\n      standby: {region: westus, "
                              "replicas: {min: 1, max: 10}}\n    - name: healthcare", 1)
    assert "sku: S6" in text
    (ops.project / "Pulumi.prod.yaml").write_text(text)
    previews: list[set[str]] = []

    def factory(project_dir: Path, stack: str, dry_run: bool, kind: str) -> OfflineRunner:
        runner = ops.factory(project_dir, stack, dry_run, kind)
        preview = runner.preview

        def record(*a: Any, **k: Any) -> Any:
            result = preview(*a, **k)
            previews.append({r.name for r in result.resources if r.type == "azure-native:sql:Database"})
            return result

        runner.preview = record  # type: ignore[method-assign]
        return runner

    args = ["scale", "--dry-run", "--simulate", "retail:sql=95", "--project-dir", str(ops.project),
            "--runner", "offline"]
    assert main(args, runner_factory=factory, **ops.seams) == 0
    # First update: only the standby's database (S6 → P1); then the primary follows.
    assert previews[0] == {"cell-retail-wus-db"}
    assert "cell-retail-eus-db" in previews[1]


def test_failover_through_the_automation_api_targets_only_its_resources(ops: Ops) -> None:
    """The real runner seam, with a stand-in for the `pulumi` command: the argv a CLI would receive."""
    from ops.runner import AutomationRunner
    from tests.test_runner import FakePulumi

    fake = FakePulumi()

    def factory(project_dir: Path, stack: str, dry_run: bool, kind: str) -> AutomationRunner:
        return AutomationRunner(project_dir, stack, pulumi_command=fake, show_progress=False)

    args = ["failover", "--region", "eastus", "--force", *UNPROTECTED, "--project-dir", str(ops.project),
            "--actor", "sre-alice"]
    assert main(args, runner_factory=factory, **ops.seams, metrics_factory=lambda: Health()) == 0
    up = next(call for call in fake.calls if call[0] == "up")
    targets = [up[i + 1] for i, arg in enumerate(up) if arg == "--target"]
    names = sorted(t.rsplit("::", 1)[1] for t in targets)
    assert names == sorted(["routing-tm-eastus", "cell-banking-wus-app", "cell-retail-wus-app",
                            "cell-healthcare-wus-app"])
    assert all(t.startswith("urn:pulumi:prod::stamps::") for t in targets)
    assert "--target-dependents" in up and "--yes" in up
    assert serving(ops) == "dr", "the CLI deploys the saved, reviewed stack file"
    assert not any(call[:2] == ["config", "set-all"] for call in fake.calls)
