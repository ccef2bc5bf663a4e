"""Alert rules: coverage of every scope, verified metric names, config-driven thresholds, disabled CELLs, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from stamps.cli import main
from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment
from stamps.monitoring import catalog
from stamps.monitoring.catalog import ALLOWED_METRICS, CATALOG, METRIC_SOURCES, RULES, seconds
from stamps.offline import Plan, plan_stack
from stamps.offline.mocks import AzureMocks
from tests.conftest import ROOT, prod_config

METRIC = "azure-native:monitor:MetricAlert"
LOG = "azure-native:monitor:ScheduledQueryRule"
CELLS = ("banking-eus", "banking-wus", "retail-eus", "retail-wus", "healthcare-eus", "healthcare-wus",
         "shared-smb-eus")
SCOPE_TYPES = {
    "Microsoft.Network/trafficManagerProfiles": "azure-native:trafficmanager:Profile",
    "Microsoft.Cdn/profiles": "azure-native:cdn:Profile",
    "Microsoft.ApiManagement/service": "azure-native:apimanagement:ApiManagementService",
    "Microsoft.DocumentDB/databaseAccounts": "azure-native:cosmosdb:DatabaseAccount",
    "Microsoft.Insights/components": "azure-native:applicationinsights:Component",
    "Microsoft.Network/applicationGateways": "azure-native:network:ApplicationGateway",
    "Microsoft.KeyVault/vaults": "azure-native:keyvault:Vault",
    "Microsoft.App/containerApps": "azure-native:app:ContainerApp",
    "Microsoft.Sql/servers/databases": "azure-native:sql:Database",
    "Microsoft.Storage/storageAccounts": "azure-native:storage:StorageAccount",
}
WEBHOOK = "https://hooks.example.test/ops/T0KEN-in-plain-config"
PAGER = "https://events.pager.example.test/integration/PAGER-KEY-42"


def alerts(plan: Plan) -> list[dict[str, Any]]:
    return plan.by_type(METRIC) + plan.by_type(LOG)


def children(plan: Plan, component_type: str, name: str) -> dict[str, dict[str, Any]]:
    """The alert rules under one AlertSet, keyed by catalog rule id."""
    parent = plan.get(component_type, name)["urn"]
    return {r["inputs"]["tags"]["alert-rule"]: r for r in alerts(plan) if r["parent"] == parent}


def threshold(rule: dict[str, Any]) -> float:
    return float(rule["inputs"]["criteria"]["allOf"][0]["threshold"])


def arm_ids(plan: Plan) -> dict[str, str]:
    """ARM id → type of every custom resource in the plan, as the mocks derive them."""
    mocks = AzureMocks()
    return {mocks.arm_id(r["type"], r["name"], r["inputs"]): r["type"] for r in plan.custom()}


def cell_rule_ids(sql_variant: str) -> set[str]:
    return {r.id for r in catalog.rules_for("cell") if r.variant in (None, sql_variant)}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """Prod with an isolated CELL, a CELL with alerts off, a vCore database, overrides and plaintext webhooks."""
    doc = prod_config()
    cfg = doc["config"]
    cells = {c["name"]: c for c in cfg["stamps:cells"]}
    cells["retail"]["isolation"] = {"reason": "suspected compromise", "by": "sre-oncall", "at": "2030-01-01T00:00Z"}
    cells["healthcare"]["alertsEnabled"] = False
    cells["shared-smb"]["sql"] = {"sku": "GP_Gen5_2"}
    cfg["stamps:alerts"] = {"rules": {
        "sql-dtu-high": {"threshold": 75, "severity": 2, "window": "PT30M"},
        "storage-latency": {"enabled": False},
    }}
    cfg["stamps:kpis"] = {"cell": {"containerCpuPercent": {"target": 70, "alert": 90}},
                          "global": {"apiThroughputPerMinute": {"target": 50000, "alert": 30000}}}
    # Plain (not `secure:`) values: the program must still turn them into secrets.
    cfg["stamps:alertWebhookUrl"] = WEBHOOK
    cfg["stamps:pagerDutyWebhookUrl"] = PAGER
    path = tmp_path_factory.mktemp("alerts") / "Pulumi.variant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return plan_stack(ROOT, "prod", path)


# --- coverage ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", CELLS)
def test_every_cell_instance_has_its_own_alert_set(prod_plan: Plan, key: str) -> None:
    rules = children(prod_plan, "stamps:monitoring:AlertSet", f"monitoring-cell-{key}")
    cell, region = key.rsplit("-", 1)
    standby = prod_plan.outputs["cells"][key]["role"] == "standby"
    # A standby keeps no storage account: its blobs are its primary's, watched by the primary's alert set.
    storage_rules = {r.id for r in catalog.rules_for("cell") if r.scope == "storage"}
    assert storage_rules and set(rules) == cell_rule_ids("dtu") - (storage_rules if standby else set())
    app = prod_plan.outputs["cells"][key]
    for rule_id, r in rules.items():
        i = r["inputs"]
        assert i["ruleName"] == f"{rule_id}-{key}"
        assert i["enabled"] is True
        assert i["tags"]["cell"] == cell and i["tags"]["layer"] == "monitoring"
        assert i["tags"]["region"] == {"eus": "eastus", "wus": "westus"}[region]
        assert i["tags"]["tenancy"] in {"shared", "dedicated"}
        assert i["resourceGroupName"] == f"rg-stamps-prod-cell-{key}"
    # Each rule watches this CELL instance's own resources, never another CELL's.
    mocks = AzureMocks()
    server = prod_plan.get("azure-native:sql:Server", f"cell-{key}-sql")["inputs"]["serverName"]
    assert rules["ca-memory-high"]["inputs"]["scopes"] == [app["appId"]]
    assert rules["sql-dtu-high"]["inputs"]["scopes"] == [app["databaseId"]]
    if not standby:
        storage = prod_plan.get("azure-native:storage:StorageAccount", f"cell-{key}-st")
        assert rules["kpi-storage-throughput"]["inputs"]["scopes"] == [
            mocks.arm_id(storage["type"], storage["name"], storage["inputs"])]
    assert f'target contains "{server}"' in rules["kpi-db-latency"]["inputs"]["criteria"]["allOf"][0]["query"]


def test_global_and_regional_resources_have_their_alerts(prod_plan: Plan) -> None:
    ids = arm_ids(prod_plan)
    glob = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-global")
    assert set(glob) == {r.id for r in catalog.rules_for("global")} - {"tm-endpoints-down"}
    # Each primary region's Traffic Manager profile pages on its own: "no healthy endpoint" for eastus.
    tm = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-tm-eastus")
    assert set(tm) == {"tm-endpoints-down"}
    assert tm["tm-endpoints-down"]["inputs"]["scopes"][0].endswith("/trafficManagerProfiles/tm-stamps-prod-eus")
    for region in ("eastus", "westus"):
        regional = children(prod_plan, "stamps:monitoring:AlertSet", f"monitoring-region-{region}")
        assert set(regional) == {"agw-unhealthy-hosts", "kv-availability"}
        assert regional["agw-unhealthy-hosts"]["inputs"]["scopes"][0].endswith(
            f"/applicationGateways/agw-stamps-prod-{region[:1]}us")
    # Every rule's scope is a resource of the plan, of the type its catalog rule names.
    for r in alerts(prod_plan):
        rule = RULES[r["inputs"]["tags"]["alert-rule"]]
        (scope,) = r["inputs"]["scopes"]
        assert ids.get(scope) == SCOPE_TYPES[rule.namespace], f"{r['name']} watches {scope}"


def test_one_rule_per_scope_instance_and_no_more(prod_plan: Plan) -> None:
    per_cell = len(cell_rule_ids("dtu"))
    storage = len([r for r in catalog.rules_for("cell") if r.scope == "storage"])
    # Seven CELL instances; the three standbys' storage is their primaries' account, alerted on once.
    expected = len(catalog.rules_for("global")) + 2 * len(catalog.rules_for("regional")) + 7 * per_cell - 3 * storage
    assert len(alerts(prod_plan)) == expected
    assert len(prod_plan.by_type("azure-native:monitor:ActionGroup")) == 4
    for r in prod_plan.by_type(METRIC):
        assert len(r["inputs"]["criteria"]["allOf"]) == 1, "criteria are ANDed: one rule per alert"


# --- metric names and sources -------------------------------------------------------------------------------
def test_metric_names_are_azure_published_and_sourced(prod_plan: Plan) -> None:
    for r in prod_plan.by_type(METRIC):
        crit = r["inputs"]["criteria"]["allOf"][0]
        ns = crit["metricNamespace"]
        assert crit["metricName"] in ALLOWED_METRICS[ns], (r["name"], crit["metricName"])
        assert METRIC_SOURCES[ns] in r["inputs"]["description"]
    for rule in CATALOG:
        assert rule.source.startswith("https://learn.microsoft.com/")
        if rule.kind == "metric":
            assert rule.metric in ALLOWED_METRICS[rule.namespace]
            assert rule.source.startswith(METRIC_SOURCES[rule.namespace])
        else:
            assert rule.query and rule.metric in rule.query
    used = {r.metric for r in CATALOG}
    assert not used & {"endpoint_status", "Gateway.Duration", "Gateway.Requests"}, "runbook names are not real"


def test_catalog_defaults_are_accepted_by_azure() -> None:
    for r in CATALOG:
        windows, freqs = ((catalog.METRIC_WINDOWS, catalog.METRIC_FREQUENCIES) if r.kind == "metric"
                          else (catalog.LOG_WINDOWS, catalog.LOG_FREQUENCIES))
        assert r.window in windows and r.frequency in freqs, r.id
        assert seconds(r.frequency) <= seconds(r.window), r.id
        assert r.min_window is None or seconds(r.window) >= seconds(r.min_window)
        assert 0 <= r.severity <= 4
    assert [catalog.priority(s) for s in range(5)] == ["P0", "P1", "P2", "P3", "P3"]
    assert seconds("PT15M") == 900 and seconds("P1D") == 86400


def test_runbook_critical_alerts(prod_plan: Plan) -> None:
    glob = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-global")
    tm = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-tm-eastus")
    cell = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-cell-retail-eus")
    expected = {
        "tm-endpoints-down": (tm, "ProbeAgentCurrentEndpointStateByProfileResourceId", "LessThan", 1, 0),
        "afd-origin-latency": (glob, "OriginLatency", "GreaterThan", 500, 2),
        "apim-gateway-latency": (glob, "Duration", "GreaterThan", 1000, 1),
        "apim-requests-high": (glob, "Requests", "GreaterThan", 10_000, 2),
        "sql-dtu-high": (cell, "dtu_consumption_percent", "GreaterThan", 80, 1),
        "ca-memory-high": (cell, "WorkingSetBytes", "GreaterThan", 1024**3, 2),
    }
    for rule_id, (rules, metric, op, value, severity) in expected.items():
        i = rules[rule_id]["inputs"]
        crit = i["criteria"]["allOf"][0]
        assert (crit["metricName"], crit["operator"], threshold(rules[rule_id])) == (metric, op, value), rule_id
        assert i["severity"] == severity
        assert i["actions"][0]["actionGroupId"].endswith(f"/actionGroups/ag-stamps-prod-p{severity}")
    assert glob["apim-requests-high"]["inputs"]["windowSize"] == "PT1M"


def test_kpi_rules_read_the_kpi_block(prod_plan: Plan) -> None:
    glob = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-global")
    cell = children(prod_plan, "stamps:monitoring:AlertSet", "monitoring-cell-banking-eus")
    log = {k: v for k, v in glob.items() if v["type"] == LOG}
    assert set(log) == {"kpi-availability", "kpi-error-rate"}
    assert threshold(glob["kpi-availability"]) == 99.9
    assert glob["kpi-availability"]["inputs"]["criteria"]["allOf"][0]["operator"] == "LessThan"
    assert "requests" in glob["kpi-availability"]["inputs"]["criteria"]["allOf"][0]["query"]
    assert glob["kpi-availability"]["inputs"]["scopes"][0].endswith("/components/appi-stamps-prod")
    assert threshold(glob["kpi-error-rate"]) == 0.5
    assert threshold(glob["kpi-latency"]) == 150
    assert threshold(glob["kpi-api-latency"]) == 100
    # 40,000 requests/minute over the 15-minute window.
    assert threshold(glob["kpi-api-throughput"]) == 40_000 * 15
    assert threshold(cell["kpi-tenant-latency"]) == 500
    assert threshold(cell["kpi-db-latency"]) == 100
    assert threshold(cell["kpi-container-cpu"]) == 85
    assert threshold(cell["kpi-storage-throughput"]) == 500 * 900  # 500 IOPS over 15 minutes


# --- config drives the rules ----------------------------------------------------------------------------------
def test_thresholds_follow_overrides_and_kpis(variant: Plan) -> None:
    cell = children(variant, "stamps:monitoring:AlertSet", "monitoring-cell-banking-eus")
    dtu = cell["sql-dtu-high"]["inputs"]
    assert threshold(cell["sql-dtu-high"]) == 75
    assert (dtu["severity"], dtu["windowSize"]) == (2, "PT30M")
    assert dtu["actions"][0]["actionGroupId"].endswith("/ag-stamps-prod-p2")
    assert dtu["tags"]["priority"] == "P2"
    assert threshold(cell["kpi-container-cpu"]) == 90
    assert cell["storage-latency"]["inputs"]["enabled"] is False  # per-rule `enabled: false`
    glob = children(variant, "stamps:monitoring:AlertSet", "monitoring-global")
    assert threshold(glob["kpi-api-throughput"]) == 30_000 * 15


def test_vcore_database_gets_the_cpu_rule(variant: Plan) -> None:
    rules = children(variant, "stamps:monitoring:AlertSet", "monitoring-cell-shared-smb-eus")
    assert set(rules) == cell_rule_ids("vcore")
    assert rules["sql-cpu-high"]["inputs"]["criteria"]["allOf"][0]["metricName"] == "cpu_percent"


def test_isolation_and_alerts_enabled_disable_a_cells_rules(variant: Plan) -> None:
    def states(key: str) -> set[bool]:
        rules = children(variant, "stamps:monitoring:AlertSet", f"monitoring-cell-{key}")
        storage = {r.id for r in catalog.rules_for("cell") if r.scope == "storage"}  # a standby has none of its own
        assert set(rules) | storage == cell_rule_ids("dtu"), "disabled rules must still exist"
        return {r["inputs"]["enabled"] for k, r in rules.items() if k != "storage-latency"}

    assert states("retail-eus") == {False}       # isolated primary
    assert states("healthcare-eus") == {False}   # alertsEnabled: false, both instances
    assert states("healthcare-wus") == {False}
    assert states("retail-wus") == {True}        # isolation applies to the primary only
    assert states("banking-eus") == {True}
    # The isolated CELL's dashboard says so.
    dash = variant.get("azure-native:portal:Dashboard", "monitoring-dash-retail-eus")
    banner = dash["inputs"]["properties"]["lenses"][0]["parts"][0]["metadata"]["settings"]["content"]["settings"]
    assert "ISOLATED" in banner["content"]


def test_global_alerts_switch_off_everything(stack_file: Any) -> None:
    def off(cfg: dict[str, Any]) -> None:
        cfg["stamps:alerts"] = {"enabled": False}

    from stamps.monitoring.topology import environment_from_stack

    env = environment_from_stack(ROOT, "prod", stack_file(off))
    assert not any(i.alerts_enabled for i in env.instances)


# --- notifications and secrets -------------------------------------------------------------------------------
def test_action_groups_per_priority_and_secrets_stay_secret(variant: Plan) -> None:
    text = json.dumps(variant.to_dict())
    assert WEBHOOK not in text and PAGER not in text
    assert "T0KEN" not in text and "PAGER-KEY" not in text
    groups = {g["inputs"]["actionGroupName"]: g["inputs"] for g in variant.by_type("azure-native:monitor:ActionGroup")}
    assert set(groups) == {f"ag-stamps-prod-p{n}" for n in range(4)}
    hooks = {name: sorted(h["name"] for h in g.get("webhookReceivers", [])) for name, g in groups.items()}
    assert hooks == {"ag-stamps-prod-p0": ["ops-webhook", "pager"], "ag-stamps-prod-p1": ["ops-webhook"],
                     "ag-stamps-prod-p2": ["ops-webhook"], "ag-stamps-prod-p3": []}
    for g in groups.values():
        assert [e["emailAddress"] for e in g["emailReceivers"]] == ["sre-oncall@contoso.com"]
        assert all(h["serviceUri"] == "[secret]" for h in g.get("webhookReceivers", []))
        assert len(g["groupShortName"]) <= 12


@pytest.fixture
def no_config() -> Iterator[None]:
    from pulumi.runtime.config import set_all_config

    set_all_config({}, [])
    yield
    set_all_config({}, [])


def test_missing_webhook_secret_is_a_config_error(no_config: None) -> None:
    from stamps.components.monitoring import _secret

    with pytest.raises(ConfigError) as info:
        _secret("alertWebhookUrl")
    assert "stamps:alertWebhookUrl" in str(info.value) and "--secret" in str(info.value)


# --- override validation -----------------------------------------------------------------------------------------
def _values(mutate: Any) -> dict[str, Any]:
    doc = prod_config()
    mutate(doc["config"])
    return {k.split(":", 1)[1]: v for k, v in doc["config"].items()
            if k.startswith("stamps:") and not (isinstance(v, dict) and "secure" in v)}


@pytest.mark.parametrize(("rules", "expected"), [
    ({"no-such-rule": {"threshold": 1}},
     ["stamps:alerts.rules.no-such-rule: unknown alert rule", "valid: afd-origin-latency, agw-unhealthy-hosts"]),
    ({"kpi-container-cpu": {"threshold": 95}},
     ["stamps:alerts.rules.kpi-container-cpu.threshold", "stamps:kpis.cell.containerCpuPercent.alert"]),
    ({"sql-dtu-high": {"window": "PT10M"}},
     ["stamps:alerts.rules.sql-dtu-high.window: PT10M is not accepted by metric alerts"]),
    ({"ca-memory-high": {"window": "PT5M", "frequency": "PT15M"}},
     ["stamps:alerts.rules.ca-memory-high.frequency: PT15M is longer than the window PT5M"]),
    ({"cosmos-availability": {"window": "PT30M"}},
     ["stamps:alerts.rules.cosmos-availability.window", "at least PT1H"]),
    ({"kpi-db-latency": {"frequency": "PT12H"}},
     ["stamps:alerts.rules.kpi-db-latency.frequency: PT12H is not accepted by log alerts"]),
], ids=["unknown-id", "kpi-threshold", "metric-window", "frequency-gt-window", "min-window", "log-frequency"])
def test_bad_overrides_name_the_key(rules: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_environment("stamps", "prod", _values(lambda c: c.update({"stamps:alerts": {"rules": rules}})))
    text = str(info.value)
    for part in expected:
        assert part in text, f"{part!r} missing from {text}"


def test_valid_overrides_pass() -> None:
    env = load_environment("stamps", "prod", _values(lambda c: c.update({"stamps:alerts": {"rules": {
        "sql-dtu-high": {"threshold": 70, "window": "PT30M", "frequency": "PT15M", "severity": 0},
        "kpi-db-latency": {"window": "PT10M", "enabled": False}}}})))
    eff = catalog.resolve(RULES["sql-dtu-high"], env.config)
    assert (eff.threshold, eff.window, eff.priority, eff.threshold_from) == (
        70, "PT30M", "P0", "stamps:alerts.rules.sql-dtu-high.threshold")
    assert catalog.resolve(RULES["kpi-db-latency"], env.config).enabled is False


def test_invalid_override_exits_2_from_the_cli(stack_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_file(lambda c: c.update({"stamps:alerts": {"rules": {"tm-endpoint-down": {"severity": 1}}}}))
    assert main(["alerts", "--project-dir", str(ROOT), "--config-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "stamps:alerts.rules.tm-endpoint-down" in err and "tm-endpoints-down" in err


# --- `stamps alerts` ---------------------------------------------------------------------------------------
def test_alerts_command_prints_effective_rules(stack_file: Any, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    assert main(["alerts", "--project-dir", str(ROOT)]) == 0
    out = capsys.readouterr().out
    for text in ("tm-endpoints-down", "0 → P0", "kpi-storage-throughput", "7 on", "1 GiB",
                 "stamps:kpis.cell.tenantLatencyMs.alert", "71 alert rules deployed, 0 disabled"):
        assert text in out, text
    assert "sql-cpu-high" not in out, "no vCore database in prod"

    path = stack_file(lambda c: next(x for x in c["stamps:cells"] if x["name"] == "banking").update(
        alertsEnabled=False))
    assert main(["alerts", "--project-dir", str(ROOT), "--config-file", str(path)]) == 0
    assert "off: banking-eus, banking-wus" in capsys.readouterr().out

    assert main(["alerts", "--catalog"]) == 0
    out = capsys.readouterr().out
    assert "microsoft-app-containerapps-metrics" in out and "sql-cpu-high" in out
