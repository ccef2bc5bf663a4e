"""`stamps-ops incident classify|respond`: the runbook's severity table and the global-outage playbook, with
Traffic Manager / Front Door served by the local fake ARM and notifications sent to a local HTTP receiver."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import stamps.offline
from ops.arm import ArmReader
from ops.azure_monitor import RetrySettings
from ops.cli import default_runner, main
from ops.notify import Notifier, PagerDutyEvents, Secret, SlackWebhook, StatuspageIncident
from ops.playbooks.base import Context
from ops.playbooks.incident import Assessment, assess, step_mitigation
from ops.runner import AutomationRunner, OfflineRunner, RunResult
from stamps.environment import Environment
from tests.conftest import cached_plan
from tests.fake_arm import FakeArm, RecordingTransport, serving
from tests.test_fleet_deploy import Fleet
from tests.test_notify import Receiver, receiver  # noqa: F401  (the shared local HTTP receiver fixture)
from tests.test_runner import FakePulumi
from tests.test_unit_playbooks import units  # noqa: F401  (a project copy whose fleet is deployed as unit stacks)

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
INCIDENT = "inc-20300101T120000Z"
FAST = RetrySettings(total=2, backoff_factor=0.1, backoff_max=1.0, max_retry_after=5.0, timeout=30.0)
SLACK_PATH = "/services/T0STAMPS/B0OPS/incidentSlackSecret0123"
ROUTING = "urn:pulumi:prod::stamps::stamps:global:TrafficRouting$azure-native:"
TM_URN = ROUTING + "trafficmanager:Profile::routing-tm-eastus"
AFD_URN = ROUTING + "cdn:AFDEndpoint::routing-afd-endpoint"
ROUTING_KEY = "pdIncidentRoutingKey-0123456789-SECRET"
STATUSPAGE_KEY = "statuspageIncidentKey-987654321-SECRET"



class RecordingRunner(OfflineRunner):
    def __init__(self, project_dir: Path) -> None:
        super().__init__(project_dir, "prod", plan_stack=cached_plan)
        self.calls: list[str] = []

    def refresh(self, targets: Any = None) -> RunResult:
        self.calls.append("refresh")
        self.refresh_targets = targets
        return super().refresh(targets)

    def up(self, changes: Any = None, targets: Any = None) -> RunResult:
        self.calls.append("up")
        self.up_targets = targets
        return super().up(changes, targets)


@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    return cached_plan(ROOT, "prod").outputs


@pytest.fixture(scope="module")
def env() -> Environment:
    return Context(project_dir=ROOT, stack="prod", dry_run=True, runner=None).environment()  # type: ignore[arg-type]




@pytest.fixture
def runner(project: Path) -> RecordingRunner:
    return RecordingRunner(project)


@pytest.fixture
def arm(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    with serving(monkeypatch, subscription_id=str(outputs["trafficManagerProfiles"]["eastus"]).split("/")[2]) as fake:
        yield fake


class Edge:
    """Traffic Manager and Front Door as ARM shows them."""

    def __init__(self, arm: FakeArm, env: Environment, outputs: dict[str, Any]) -> None:
        self.arm, self.env = arm, env
        self.tm = str(outputs["trafficManagerProfiles"]["eastus"])
        n = env.naming
        self.afd = (f"/subscriptions/{arm.subscription_id}/resourceGroups/{n.global_group()}/providers/"
                    f"Microsoft.Cdn/profiles/{n.front_door()}")
        self.afd_endpoint = f"{self.afd}/afdEndpoints/{n.front_door_endpoint()}"
        self.traffic_manager()
        self.front_door()

    def traffic_manager(self, status: str = "Enabled", monitor: str = "Online",
                        endpoints: dict[str, tuple[str, str]] | None = None) -> None:
        eps = endpoints or {r: ("Enabled", "Online") for r in self.env.deployed_regions}
        self.arm.set_resource(self.tm, {"id": self.tm, "properties": {
            "profileStatus": status, "monitorConfig": {"profileMonitorStatus": monitor},
            "endpoints": [{"name": f"endpoint-{r}", "properties": {"endpointStatus": s, "endpointMonitorStatus": m}}
                          for r, (s, m) in eps.items()]}})

    def front_door(self, state: str = "Active", enabled: str = "Enabled") -> None:
        self.arm.set_resource(self.afd, {"id": self.afd, "properties": {"resourceState": state,
                                                                        "provisioningState": "Succeeded"}})
        self.arm.set_resource(self.afd_endpoint, {"properties": {"enabledState": enabled,
                                                                 "deploymentStatus": "Succeeded"}})


@pytest.fixture
def edge(arm: FakeArm, env: Environment, outputs: dict[str, Any]) -> Edge:
    return Edge(arm, env, outputs)


Cli = Callable[..., int]


def _notifier(receiver: Receiver, pagerduty: bool = True) -> Notifier:  # noqa: F811
    channels: list[Any] = [
        SlackWebhook(Secret(receiver.base_url + SLACK_PATH), channel="#operations"),
        StatuspageIncident(Secret(STATUSPAGE_KEY), "pg42stamps", api_base=receiver.base_url),
    ]
    if pagerduty:
        channels.append(PagerDutyEvents(Secret(ROUTING_KEY), events_url=receiver.base_url + "/v2/enqueue"))
    return Notifier(channels)  # never dry_run itself: the playbook must force previews in a dry run


def _arm_reader(arm: FakeArm) -> ArmReader:
    return ArmReader(arm_endpoint=arm.base_url, retry=FAST, transport=RecordingTransport(connection_verify=arm.ca_file))


@pytest.fixture
def cli(project: Path, runner: RecordingRunner, arm: FakeArm, receiver: Receiver) -> Cli:  # noqa: F811
    def run(*argv: str, pagerduty: bool = True) -> int:
        return main(["incident", *argv, "--project-dir", str(project), "--runner", "offline"],
                    runner_factory=lambda *_: runner, now=lambda: NOW,
                    notifier_factory=lambda: _notifier(receiver, pagerduty), arm_factory=lambda: _arm_reader(arm))

    return run


def log(project: Path, incident: str = INCIDENT) -> dict[str, Any]:
    return json.loads((project / ".stamps" / "incidents" / f"{incident}.json").read_text())


# --------------------------------------------------------------------------- classify


@pytest.mark.parametrize(("argv", "level", "because"), [
    (["--scope", "global"], "P0-Critical", "every user is affected"),
    (["--scope", "global", "--users-affected", "30"], "P1-High", "30% of users affected"),
    (["--scope", "global", "--workaround"], "P0-Critical", "does not lower a P0"),
    (["--scope", "region", "--region", "eastus"], "P1-High", "banking-eus, retail-eus, healthcare-eus"),
    (["--scope", "cells", "--cells", "3"], "P1-High", "multiple CELL failures"),
    (["--scope", "cells", "--cells", "1"], "P2-Medium", "single CELL, limited impact"),
    (["--scope", "cells", "--workaround"], "P3-Low", "a workaround is available: minor issue"),
    (["--scope", "cells", "--users-affected", "100"], "P0-Critical", "a complete outage for everyone"),
])
def test_classify_prints_the_runbook_level_and_why(
    cli: Cli, argv: list[str], level: str, because: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("classify", *argv) == 0
    out = capsys.readouterr().out
    expected = {"P0-Critical": "respond within 15 minutes; escalation: Immediate executive notification",
                "P1-High": "respond within 30 minutes; escalation: Operations manager notification",
                "P2-Medium": "respond within 2 hours; escalation: Team lead notification",
                "P3-Low": "respond within 24 hours; escalation: Standard ticket queue"}[level]
    assert f"{level}: " in out and expected in out
    assert because in out
    assert "P0-Critical" in out and "P3-Low" in out  # the whole table is shown


@pytest.mark.parametrize(("argv", "message"), [
    (["--scope", "global", "--cells", "2"], "--cells: only with --scope cells"),
    (["--scope", "cells", "--cells", "99"], "--cells: must be between 1 and 7"),
    (["--scope", "region", "--region", "mars"], "--region: 'mars' is not a region of this stack"),
    (["--scope", "global", "--users-affected", "150"], "--users-affected: a percentage 0-100"),
])
def test_classify_rejects_bad_input_naming_the_argument(
    cli: Cli, argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("classify", *argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------- respond


def test_disabled_traffic_manager_is_p0_reasserted_by_a_stack_update_announced_and_paged(
    cli: Cli, edge: Edge, runner: RecordingRunner, receiver: Receiver, project: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    edge.traffic_manager(status="Disabled", monitor="Disabled")

    assert cli("respond", "--summary", "api.contoso.com unreachable") == 0

    assert runner.calls == ["refresh", "up"]  # adopt the drift, then re-apply the desired state
    assert runner.refresh_targets == runner.up_targets == [TM_URN], "the offline runner is targeted too"
    (page,) = receiver.on("/v1/pages/")
    assert page.header("Authorization") == f"OAuth {STATUSPAGE_KEY}"
    assert page.json() == {"incident": {"name": "Service Disruption", "status": "investigating",
                                        "impact_override": "critical",
                                        "body": "We are investigating reports of service disruption."}}
    (slack,) = receiver.on("/services/")
    assert slack.json()["channel"] == "#operations"
    assert slack.json()["text"].startswith(":rotating_light: *[CRITICAL]* [P0] api.contoso.com unreachable")
    (pd,) = receiver.on("/v2/enqueue")
    body = pd.json()
    assert body["routing_key"] == ROUTING_KEY and body["event_action"] == "trigger"
    assert body["dedup_key"] == f"stamps-prod-{INCIDENT}"
    assert body["payload"]["severity"] == "critical" and body["payload"]["component"] == "global-infrastructure"
    assert body["payload"]["custom_details"]["severity"] == "P0-Critical"

    record = log(project)
    assert (record["severity"], record["statuspageIncidentId"]) == ("P0", "inc-1001")
    steps = record["runs"][0]["steps"]
    assert [(s["step"], s["status"]) for s in steps] == [
        ("assessment", "warn"), ("mitigation", "ok"), ("communication", "ok"), ("escalation", "ok")]
    assert steps[0]["data"]["drift"] == [{"resource": "traffic-manager", "profile": "eastus", "kind": "profile",
                                          "actual": "Disabled", "desired": "Enabled"}]
    out = capsys.readouterr().out
    assert "Traffic Manager profile of eastus is Disabled" in out and "re-asserted the stack's desired state" in out
    for secret in (ROUTING_KEY, STATUSPAGE_KEY, SLACK_PATH):
        assert secret not in out and secret not in json.dumps(record)

    # Re-running for the same incident: no second status page incident, the same PagerDuty dedup key.
    edge.traffic_manager()
    assert cli("respond", "--incident-id", INCIDENT, "--severity", "P0") == 0
    assert len(receiver.on("/v1/pages/")) == 1
    assert [r.json()["dedup_key"] for r in receiver.on("/v2/enqueue")] == [f"stamps-prod-{INCIDENT}"] * 2
    assert len(log(project)["runs"]) == 2 and runner.calls == ["refresh", "up"]


def test_healthy_edge_is_p2_no_stack_update_no_page(
    cli: Cli, edge: Edge, runner: RecordingRunner, receiver: Receiver, project: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("respond") == 0

    assert runner.calls == []
    assert receiver.on("/v2/enqueue") == []
    assert receiver.on("/v1/pages/")[0].json()["incident"]["impact_override"] == "minor"
    steps = {s["step"]: s for s in log(project)["runs"][0]["steps"]}
    assert steps["mitigation"]["status"] == "ok" and steps["mitigation"]["detail"].startswith("no drift")
    assert steps["escalation"]["status"] == "skipped"
    assert "P2-Medium" in capsys.readouterr().out


def test_regional_endpoint_down_is_p1_and_pages(
    cli: Cli, edge: Edge, receiver: Receiver, project: Path,  # noqa: F811
) -> None:
    edge.traffic_manager(endpoints={"eastus": ("Enabled", "Degraded"), "westus": ("Enabled", "Online")})
    assert cli("respond") == 0
    assert log(project)["severity"] == "P1"
    assert receiver.on("/v2/enqueue")[0].json()["payload"]["severity"] == "error"


def test_dry_run_shows_payloads_and_sends_changes_records_nothing(
    cli: Cli, edge: Edge, runner: RecordingRunner, receiver: Receiver, project: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    edge.front_door(enabled="Disabled")

    assert cli("respond", "--dry-run") == 0

    assert receiver.requests == []
    assert runner.calls == []
    assert not (project / ".stamps" / "incidents").exists()
    out = capsys.readouterr().out
    assert f"would run `pulumi refresh --target {AFD_URN}`, then `pulumi up --target {AFD_URN}" in out
    assert '"impact_override": "critical"' in out and '"event_action": "trigger"' in out
    assert '"routing_key": "**********"' in out and ROUTING_KEY not in out


def test_unreadable_azure_assumes_p0_still_pages_and_exits_1(
    cli: Cli, edge: Edge, arm: FakeArm, receiver: Receiver, project: Path,  # noqa: F811
) -> None:
    arm.fail_next(503, times=50, path_contains="trafficManagerProfiles")

    assert cli("respond") == 1

    record = log(project)
    assert record["severity"] == "P0" and "could not read Azure" in record["severityReasons"][0]
    steps = {s["step"]: s for s in record["runs"][0]["steps"]}
    assert steps["assessment"]["status"] == "error" and "HTTP 503" in steps["assessment"]["detail"]
    assert steps["escalation"]["status"] == "ok"
    assert len(receiver.on("/v2/enqueue")) == 1


def test_p0_without_a_pagerduty_channel_fails_the_escalation(
    cli: Cli, edge: Edge, project: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli("respond", "--severity", "P0", pagerduty=False) == 1
    steps = {s["step"]: s for s in log(project)["runs"][0]["steps"]}
    assert steps["escalation"]["status"] == "fail"
    assert "STAMPS_PAGERDUTY_ROUTING_KEY" in steps["escalation"]["detail"]


def test_unknown_incident_id_is_refused(cli: Cli, edge: Edge, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("respond", "--incident-id", "inc-nope") == 2
    assert "--incident-id: no incident log inc-nope" in capsys.readouterr().err


# --------------------------------------------------------------------------- drift rules


class StubArm:
    def __init__(self, resources: dict[str, Any]) -> None:
        self.resources = resources

    def get(self, path: str, api_version: str) -> dict[str, Any]:
        return self.resources[path]


def test_an_endpoint_the_config_disables_is_not_drift(env: Environment, outputs: dict[str, Any]) -> None:
    ctx = Context(project_dir=ROOT, stack="prod", dry_run=True, runner=None)  # type: ignore[arg-type]
    cfg = ctx.config_file()
    cfg.set("stamps:regions[name=eastus].trafficEnabled", False)  # a DR drill in progress (not saved)
    drilled = ctx.environment(cfg)
    tm = str(outputs["trafficManagerProfiles"]["eastus"])
    n = env.naming
    afd = (f"/subscriptions/{tm.split('/')[2]}/resourceGroups/{n.global_group()}/providers/Microsoft.Cdn/"
           f"profiles/{n.front_door()}")
    stub = StubArm({
        tm: {"properties": {"profileStatus": "Enabled", "monitorConfig": {"profileMonitorStatus": "Online"},
                            "endpoints": [
                                {"name": "endpoint-eastus", "properties": {"endpointStatus": "Disabled",
                                                                           "endpointMonitorStatus": "Disabled"}},
                                {"name": "endpoint-westus", "properties": {"endpointStatus": "Enabled",
                                                                           "endpointMonitorStatus": "Online"}}]}},
        afd: {"properties": {"resourceState": "Active"}},
        f"{afd}/afdEndpoints/{n.front_door_endpoint()}": {"properties": {"enabledState": "Enabled"}},
    })

    assert assess(drilled, outputs, stub).drift == []
    assert assess(drilled, outputs, stub).level()[0] == "P2"
    normal = assess(env, outputs, stub)
    assert normal.drift == [{"resource": "traffic-manager", "profile": "eastus", "kind": "endpoint-eastus",
                             "actual": "Disabled", "desired": "Enabled"}]
    assert normal.level()[0] == "P1"


# --------------------------------------------------------------------------- mitigation through the real runner


class DeployedStack(FakePulumi):
    """The stand-in `pulumi` CLI of a deployed prod stack: its outputs are the plan's ids, which the fake ARM
    serves."""

    def _stdout(self, op: str, args: list[str]) -> str:
        if op == "stack output":
            return json.dumps(cached_plan(ROOT, "prod").outputs, default=str)
        return super()._stdout(op, args)


def _flag(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_mitigation_on_the_default_runner_refreshes_and_updates_only_the_drifted_urns_with_the_policy_pack(
    edge: Edge, arm: FakeArm, receiver: Receiver, project: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.setattr(stamps.offline, "plan_stack",
                        lambda project_dir, stack, config_file=None, **_: cached_plan(project_dir, stack, config_file))
    (project / "policy").mkdir()
    (project / "policy" / "PulumiPolicy.yaml").write_text("runtime: python\nversion: 0.0.1\n")
    edge.traffic_manager(status="Disabled", monitor="Disabled")
    edge.front_door(enabled="Disabled")
    fake = DeployedStack()

    rc = main(["incident", "respond", "--project-dir", str(project), "--no-policy"],
              runner_factory=partial(default_runner, pulumi_command=fake), now=lambda: NOW,
              notifier_factory=lambda: _notifier(receiver), arm_factory=lambda: _arm_reader(arm))

    assert rc == 0
    ops = [c for c in fake.calls if c[0] in ("refresh", "up", "preview", "destroy")]
    assert [c[0] for c in ops] == ["refresh", "up"]
    refresh, up = ops
    assert sorted(_flag(refresh, "--target")) == sorted(_flag(up, "--target")) == sorted([TM_URN, AFD_URN])
    assert "--target-dependents" in up
    assert _flag(up, "--policy-pack") == [str(project / "policy")], "the CLI runs the pack on the update"
    assert sorted(log(project)["runs"][0]["steps"][1]["data"]["targets"]) == sorted([TM_URN, AFD_URN])


@pytest.mark.parametrize("kind", ["automation", "offline"])
def test_mitigation_refuses_when_no_resource_of_the_stack_matches_the_drift(
    project: Path, kind: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stamps.offline, "plan_stack",
                        lambda project_dir, stack, config_file=None, **_: cached_plan(project_dir, stack, config_file))
    fake = DeployedStack()
    recording = RecordingRunner(project)
    runner: Any = AutomationRunner(project, "prod", pulumi_command=fake, show_progress=False) \
        if kind == "automation" else recording
    ctx = Context(project_dir=project, stack="prod", dry_run=False, runner=runner)
    # A profile the stack does not declare (renamed in the program, or a region removed since).
    drift = Assessment(drift=[{"resource": "traffic-manager", "profile": "centralus", "kind": "profile",
                               "actual": "Disabled", "desired": "Enabled"}])

    step = step_mitigation(ctx, drift)

    assert step.status == "fail"
    assert "no resource of stack prod matches it" in step.detail and "whole-stack refresh" in step.detail
    assert fake.calls == [] and recording.calls == [], "nothing refreshed or updated, the whole stack least of all"


class UnitFleet(Fleet):
    """The stand-in CLI per unit stack (tests/test_fleet_deploy.py), each answering `stack output` with what
    the offline plan of its stack exports: the fleet as deployed."""

    def __init__(self, outputs: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.outputs = outputs

    def factory(self, project_dir: Path, stack: str, dry_run: bool, kind: str) -> AutomationRunner:
        runner = super().factory(project_dir, stack, dry_run, kind)
        fake, exported = self.fakes[stack], self.outputs.get(stack, {})
        stdout = FakePulumi._stdout.__get__(fake)
        fake._stdout = lambda op, args: json.dumps(exported, default=str) if op == "stack output" else stdout(op, args)
        return runner


def test_mitigation_of_a_fleet_deployed_as_units_targets_only_the_routing_stack(
    units: Path, edge: Edge, arm: FakeArm, receiver: Receiver,  # noqa: F811
) -> None:
    from stamps.stacks.fleet import plan_fleet

    plans = plan_fleet(units, "prod", units / "Pulumi.prod.yaml")
    fleet = UnitFleet({p.stack: p.outputs for p in plans})
    edge.traffic_manager(status="Disabled", monitor="Disabled")

    rc = main(["incident", "respond", "--project-dir", str(units), "--no-policy"], runner_factory=fleet.factory,
              now=lambda: NOW, notifier_factory=lambda: _notifier(receiver), arm_factory=lambda: _arm_reader(arm))

    assert rc == 0
    touched = {s: [c[0] for c in f.calls if c[0] in ("refresh", "up", "preview")] for s, f in fleet.fakes.items()}
    [routing] = [p for p in plans if any(r["name"] == "routing-tm-eastus" for r in p.resources)]
    assert {s: ops for s, ops in touched.items() if ops} == {routing.stack: ["refresh", "up"]}
    [tm] = [r["urn"] for r in routing.resources if r["name"] == "routing-tm-eastus"]
    calls = fleet.fakes[routing.stack].calls
    assert [_flag(c, "--target") for c in calls if c[0] in ("refresh", "up")] == [[tm], [tm]]
