"""`stamps-ops rollout`: the canary CELL's stacks first, then waves, each followed by a health gate that reads
Azure (Alerts Management and Container Apps revision health, served by the fake ARM endpoint)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.arm import ArmReader
from ops.cli import main as ops_main
from ops.runner import ChangeSet, RunResult
from stamps.offline import Plan
from stamps.stacks.fleet import plan_fleet
from tests.conftest import ROOT
from tests.fake_arm import FakeArm, RecordingTransport, serving
from tests.test_azure_monitor import FAST

_PLANS: list[Plan] = []


def outputs_of() -> dict[str, dict[str, Any]]:
    if not _PLANS:
        _PLANS.extend(plan_fleet(ROOT, "prod"))
    return {p.stack: p.outputs for p in _PLANS}


class Stacks:
    """Unit stacks behind the Runner seam: `up` records the order, `outputs` are the offline plan's."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def factory(self, project_dir: Path, stack: str, dry_run: bool, kind: str) -> Any:
        stacks = self

        class Runner:
            def up(self, changes: Any = None, targets: Any = None) -> RunResult:
                stacks.order.append(stack)
                return RunResult("up", stack, ChangeSet(), {"update": 1}, [])

            def outputs(self) -> dict[str, Any]:
                return outputs_of().get(stack, {})

        return Runner()


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    sub = next(iter(outputs_of()["prod.cell.banking.eastus"]["cells"].values()))["appId"].split("/")[2]
    with serving(monkeypatch, subscription_id=sub) as fake:
        for plan_outputs in outputs_of().values():
            for entry in (plan_outputs.get("cells") or {}).values():
                healthy(fake, entry["appId"])
        fake.set_collection(f"/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts", [])
        yield fake


def healthy(arm: FakeArm, app_id: str, state: str = "Healthy") -> None:
    arm.set_collection(f"{app_id}/revisions", [{"name": "app--abc", "properties": {
        "active": True, "healthState": state, "runningState": "Running", "template": {"revisionSuffix": "abc"}}}])


def rollout(project: Path, arm: FakeArm, stacks: Stacks, *extra: str) -> int:
    def reader() -> ArmReader:
        return ArmReader(arm_endpoint=arm.base_url, retry=FAST,
                         transport=RecordingTransport(connection_verify=arm.ca_file))

    return ops_main(["rollout", "--project-dir", str(project), "--bake-minutes", "0", *extra],
                    runner_factory=stacks.factory, arm_factory=reader)


def cells_in(order: list[str]) -> list[str]:
    seen: list[str] = []
    for stack in order:
        cell = stack.split(".")[2]
        if cell not in seen:
            seen.append(cell)
    return seen


def test_canary_then_waves_every_cell_instance_once(project: Path, arm: FakeArm) -> None:
    stacks = Stacks()
    assert rollout(project, arm, stacks, "--canary", "retail", "--waves", "1,2") == 0
    assert cells_in(stacks.order) == ["retail", "banking", "healthcare", "shared-smb"]
    assert sorted(stacks.order) == sorted(s for s in outputs_of() if s.startswith("prod.cell."))
    # A CELL's standby after its primary (it is created from the primary's database).
    assert stacks.order.index("prod.cell.banking.westus") > stacks.order.index("prod.cell.banking.eastus")
    # The gate asked Azure about every instance: fired alerts in its resource group, and its revisions.
    sub = next(iter(outputs_of()["prod.cell.banking.eastus"]["cells"].values()))["appId"].split("/")[2]
    asked = arm.requests_to(f"/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts")
    groups = {r.query.get("targetResourceGroup") for r in asked}
    assert {r.query.get("monitorCondition") for r in asked} == {"Fired"}
    expected = {next(iter(outputs_of()[s]["cells"].values()))["appId"].split("/")[4]
                for s in stacks.order}
    assert groups == expected


def test_a_fired_alert_in_the_canary_stops_the_rollout(project: Path, arm: FakeArm,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    app_id = next(iter(outputs_of()["prod.cell.retail.eastus"]["cells"].values()))["appId"]
    sub, rg = app_id.split("/")[2], app_id.split("/")[4]

    def alerts(req: Any) -> Any:
        from tests.fake_arm import FakeResponse

        fired = [{"name": "ca-cpu-high-retail-eus", "properties": {"essentials": {
            "alertState": "New", "monitorCondition": "Fired",
            "alertRule": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/microsoft.insights/metricalerts/"
                         "ca-cpu-high-retail-eus"}}}]
        return FakeResponse(200, {"value": fired if req.query.get("targetResourceGroup") == rg else []})

    arm.add_route("GET", f"/subscriptions/{sub}/providers/Microsoft.AlertsManagement/alerts", alerts)
    stacks = Stacks()
    assert rollout(project, arm, stacks, "--canary", "retail") == 1
    assert cells_in(stacks.order) == ["retail"]
    err = capsys.readouterr()
    assert "ca-cpu-high-retail-eus" in err.out
    assert "3 CELLs not updated" in err.err


def test_an_unhealthy_revision_fails_the_gate_and_the_rerun_regates_before_going_on(
        project: Path, arm: FakeArm, capsys: pytest.CaptureFixture[str]) -> None:
    app_id = next(iter(outputs_of()["prod.cell.banking.eastus"]["cells"].values()))["appId"]
    healthy(arm, app_id, "Unhealthy")
    first = Stacks()
    assert rollout(project, arm, first, "--canary", "retail", "--waves", "1") == 1
    assert cells_in(first.order) == ["retail", "banking"]
    assert "Unhealthy" in capsys.readouterr().out
    healthy(arm, app_id)
    again = Stacks()
    assert rollout(project, arm, again, "--canary", "retail", "--waves", "1") == 0
    assert cells_in(again.order) == ["healthcare", "shared-smb"]


def test_dry_run_lists_the_waves_and_deploys_nothing(project: Path, arm: FakeArm,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    stacks = Stacks()
    assert rollout(project, arm, stacks, "--dry-run", "--waves", "2") == 0
    out = capsys.readouterr().out
    assert "wave 0 (canary): banking" in out and "wave 1 (2 CELLs): retail, healthcare" in out
    assert stacks.order == []


@pytest.mark.parametrize(("argv", "arg"), [(["--canary", "nope"], "--canary"), (["--waves", "0"], "--waves"),
                                           (["--waves", "x"], "--waves"), (["--parallel", "0"], "--parallel")])
def test_bad_arguments_name_themselves(project: Path, arm: FakeArm, argv: list[str], arg: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    stacks = Stacks()
    assert rollout(project, arm, stacks, *argv) == 2 and stacks.order == []
    assert arg in capsys.readouterr().err
