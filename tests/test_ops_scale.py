"""`stamps-ops scale`: the runbook's scaling triggers, driven through the CLI with the offline runner on a copy
of the project, Azure Monitor served by the local fake ARM through the real MetricsReader."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.azure_monitor import (
    CONTAINER_APP_CPU_PERCENT,
    CONTAINER_APP_MEMORY_PERCENT,
    CONTAINER_APP_REPLICAS,
    CONTAINER_APP_REQUESTS,
    SQL_DB_CPU_PERCENT,
    SQL_DB_DTU_CONSUMPTION_PERCENT,
    MetricsReader,
    RetrySettings,
)
from ops.cli import main
from ops.playbooks.scale import InstanceReading, decide, serving_instances
from ops.runner import OfflineRunner, RunResult
from ops.stackconfig import Change
from stamps.config.model import CellConfig, ScalingConfig
from stamps.environment import CellInstance
from tests.conftest import cached_plan
from tests.fake_arm import FakeArm, RecordingTransport, fake_arm_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
FAST = RetrySettings(total=3, backoff_factor=0.5, backoff_max=4.0, max_retry_after=30.0, timeout=30.0)
GRAIN = dt.timedelta(minutes=5)
T0 = dt.datetime(2030, 1, 1, 12, 2, 30, tzinfo=dt.UTC)  # not on a 5-minute boundary, like a real clock
LAST = T0.replace(minute=0, second=0)  # the newest 5-minute interval that began before T0
BANNER = "properties.lenses[0].parts[0].metadata.settings.content.settings.content"

# --------------------------------------------------------------------------- project, plans, runner



class RecordingRunner(OfflineRunner):
    def __init__(self, project_dir: Path, stack: str) -> None:
        super().__init__(project_dir, stack, plan_stack=cached_plan)
        self.ups: list[RunResult] = []
        self.previews: list[RunResult] = []

    def up(self, changes: Any = None, targets: Any = None) -> RunResult:
        result = super().up(changes, targets)
        self.ups.append(result)
        return result

    def preview(self, changes: Any = None, *, targets: Any = None) -> RunResult:
        result = super().preview(changes, targets=targets)
        self.previews.append(result)
        return result


@pytest.fixture
def runner(project: Path) -> RecordingRunner:
    return RecordingRunner(project, "prod")


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    return cached_plan(ROOT, "prod").outputs


@pytest.fixture
def arm(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    sub = str(outputs["trafficManagerProfiles"]["eastus"]).split("/")[2]
    for name in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_USERNAME",
                 "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "IMDS_ENDPOINT", "AZURE_TOKEN_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    with FakeArm(subscription_id=sub) as fake:
        for name, value in fake.managed_identity_env().items():
            monkeypatch.setenv(name, value)
        yield fake


Cli = Callable[..., int]


@pytest.fixture
def cli(project: Path, runner: RecordingRunner, arm: FakeArm) -> tuple[Cli, list[RecordingTransport]]:
    transports: list[RecordingTransport] = []

    def metrics() -> MetricsReader:
        transport = RecordingTransport(connection_verify=arm.ca_file)
        transports.append(transport)
        return MetricsReader(arm_endpoint=arm.base_url, subscription_id=arm.subscription_id, retry=FAST,
                             transport=transport)

    def run(*argv: str, now: dt.datetime = T0, **seams: Any) -> int:
        return main(["scale", *argv, "--project-dir", str(project), "--runner", "offline"],
                    runner_factory=lambda *_: runner, metrics_factory=metrics, now=lambda: now, **seams)

    return run, transports


# --------------------------------------------------------------------------- metric scenarios


def series(value: float, *, minutes: int = 60) -> list[float]:
    return [value] * (minutes // 5 + 1)


def set_cell(arm: FakeArm, outputs: dict[str, Any], key: str, *, cpu: float | list[float] = 30.0,
             memory: float = 30.0, requests: float = 1000.0, replicas: float = 2.0, sql: float = 20.0,
             end: dt.datetime = LAST) -> None:
    """One CELL instance's metrics: 5-minute points over the hour before `end` (a list sets CPU per point)."""
    ids = outputs["cells"][key]
    cpu_values = cpu if isinstance(cpu, list) else series(cpu)
    kw = {"grain": GRAIN, "end": end}
    arm.set_metric(ids["appId"], CONTAINER_APP_CPU_PERCENT, cpu_values, **kw)
    arm.set_metric(ids["appId"], CONTAINER_APP_MEMORY_PERCENT, series(memory), **kw)
    arm.set_metric(ids["appId"], CONTAINER_APP_REPLICAS, series(replicas), unit="Count", **kw)
    arm.set_metric(ids["appId"], CONTAINER_APP_REQUESTS, series(requests), unit="Count", **kw)
    arm.set_metric(ids["databaseId"], SQL_DB_CPU_PERCENT, series(sql), **kw)
    arm.set_metric(ids["databaseId"], SQL_DB_DTU_CONSUMPTION_PERCENT, series(sql), **kw)


