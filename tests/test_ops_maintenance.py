"""`stamps-ops maintenance weekly|monthly`: read-only checks through the real ArmReader (azure-mgmt-core pipeline,
DefaultAzureCredential) against the local fake ARM serving the resources the prod stack declares."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.arm import ArmReader
from ops.azure_monitor import TM_ENDPOINT_STATE, RetrySettings
from ops.cli import main
from ops.playbooks.base import Context
from ops.runner import AutomationRunner, OfflineRunner, RunnerError
from stamps.environment import Environment
from tests.conftest import cached_plan
from tests.fake_arm import FakeArm, FakeResponse, RecordedRequest, RecordingTransport, serving

ROOT = Path(__file__).resolve().parents[1]
NOW = dt.datetime(2030, 3, 10, 6, 30, tzinfo=dt.UTC)
FAST = RetrySettings(total=3, backoff_factor=0.5, backoff_max=4.0, max_retry_after=30.0, timeout=30.0)
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"



@pytest.fixture(scope="module")
def outputs() -> dict[str, Any]:
    return cached_plan(ROOT, "prod").outputs


@pytest.fixture(scope="module")
def env() -> Environment:
    return Context(project_dir=ROOT, stack="prod", dry_run=True, runner=None).environment()  # type: ignore[arg-type]




@pytest.fixture
def arm(outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArm]:
    with serving(monkeypatch, subscription_id=str(outputs["trafficManagerProfiles"]["eastus"]).split("/")[2]) as fake:
        yield fake


# --------------------------------------------------------------------------- the Azure side of the prod stack


class World:
    """A healthy prod stack as ARM shows it; tests then break one thing at a time."""

    def __init__(self, arm: FakeArm, env: Environment, outputs: dict[str, Any]) -> None:
        self.arm, self.env, self.outputs = arm, env, outputs
        self.sub = arm.subscription_id
        n = env.naming
        self.groups = [n.global_group(), *(n.region_group(r) for r in env.deployed_regions),
                       *(n.cell_group(i.key) for i in env.instances)]
        self.cost_bodies: list[Any] = []
        self.daily = {g: 10.0 for g in self.groups}  # this week's daily cost per group
        self.daily_before = {g: 10.0 for g in self.groups}
        self.assignments: list[dict[str, Any]] = [self.assignment("group-sre", "Group", OWNER),
                                                  self.assignment("user-ann", "User", READER)]
        self.links: dict[str, str] = {}  # cell -> replicationState

    def rg(self, group: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{group}"

    def assignment(self, principal: str, kind: str, role: str) -> dict[str, Any]:
        scope = f"/subscriptions/{self.sub}"
        return {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{principal}", "name": principal,
                "properties": {"principalId": principal, "principalType": kind, "scope": scope,
                               "roleDefinitionId": f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{role}"}}

    def resources(self, group: str, *states: str) -> None:
        items = [{"id": f"{self.rg(group)}/providers/Microsoft.Fake/things/r{i}", "name": f"{group}-r{i}",
                  "type": "Microsoft.Fake/things", "provisioningState": s} for i, s in enumerate(states)]
        self.arm.set_collection(f"{self.rg(group)}/resources", items, page_size=2)

    def certificate(self, region: str, *, days: float, enabled: bool = True) -> None:
        n = self.env.naming
        path = (f"{self.rg(n.region_group(region))}/providers/Microsoft.KeyVault/vaults/{n.key_vault(region)}"
                f"/secrets/{self.env.config.tls.certificate_name}")
        exp = int((NOW + dt.timedelta(days=days)).timestamp())
        self.arm.set_resource(path, {"id": path, "properties": {"attributes": {"enabled": enabled, "exp": exp},
                                                                "contentType": "application/x-pkcs12"}})

    def install(self) -> World:
        for group in self.groups:
            self.resources(group, "Succeeded", "Succeeded", "Succeeded")
        self.arm.add_route("POST", r"/subscriptions/[^/]+/providers/Microsoft\.CostManagement/query", self.cost)
        own = f"{self.rg(self.env.naming.cell_group('banking-eus'))}/providers/Microsoft.Sql/servers/s/databases/d"
        self.arm.set_collection(f"/subscriptions/{self.sub}/providers/Microsoft.Security/assessments", [
            {"name": "a1", "properties": {"displayName": "TLS 1.2", "status": {"code": "Healthy"},
                                          "resourceDetails": {"Source": "Azure", "Id": own},
                                          "metadata": {"severity": "High"}}},
            {"name": "a2", "properties": {"displayName": "Someone else's VM", "status": {"code": "Unhealthy"},
                                          "resourceDetails": {"Source": "Azure", "Id": self.rg("rg-other") + "/x"},
                                          "metadata": {"severity": "High"}}},
        ])
        for ids in self.outputs["cells"].values():
            if ids["role"] == "primary":
                self.database(ids["databaseId"])
        for region in self.env.deployed_regions:
            self.certificate(region, days=90)
        tm = self.outputs["trafficManagerProfiles"]["eastus"]
        self.arm.set_collection(f"{tm}/providers/Microsoft.Insights/metricDefinitions", [
            {"name": {"value": TM_ENDPOINT_STATE}, "unit": "Count", "primaryAggregationType": "Maximum"},
            {"name": {"value": "QpsByEndpoint"}, "unit": "Count", "primaryAggregationType": "Total"},
        ])
        scope = f"/subscriptions/{self.sub}/providers/Microsoft.Authorization"
        self.arm.set_collection(f"{scope}/roleDefinitions", [
            {"name": OWNER, "properties": {"roleName": "Owner"}},
            {"name": READER, "properties": {"roleName": "Reader"}}])
        self.arm.add_route("GET", rf"{scope}/roleAssignments",
                           lambda req: FakeResponse(200, {"value": self.assignments}))
        self.replication()
        self.arm.set_resource(tm, {"id": tm, "properties": {"profileStatus": "Enabled", "endpoints": [
            {"name": f"endpoint-{r}", "properties": {"endpointStatus": "Enabled", "endpointMonitorStatus": "Online"}}
            for r in self.env.deployed_regions]}})
        return self

    def database(self, db: str, *, status: str = "Online", retention: int = 7, earliest: bool = True) -> None:
        props = {"status": status, "currentBackupStorageRedundancy": "Geo"}
        if earliest:
            props["earliestRestoreDate"] = "2030-03-03T06:00:00Z"
        self.arm.set_resource(db, {"id": db, "properties": props})
        self.arm.set_resource(f"{db}/backupShortTermRetentionPolicies/default",
                              {"properties": {"retentionDays": retention, "diffBackupIntervalInHours": 12}})

    def replication(self) -> None:
        cells = self.outputs["cells"]
        for ids in cells.values():
            if ids["role"] != "primary":
                continue
            standby = next((v for v in cells.values() if v["cell"] == ids["cell"] and v["role"] == "standby"), None)
            links = [] if standby is None else [{"name": "link", "properties": {
                "partnerServer": standby["databaseId"].split("/servers/")[1].split("/")[0],
                "partnerLocation": "West US", "role": "Primary", "partnerRole": "Secondary",
                "replicationState": self.links.get(ids["cell"], "CATCH_UP")}}]
            self.arm.set_collection(f"{ids['databaseId']}/replicationLinks", links)

    def cost(self, req: RecordedRequest) -> FakeResponse:
        self.cost_bodies.append(req.json())
        rows = []
        for day in range(14, 0, -1):
            date = (NOW - dt.timedelta(days=day)).strftime("%Y%m%d")
            for g in self.groups:
                rows.append([self.daily[g] if day <= 7 else self.daily_before[g], int(date), g, "USD"])
        half = len(rows) // 2
        second = req.query.get("$skiptoken") == "2"
        props: dict[str, Any] = {
            "columns": [{"name": "Cost", "type": "Number"}, {"name": "UsageDate", "type": "Number"},
                        {"name": "ResourceGroupName", "type": "String"}, {"name": "Currency", "type": "String"}],
            "rows": rows[half:] if second else rows[:half],
        }
        if not second:  # two pages, as Cost Management pages long results
            props["nextLink"] = (f"{self.arm.base_url}{req.path}?api-version={req.query['api-version']}"
                                 "&$skiptoken=2")
        return FakeResponse(200, {"properties": props})


@pytest.fixture
def world(arm: FakeArm, env: Environment, outputs: dict[str, Any]) -> World:
    return World(arm, env, outputs).install()


Cli = Callable[..., int]


@pytest.fixture
def cli(project: Path, arm: FakeArm) -> Cli:
    runner = OfflineRunner(project, "prod", plan_stack=cached_plan)

    def reader() -> ArmReader:
        return ArmReader(arm_endpoint=arm.base_url, retry=FAST,
                         transport=RecordingTransport(connection_verify=arm.ca_file))

    def run(*argv: str, runner_kind: str = "offline") -> int:
        return main(["maintenance", *argv, "--project-dir", str(project), "--runner", runner_kind],
                    runner_factory=lambda *_: runner, arm_factory=reader, now=lambda: NOW)

    return run


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in report["checks"]}


# --------------------------------------------------------------------------- weekly


def test_weekly_all_healthy_writes_the_report_and_exits_0(
    cli: Cli, world: World, arm: FakeArm, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "reports" / "weekly.json"
    assert cli("weekly", "--out", str(out)) == 0

    report = json.loads(out.read_text())
    assert {k: report[k] for k in ("report", "kind", "stack", "generatedAt", "status", "subscription")} == {
        "report": "maintenance", "kind": "weekly", "stack": "prod", "generatedAt": "2030-03-10T06:30:00Z",
        "status": "ok", "subscription": arm.subscription_id}
    assert [c["id"] for c in report["checks"]] == ["resource-health", "cost", "security", "backups", "certificates"]
    for check in report["checks"]:
        assert set(check) == {"id", "title", "status", "summary", "findings", "data"}
        assert check["status"] == "ok" and check["findings"] == []
    checks = by_id(report)
    assert checks["resource-health"]["data"]["resources"] == 3 * len(world.groups)  # every page followed
    assert len(arm.requests_to(f"{world.rg(world.groups[0])}/resources")) == 2  # 3 items, pages of 2
    cost = checks["cost"]["data"]
    assert (cost["last7Days"], cost["previous7Days"], cost["currency"]) == (70.0 * len(world.groups),) * 2 + ("USD",)
    (first, second) = world.cost_bodies
    assert first == second  # the nextLink page is asked for with the same query
    assert first["type"] == "ActualCost" and first["timeframe"] == "Custom"
    assert first["timePeriod"] == {"from": "2030-02-24T00:00:00Z", "to": "2030-03-09T23:59:59Z"}
    assert first["dataset"]["grouping"] == [{"type": "Dimension", "name": "ResourceGroupName"}]
    assert sorted(first["dataset"]["filter"]["dimensions"]["values"]) == sorted(world.groups)
    assert checks["security"]["data"] == {"assessments": 1}  # the other group's VM is not this stack's
    assert [c["vault"] for c in checks["certificates"]["data"]["certificates"]] == ["kv-prod-eus-a57dd",
                                                                                   "kv-prod-wus-a57dd"]
    assert all(r.header("Authorization") == f"Bearer {arm.access_token}" for r in arm.requests)
    assert arm.access_token not in capsys.readouterr().out


def test_a_failing_check_fails_the_report_and_the_exit_code(
    cli: Cli, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    world.certificate("westus", days=12)
    world.resources(world.groups[2], "Succeeded", "Failed", "Updating")
    world.database(world.outputs["cells"]["retail-eus"]["databaseId"], retention=3)
    world.daily.update({g: 15.0 for g in world.groups})  # +50% week over week
    world.daily[world.groups[0]] = 30.0  # the global group tripled its spend

    out = tmp_path / "weekly.json"
    assert cli("weekly", "--out", str(out)) == 1

    report = json.loads(out.read_text())
    checks = by_id(report)
    assert report["status"] == "fail" and report["counts"] == {"fail": 3, "warn": 1, "ok": 1}
    assert [(f["status"], f["subject"]) for f in checks["certificates"]["findings"]] == [
        ("fail", "kv-prod-wus-a57dd/stamps-edge")]
    assert "expires in 12 days" in checks["certificates"]["findings"][0]["detail"]
    assert [(f["status"], f["state"]) for f in checks["resource-health"]["findings"]] == [
        ("fail", "Failed"), ("warn", "Updating")]
    assert checks["backups"]["findings"][0]["subject"] == "retail-eus"
    assert "retention 3 days" in checks["backups"]["findings"][0]["detail"]
    assert checks["cost"]["status"] == "warn" and checks["security"]["status"] == "ok"
    assert [f["subject"] for f in checks["cost"]["findings"]] == ["stack", *world.groups]
    assert "rose 65%" in checks["cost"]["findings"][0]["detail"]
    out_text = capsys.readouterr().out
    assert "fail certificates: kv-prod-wus-a57dd/stamps-edge — expires in 12 days" in out_text


def test_throttling_and_server_errors_are_retried_even_on_the_cost_query_post(
    cli: Cli, world: World, arm: FakeArm,
) -> None:
    arm.fail_next(429, times=1, path_contains="CostManagement")  # no Retry-After: only retried as a read
    arm.fail_next(503, times=2, path_contains="/resources")
    arm.fail_next(429, times=1, retry_after=1, path_contains="Microsoft.KeyVault")

    assert cli("weekly") == 0

    assert len(arm.requests_to(f"/subscriptions/{arm.subscription_id}/providers/Microsoft.CostManagement/query",
                               "POST")) == 3  # one retry, then the nextLink page


def test_a_check_that_cannot_read_azure_is_an_error_and_the_others_still_run(
    cli: Cli, world: World, arm: FakeArm, tmp_path: Path,
) -> None:
    arm.fail_next(500, times=20, path_contains="Microsoft.Security/assessments")
    out = tmp_path / "weekly.json"

    assert cli("weekly", "--out", str(out)) == 1

    report = json.loads(out.read_text())
    checks = by_id(report)
    assert checks["security"]["status"] == "error"
    assert "HTTP 500" in checks["security"]["findings"][0]["detail"]
    assert "after 3 retries" in checks["security"]["findings"][0]["detail"]
    assert report["status"] == "error"
    assert all(checks[c]["status"] == "ok" for c in ("resource-health", "cost", "backups", "certificates"))


def test_missing_certificate_and_database_without_restore_point(cli: Cli, world: World, arm: FakeArm) -> None:
    n = world.env.naming
    arm.set_resource(f"{world.rg(n.region_group('eastus'))}/providers/Microsoft.KeyVault/vaults/"
                     f"{n.key_vault('eastus')}/secrets/stamps-edge",
                     {"error": {"code": "SecretNotFound", "message": "not found"}}, status=404)
    world.database(world.outputs["cells"]["banking-eus"]["databaseId"], earliest=False)

    assert cli("weekly") == 1


# --------------------------------------------------------------------------- monthly


def test_monthly_warns_about_a_cell_without_standby_but_passes(
    cli: Cli, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "monthly.json"
    assert cli("monthly", "--out", str(out)) == 0

    report = json.loads(out.read_text())
    checks = by_id(report)
    assert report["status"] == "warn"
    assert [c["id"] for c in report["checks"]] == ["performance-baseline", "access-review", "dr-readiness",
                                                   "dr-test"]
    assert checks["performance-baseline"]["status"] == "ok"
    assert [m["metric"] for m in checks["performance-baseline"]["data"]["metrics"]] == [TM_ENDPOINT_STATE,
                                                                                       "QpsByEndpoint"]
    assert checks["access-review"]["data"]["assignments"][0]["role"] == "Owner"
    assert checks["access-review"]["status"] == "ok"  # Owner through a group; a user only has Reader
    assert [(f["status"], f["subject"]) for f in checks["dr-readiness"]["findings"]] == [("warn", "shared-smb")]
    assert {r["cell"] for r in checks["dr-readiness"]["data"]["geoReplication"]} == {"banking", "retail",
                                                                                   "healthcare"}
    assert checks["dr-test"]["status"] == "skipped"
    assert "stamps-ops dr-drill" in checks["dr-test"]["summary"]
    assert "dr-drill" in capsys.readouterr().out


def test_monthly_fails_on_direct_user_owner_suspended_replication_and_missing_metric(
    cli: Cli, world: World, arm: FakeArm, tmp_path: Path,
) -> None:
    world.assignments.append(world.assignment("user-bob", "User", OWNER))
    world.links["retail"] = "SUSPENDED"
    world.replication()
    tm = world.outputs["trafficManagerProfiles"]["eastus"]
    arm.set_collection(f"{tm}/providers/Microsoft.Insights/metricDefinitions", [])
    out = tmp_path / "monthly.json"

    assert cli("monthly", "--out", str(out)) == 1

    checks = by_id(json.loads(out.read_text()))
    assert checks["performance-baseline"]["status"] == "fail"
    (owner,) = checks["access-review"]["findings"]
    assert (owner["status"], owner["subject"], owner["role"]) == ("fail", "user-bob", "Owner")
    assert ("fail", "retail") in [(f["status"], f["subject"]) for f in checks["dr-readiness"]["findings"]]
    assert arm.requests_to(f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/"
                           "roleAssignments")[0].query["$filter"] == "atScope()"


def test_dry_run_behaves_the_same_and_bad_out_is_refused(cli: Cli, world: World, tmp_path: Path) -> None:
    assert cli("weekly", "--dry-run") == 0
    assert cli("weekly", "--out", str(tmp_path)) == 2


def test_dry_run_reads_the_deployed_stacks_outputs_not_the_plans(
    cli: Cli, world: World, outputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    asked: list[str] = []

    def deployed(self: AutomationRunner) -> dict[str, Any]:
        asked.append(self.stack_name)
        return dict(outputs)

    monkeypatch.setattr(AutomationRunner, "outputs", deployed)
    assert cli("weekly", "--dry-run", runner_kind="automation") == 0
    assert asked == ["prod"]

    def no_cli(self: AutomationRunner) -> dict[str, Any]:
        raise RunnerError("the Pulumi CLI was not found")

    monkeypatch.setattr(AutomationRunner, "outputs", no_cli)
    assert cli("weekly", "--dry-run", runner_kind="automation") == 0
    assert "cannot read the deployed stack's outputs (the Pulumi CLI was not found)" in capsys.readouterr().out


def test_arm_reader_never_follows_a_next_link_off_the_arm_endpoint(arm: FakeArm) -> None:
    from ops.arm import ArmReadError

    path = f"/subscriptions/{arm.subscription_id}/providers/Microsoft.Authorization/roleDefinitions"
    arm.set_resource(path, {"value": [{"name": "a"}], "nextLink": "https://attacker.example/steal?x=1"})
    with ArmReader(arm_endpoint=arm.base_url, retry=FAST,
                   transport=RecordingTransport(connection_verify=arm.ca_file)) as reader:
        with pytest.raises(ArmReadError, match=r"refused: it is not on https://127\.0\.0\.1"):
            reader.list(path, "2022-04-01")
        with pytest.raises(ArmReadError) as missing:
            reader.get(f"{path}/nope", "2022-04-01")
    assert missing.value.not_found and "HTTP 404 NotFound" in str(missing.value)
    assert len(arm.requests) == 2