def calm(arm: FakeArm, outputs: dict[str, Any], *, end: dt.datetime = LAST, value: float = 20.0) -> None:
    for key, ids in outputs["cells"].items():
        if ids["role"] == "primary":
            set_cell(arm, outputs, key, cpu=value, memory=value, requests=100.0, sql=value, end=end)


def changed(result: RunResult) -> dict[tuple[str, str], tuple[str, ...]]:
    return {(r.type, r.name): r.diffs for r in result.resources}


def banking(project: Path) -> dict[str, Any]:
    cells = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())["config"]["stamps:cells"]
    return next(c for c in cells if c["name"] == "banking")


def state(project: Path) -> dict[str, Any]:
    return json.loads((project / ".stamps" / "scale" / "prod.json").read_text())


# --------------------------------------------------------------------------- scale up, re-run, scale down


def test_high_cpu_scales_replicas_and_sql_up_then_a_rerun_changes_nothing_then_quiet_scales_down(
    cli: tuple[Cli, list[RecordingTransport]], runner: RecordingRunner, arm: FakeArm, project: Path,
    outputs: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = cli
    calm(arm, outputs)
    set_cell(arm, outputs, "banking-eus", cpu=92.0, sql=88.0)

    assert run("--once") == 0

    (up,) = runner.ups
    assert changed(up) == {
        # A new template is a new revision: its suffix changes with it (Azure refuses a re-used suffix).
        ("azure-native:app:ContainerApp", "cell-banking-eus-app"): ("template.revisionSuffix",
                                                                    "template.scale.maxReplicas",
                                                                    "template.scale.minReplicas"),
        ("azure-native:sql:Database", "cell-banking-eus-db"): ("sku.name",),
        # The geo-secondary follows the CELL's SKU (same service objective on both sides).
        ("azure-native:sql:Database", "cell-banking-wus-db"): ("sku.name",),
        # The CELL's own dashboards name the SKU in their banner text; nothing outside the CELL changes.
        ("azure-native:portal:Dashboard", "monitoring-dash-banking-eus"): (BANNER,),
        ("azure-native:portal:Dashboard", "monitoring-dash-banking-wus"): (BANNER,),
    }
    assert up.config_changes == [
        Change("stamps:cells[name=banking].replicas.min", 3, 5),
        Change("stamps:cells[name=banking].replicas.max", 10, 12),
        Change("stamps:cells[name=banking].sql.sku", "P2", "P4"),
    ]
    assert banking(project)["replicas"] == {"min": 5, "max": 12}
    assert "replicas: {min: 5, max: 12}" in (project / "Pulumi.prod.yaml").read_text()  # flow style kept
    rec = state(project)["cells"]["banking"]
    assert rec["baseline"] == {"replicas": {"min": 3, "max": 10}, "sqlSku": "P2"}
    assert rec["applied"] == {"replicas": {"min": 5, "max": 12}, "sqlSku": "P4"}
    assert rec["lastChange"] == "2030-01-01T12:02:30Z"
    out = capsys.readouterr().out
    assert "scale-up" in out and "banking-eus CPU 92% > 80%" in out and "SQL CPU 88% > 80%" in out
    audit = (project / ".stamps" / "audit" / "prod.jsonl").read_text().splitlines()
    assert json.loads(audit[-1])["playbook"] == "scale"

    # Same (pre-change) readings again: the new capacity has not shown yet, so nothing changes.
    text = (project / "Pulumi.prod.yaml").read_text()
    assert run("--once") == 0
    assert len(runner.ups) == 1 and (project / "Pulumi.prod.yaml").read_text() == text
    assert "settling after the change at 12:02" in capsys.readouterr().out

    # 20 minutes later, quiet for the whole window: still inside the quiet period after the change.
    t1 = T0 + dt.timedelta(minutes=20)
    calm(arm, outputs, end=t1.replace(minute=20, second=0))
    assert run("--once", now=t1) == 0
    assert len(runner.ups) == 1
    assert "under 30 min old" in capsys.readouterr().out

    # 40 minutes later, load dropped only 15 minutes ago: not quiet for the full 30 minutes yet.
    t2 = T0 + dt.timedelta(minutes=40)
    end2 = t2.replace(minute=40, second=0)
    calm(arm, outputs, end=end2)
    set_cell(arm, outputs, "banking-eus", cpu=[60.0] * 10 + [10.0] * 3, memory=10, sql=10, end=end2)
    assert run("--once", now=t2) == 0
    assert len(runner.ups) == 1
    assert "not quiet: banking-eus CPU 60% ≥ 40% at 12:15" in capsys.readouterr().out

    # 70 minutes later, quiet throughout: one step down, back to the recorded baseline (the floor).
    t3 = T0 + dt.timedelta(minutes=70)
    calm(arm, outputs, end=t3.replace(minute=10, hour=13, second=0), value=10.0)
    assert run("--once", now=t3) == 0
    assert len(runner.ups) == 2
    assert runner.ups[1].config_changes == [
        Change("stamps:cells[name=banking].replicas.min", 5, 3),
        Change("stamps:cells[name=banking].replicas.max", 12, 10),
        Change("stamps:cells[name=banking].sql.sku", "P4", "P2"),
    ]
    assert (project / "Pulumi.prod.yaml").read_text() == (ROOT / "Pulumi.prod.yaml").read_text()
    assert state(project)["cells"]["banking"]["lastAction"] == "scale-down"

    # Still quiet much later: at the baseline, never below it.
    t4 = T0 + dt.timedelta(hours=3)
    calm(arm, outputs, end=t4.replace(minute=0, second=0), value=5.0)
    assert run("--once", now=t4) == 0
    assert len(runner.ups) == 2
    assert "at the baseline 3-10 / P2" in capsys.readouterr().out

    # Someone edits the CELL by hand: their values become the new baseline and the record is dropped.
    stack_file = project / "Pulumi.prod.yaml"
    stack_file.write_text(stack_file.read_text().replace("replicas: {min: 3, max: 10}", "replicas: {min: 4, max: 10}"))
    assert run("--once", now=t4) == 0
    out = capsys.readouterr().out
    assert "CELL banking's replicas/SKU were changed outside this playbook" in out
    assert "banking: hold — quiet for 30 min; at the configured size" in out
    assert "banking" not in state(project)["cells"]


def test_quiet_cell_without_a_record_stays_at_its_configured_size(
    cli: tuple[Cli, list[RecordingTransport]], runner: RecordingRunner, arm: FakeArm, outputs: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = cli
    calm(arm, outputs, value=2.0)
    assert run() == 0
    assert runner.ups == []
    assert "at the configured size" in capsys.readouterr().out


# --------------------------------------------------------------------------- Azure failures


def test_throttling_and_5xx_are_retried(
    cli: tuple[Cli, list[RecordingTransport]], runner: RecordingRunner, arm: FakeArm, outputs: dict[str, Any],
) -> None:
    run, transports = cli
    calm(arm, outputs)
    arm.fail_next(429, times=1, retry_after=2, path_contains="ca-retail-eus")
    arm.fail_next(503, times=2, path_contains="sqldb-healthcare")

    assert run() == 0

    retail = [r for r in arm.metric_requests() if "ca-retail-eus" in r.path]
    health_db = [r for r in arm.metric_requests() if "sqldb-healthcare" in r.path]
    assert len(retail) == 2 + 1 and len(health_db) == 1 + 2  # two reads + one retry; one read + two retries
    (transport,) = transports
    assert 2.0 in transport.sleeps  # the server's Retry-After was honoured
    assert runner.ups == []


def test_unreadable_cell_is_skipped_others_still_scale_and_exit_is_1(
    cli: tuple[Cli, list[RecordingTransport]], runner: RecordingRunner, arm: FakeArm, outputs: dict[str, Any],
    project: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = cli
    calm(arm, outputs)
    set_cell(arm, outputs, "shared-smb-eus", requests=60_000.0, replicas=2.0)  # 6000/replica/min
    arm.fail_next(500, times=50, path_contains="ca-healthcare-eus")

    assert run() == 1

    (up,) = runner.ups
    assert set(changed(up)) == {("azure-native:app:ContainerApp", "cell-shared-smb-eus-app")}
    out = capsys.readouterr().out
    assert "healthcare" in out and "HTTP 500" in out and "after 3 retries" in out
    assert "requests/replica/min 6000 > 5000" in out
    assert arm.access_token not in out
    assert "healthcare" not in state(project)["cells"]


def test_dry_run_previews_and_records_nothing(
    cli: tuple[Cli, list[RecordingTransport]], runner: RecordingRunner, arm: FakeArm, outputs: dict[str, Any],
    project: Path,
) -> None:
    run, _ = cli
    calm(arm, outputs)
    set_cell(arm, outputs, "banking-eus", memory=91.0, sql=88.0)  # the same change as above: plan cached

    assert run("--dry-run") == 0

    assert runner.ups == []
    (preview,) = runner.previews
    assert preview.operation == "offline-preview"
    assert {("azure-native:app:ContainerApp", "cell-banking-eus-app"),
            ("azure-native:sql:Database", "cell-banking-eus-db")} <= set(changed(preview))
    assert (project / "Pulumi.prod.yaml").read_text() == (ROOT / "Pulumi.prod.yaml").read_text()
    assert not (project / ".stamps" / "scale").exists()


def test_watch_loops_with_the_injected_sleep(
    cli: tuple[Cli, list[RecordingTransport]], arm: FakeArm, outputs: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, transports = cli
    calm(arm, outputs)
    sleeps: list[float] = []

    assert run("--watch", "--interval", "45", "--max-iterations", "3", "--cell", "retail", sleep=sleeps.append) == 0

    assert sleeps == [45.0, 45.0]
    assert len(transports) == 3
    assert {r.path.split("/")[-4] for r in arm.metric_requests()} == {"ca-retail-eus", "sqldb-retail"}
    assert "scale pass 3/3" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--cell", "nope"], "--cell: no CELL named 'nope'"),
    (["--interval", "5"], "--interval/--max-iterations: only with --watch"),
    (["--watch", "--interval", "0"], "--interval: must be a positive number"),
    (["--watch", "--max-iterations", "0"], "--max-iterations: must be at least 1"),
])
def test_bad_arguments_exit_2_naming_the_argument(
    cli: tuple[Cli, list[RecordingTransport]], argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = cli
    assert run(*argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- decision rules (no plan needed)


def _inst(cell: CellConfig, role: str = "primary", region: str = "eastus") -> CellInstance:
    return CellInstance(cell=cell, region=region, role=role, key=f"{cell.name}-{region[:4]}",  # type: ignore[arg-type]
                        replicas=cell.replicas, tenants=(), isolated=False, alerts_enabled=True)


def _reading(cell: CellConfig, **latest: float) -> InstanceReading:
    r = InstanceReading(_inst(cell))
    r.points = {k: [(LAST, v)] for k, v in latest.items()}
    return r


def test_sql_upgrade_across_editions_leads_with_the_geo_secondary() -> None:
    cell = CellConfig.model_validate({"name": "retail", "region": "eastus", "model": "shared",
                                      "sql": {"sku": "S6"}, "replicas": {"min": 2, "max": 10}})
    d = decide(cell, [_reading(cell, cpu=10, sqlCpu=95, sqlDtu=95)], ScalingConfig(), None, True, T0)
    assert (d.action, d.sku_to) == ("scale-up", "P1")
    assert "crosses editions (Standard → Premium)" in d.reason and "geo-secondary is upgraded first" in d.reason
    d = decide(cell, [_reading(cell, cpu=10, sqlCpu=95)], ScalingConfig(), None, False, T0)
    assert (d.action, d.sku_to) == ("scale-up", "P1")  # no geo-secondary: nothing to order


def test_replicas_are_capped_and_skus_off_the_ladder_stay() -> None:
    cell = CellConfig.model_validate({"name": "big", "region": "eastus", "model": "shared",
                                      "sql": {"sku": "GP_Gen5_2"}, "replicas": {"min": 300, "max": 300}})
    d = decide(cell, [_reading(cell, cpu=99, sqlCpu=99)], ScalingConfig(), None, False, T0)
    assert d.action == "hold" and d.replicas_to == (300, 300) and d.sku_to == "GP_Gen5_2"
    assert "already at the cap (300)" in d.reason and "not on scaling.sqlLadder" in d.reason


def test_isolated_cell_is_never_scaled_and_a_standby_counts_only_while_serving() -> None:
    cell = CellConfig.model_validate({"name": "quarantined", "region": "eastus", "model": "shared",
                                      "isolation": {"reason": "breach", "by": "sre", "at": "2030-01-01T00:00:00Z"}})
    d = decide(cell, [], ScalingConfig(), None, False, T0)
    assert d.action == "skip" and "isolated" in d.reason

    from ops.playbooks.base import Context

    ctx = Context(project_dir=ROOT, stack="prod", dry_run=True, runner=None)  # type: ignore[arg-type]
    env = ctx.environment()
    assert [i.key for i in serving_instances(env, env.cells[0])] == ["banking-eus"]
    failed_over = ctx.config_file()
    failed_over.set("stamps:regions[name=eastus].servingFrom", "dr")
    env = ctx.environment(failed_over)
    assert [i.key for i in serving_instances(env, env.cells[0])] == ["banking-wus"]
    assert [i.key for i in serving_instances(env, env.cells[3])] == ["shared-smb-eus"]  # no standby to take over
