"""The offline plan of prod: layers, CELLs, parents, dependencies, hardening, tags, JSON and diff."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from stamps.cli import main
from stamps.offline import Plan, diff_plans, plan_stack
from stamps.offline.mocks import ARM_IDS
from tests.conftest import ROOT, StackFile, prod_config

CELLS = {"banking-eus", "retail-eus", "healthcare-eus", "shared-smb-eus", "banking-wus", "retail-wus",
         "healthcare-wus"}


def by_urn(plan: Plan) -> dict[str, dict[str, Any]]:
    return {r["urn"]: r for r in plan.resources}


def ancestors(plan: Plan, resource: dict[str, Any]) -> list[str]:
    urns = by_urn(plan)
    out = []
    parent = resource["parent"]
    while parent in urns:
        out.append(urns[parent]["type"])
        parent = urns[parent]["parent"]
    return out


def test_components_per_layer(prod_plan: Plan) -> None:
    counts = Counter(r["type"] for r in prod_plan.resources if not r["custom"])
    assert counts["stamps:global:Global"] == 1
    assert counts["stamps:global:TrafficRouting"] == 1
    assert counts["stamps:regional:Region"] == 2
    assert counts["stamps:cell:Cell"] == 7
    assert {r["name"] for r in prod_plan.by_type("stamps:cell:Cell")} == {f"cell-{k}" for k in CELLS}


@pytest.mark.parametrize("key", sorted(CELLS))
def test_every_cell_has_its_resources_under_its_component(prod_plan: Plan, key: str) -> None:
    cell = prod_plan.get("stamps:cell:Cell", f"cell-{key}")
    children = Counter(r["type"] for r in prod_plan.resources if r["parent"] == cell["urn"])
    for typ, n in {
        "azure-native:resources:ResourceGroup": 1, "azure-native:app:ManagedEnvironment": 1,
        "azure-native:app:ContainerApp": 1, "azure-native:sql:Server": 1, "azure-native:sql:Database": 1,
        "azure-native:managedidentity:UserAssignedIdentity": 1, "time:index/sleep:Sleep": 1,
        # A standby keeps no storage account: it reaches its primary's over its own private endpoint.
        "azure-native:storage:StorageAccount": 0 if key.endswith("wus") else 1,
        "azure-native:network:PrivateEndpoint": 2,
    }.items():
        assert children[typ] == n, (key, typ)
    # Child names derive from the component's name.
    assert all(r["name"].startswith(f"cell-{key}-") for r in prod_plan.resources if r["parent"] == cell["urn"])
    region = prod_plan.get("stamps:regional:Region", f"region-{'eastus' if key.endswith('eus') else 'westus'}")
    assert cell["parent"] == region["urn"]


def test_global_and_regional_resources(prod_plan: Plan) -> None:
    g = prod_plan.get("stamps:global:Global", "global")
    children = {r["type"] for r in prod_plan.resources if r["parent"] == g["urn"]}
    assert {"azure-native:operationalinsights:Workspace", "azure-native:applicationinsights:Component",
            "azure-native:cosmosdb:DatabaseAccount", "azure-native:apimanagement:ApiManagementService"} <= children
    for region in ("eastus", "westus"):
        r = prod_plan.get("stamps:regional:Region", f"region-{region}")
        kids = {x["type"] for x in prod_plan.resources if x["parent"] == r["urn"]}
        assert {"azure-native:network:VirtualNetwork", "azure-native:network:ApplicationGateway",
                "azure-native:keyvault:Vault", "azure-native:automation:AutomationAccount"} <= kids


def test_one_traffic_manager_profile_per_primary_region(prod_plan: Plan) -> None:
    tm = prod_plan.get("azure-native:trafficmanager:Profile", "routing-tm-eastus")["inputs"]
    assert tm["trafficRoutingMethod"] == "Priority"
    assert tm["dnsConfig"]["ttl"] == 300
    # The probe asks eastus's gateways for eastus's CELLs, under the host API Management calls them by.
    assert tm["monitorConfig"]["protocol"] == "HTTPS" and tm["monitorConfig"]["path"] == "/health/eastus"
    assert tm["monitorConfig"]["customHeaders"] == [{"name": "host", "value": "eastus.cells.contoso.com"}]
    prio = {e["name"]: e["priority"] for e in tm["endpoints"]}
    assert prio == {"endpoint-eastus": 1, "endpoint-westus": 2}
    assert all("/publicIPAddresses/" in e["targetResourceId"] for e in tm["endpoints"])
    assert len(prod_plan.by_type("azure-native:trafficmanager:Profile")) == 1  # westus is DR only


def test_front_door_sends_everything_to_api_management(prod_plan: Plan) -> None:
    group = prod_plan.get("azure-native:cdn:AFDOriginGroup", "routing-afd-origins")["inputs"]
    assert group["healthProbeSettings"]["probePath"] == "/status-0123456789abcdef"
    origins = prod_plan.by_type("azure-native:cdn:AFDOrigin")
    # One origin per API Management gateway (Premium: every deployed region), by its regional host name.
    assert sorted(o["inputs"]["hostName"] for o in origins) == [
        "apim-stamps-prod-a57dd-eastus-01.regional.azure-api.net",
        "apim-stamps-prod-a57dd-westus-01.regional.azure-api.net"]
    domain = prod_plan.get("azure-native:cdn:AFDCustomDomain", "routing-afd-domain")["inputs"]
    assert domain["hostName"] == "api.contoso.com"
    assert prod_plan.get("azure-native:cdn:Profile", "routing-afd")["inputs"]["sku"]["name"].endswith("AzureFrontDoor")
    records = {(r["name"], r["type"]) for r in prod_plan.outputs["dnsRecords"]}
    assert records == {("api.contoso.com", "CNAME"), ("_dnsauth.api.contoso.com", "TXT"),
                       ("eastus.cells.contoso.com", "CNAME")}


def test_cosmos_tenant_directory(prod_plan: Plan) -> None:
    account = prod_plan.get("azure-native:cosmosdb:DatabaseAccount", "global-cosmos")["inputs"]
    assert [loc["locationName"] for loc in account["locations"]] == ["eastus", "westus"]
    container = prod_plan.get("azure-native:cosmosdb:SqlResourceSqlContainer", "global-tenants")["inputs"]
    assert container["databaseName"] == "globaldb"
    assert container["resource"]["partitionKey"]["paths"] == ["/tenantId"]


def test_apim_premium_with_dr_location(prod_plan: Plan) -> None:
    apim = prod_plan.get("azure-native:apimanagement:ApiManagementService", "global-apim")["inputs"]
    assert apim["sku"]["name"] == "Premium"
    assert [loc["location"] for loc in apim["additionalLocations"]] == ["westus"]


def test_app_gateway_waf_and_cell_paths(prod_plan: Plan) -> None:
    agw = prod_plan.get("azure-native:network:ApplicationGateway", "region-eastus-agw")["inputs"]
    assert agw["sku"] == {"name": "WAF_v2", "tier": "WAF_v2"}
    paths = {rule["name"]: rule["paths"] for rule in agw["urlPathMaps"][0]["pathRules"]}
    cells = ("banking", "retail", "healthcare", "shared-smb")
    assert paths == {**{f"path-{c}": [f"/cells/{c}/*"] for c in cells}, "path-health-eastus": ["/health/eastus"]}
    waf = prod_plan.get("azure-native:network:WebApplicationFirewallPolicy", "region-eastus-waf")["inputs"]
    assert waf["policySettings"]["mode"] == "Prevention"
    # Custom rules run first: API Management's addresses, then probes on /health/, then nobody.
    rules = [(r["name"], r["action"]) for r in sorted(waf["customRules"], key=lambda r: r["priority"])]
    assert rules == [("AllowApiManagement", "Allow"), ("AllowHealthProbes", "Allow"), ("BlockEveryoneElse", "Block")]
    assert waf["customRules"][0]["matchConditions"][0]["matchValues"] == prod_plan.outputs["apiManagementAddresses"]
    # Pools address CELL apps by FQDN; the health pool holds every eastus CELL; nothing routed falls through.
    pools = {p["name"]: p.get("backendAddresses", []) for p in agw["backendAddressPools"]}
    assert pools["pool-unrouted"] == []
    assert len(pools["pool-health-eastus"]) == 4
    assert all(a["fqdn"].startswith("ca-") for a in pools["pool-banking"])


def test_sql_hardening(prod_plan: Plan) -> None:
    servers = prod_plan.by_type("azure-native:sql:Server")
    assert len(servers) == 7
    for s in servers:
        i = s["inputs"]
        assert i["publicNetworkAccess"] == "Disabled"
        assert i["minimalTlsVersion"] == "1.2"
        assert i["administrators"]["azureADOnlyAuthentication"] is True
        assert "administratorLoginPassword" not in i


def test_storage_hardening(prod_plan: Plan) -> None:
    for s in prod_plan.by_type("azure-native:storage:StorageAccount"):
        i = s["inputs"]
        assert i["enableHttpsTrafficOnly"] is True
        assert i["minimumTlsVersion"] == "TLS1_2"
        assert i["allowBlobPublicAccess"] is False
        assert i["allowSharedKeyAccess"] is False


def test_key_vault_hardening(prod_plan: Plan) -> None:
    for v in prod_plan.by_type("azure-native:keyvault:Vault"):
        p = v["inputs"]["properties"]
        assert p["enableRbacAuthorization"] and p["enableSoftDelete"] and p["enablePurgeProtection"]


def test_container_apps_shape(prod_plan: Plan) -> None:
    apps = {a["name"]: a["inputs"] for a in prod_plan.by_type("azure-native:app:ContainerApp")}
    banking = apps["cell-banking-eus-app"]
    assert banking["configuration"]["activeRevisionsMode"] == "Multiple"
    # Ingress and both probes use the port the image listens on (stamps:app), not a guess.
    port = prod_config()["config"]["stamps:app"]["port"]
    assert banking["configuration"]["ingress"]["targetPort"] == port
    assert banking["template"]["scale"]["minReplicas"] == 3 and banking["template"]["scale"]["maxReplicas"] == 10
    probes = {p["type"]: p["httpGet"] for p in banking["template"]["containers"][0]["probes"]}
    assert set(probes) == {"Liveness", "Readiness"} and {p["port"] for p in probes.values()} == {port}
    # DR standbys deploy at their standby scale.
    assert apps["cell-banking-wus-app"]["template"]["scale"]["minReplicas"] == 1


def test_standby_database_is_a_geo_secondary_of_its_primary(prod_plan: Plan) -> None:
    primary = prod_plan.get("azure-native:sql:Database", "cell-banking-eus-db")
    standby = prod_plan.get("azure-native:sql:Database", "cell-banking-wus-db")
    assert standby["inputs"]["createMode"] == "Secondary"
    assert standby["inputs"]["sourceDatabaseId"].endswith("/servers/sql-banking-eus-" +
                                                          standby["inputs"]["serverName"].rsplit("-", 1)[1] +
                                                          "/databases/sqldb-banking")
    assert primary["urn"] in standby["dependencies"]


def test_dependencies_follow_inputs(prod_plan: Plan) -> None:
    app = prod_plan.get("azure-native:app:ContainerApp", "cell-retail-eus-app")
    env = prod_plan.get("azure-native:app:ManagedEnvironment", "cell-retail-eus-cae")
    rg = prod_plan.get("azure-native:resources:ResourceGroup", "cell-retail-eus-rg")
    assert env["urn"] in app["dependencies"] and rg["urn"] in app["dependencies"]
    agw = prod_plan.get("azure-native:network:ApplicationGateway", "region-eastus-agw")
    assert app["urn"] in agw["dependencies"], "the gateway's probes read the CELL app's FQDN"


def test_every_resource_with_diagnostics_sends_them_to_the_workspace(prod_plan: Plan) -> None:
    from stamps.components.base import DIAGNOSTICS

    workspace = prod_plan.get("azure-native:operationalinsights:Workspace", "global-log")
    ws_id = ARM_IDS["azure-native:operationalinsights:Workspace"]
    targets = {d["inputs"]["resourceUri"] for d in prod_plan.by_type("azure-native:monitor:DiagnosticSetting")}
    assert all(d["inputs"]["workspaceId"].endswith("/workspaces/log-stamps-prod")
               for d in prod_plan.by_type("azure-native:monitor:DiagnosticSetting"))
    for r in prod_plan.custom():
        if r["type"] in DIAGNOSTICS:
            rid = _arm_id(prod_plan, r)
            assert rid in targets, f"{r['type']} {r['name']} has no diagnostic setting"
    assert workspace and ws_id


def _arm_id(plan: Plan, r: dict[str, Any]) -> str:
    from stamps.offline.mocks import AzureMocks

    return AzureMocks().arm_id(r["type"], r["name"], r["inputs"])


@cache
def _takes_tags(typ: str) -> bool:
    import importlib

    provider, module, cls = typ.split(":")
    if provider != "azure-native":
        return False  # the time provider's Sleep is no Azure resource and has no tags
    klass = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), f"{cls}Args")
    return "tags" in inspect.signature(klass.__init__).parameters


def test_every_taggable_resource_is_tagged(prod_plan: Plan) -> None:
    for r in prod_plan.custom():
        if not _takes_tags(r["type"]):
            continue
        tags = r["inputs"].get("tags") or {}
        if isinstance(tags, list):
            continue  # API Management sub-resources take tags as a list of labels, not key/value pairs
        for key in ("environment", "layer", "cost-center"):
            assert key in tags, f"{r['type']} {r['name']} lacks tag {key}"
        if tags["layer"] == "cell":
            assert tags["cell"] and tags["region"] and tags["tenancy"] in {"shared", "dedicated"}


def test_every_type_has_an_arm_id_template(prod_plan: Plan) -> None:
    types = {r["type"] for r in prod_plan.custom()}
    # Every Azure type; the one other, the time provider's Sleep (role propagation), has no ARM id.
    assert types - set(ARM_IDS) == {"time:index/sleep:Sleep"}


def test_plan_json_shape_and_secret_redaction(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["plan", "--project-dir", str(ROOT), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "stamps:cell:Cell" in printed and "azure-native:sql:Server" in printed and "total" in printed
    data = json.loads(out.read_text())
    assert set(data) == {"project", "stack", "resources", "outputs"}
    assert data["project"] == "stamps" and data["stack"] == "prod"
    every = {"urn", "type", "name", "parent", "custom", "inputs", "dependencies"}
    for resource in data["resources"]:
        # customTimeouts only where the program sets them, as in the engine's RegisterResourceRequest.
        assert every <= set(resource) <= every | {"customTimeouts"}, resource["urn"]
    assert any("customTimeouts" in r for r in data["resources"])
    text = out.read_text()
    assert "v1:Wc0n5kCN4V2m0i8D" not in text and "v1:q3Jv0pX2b8kT1mAe" not in text
    assert data["outputs"]["tenantCells"]["banking-corp"] == "banking"


def test_diff_finds_a_replica_change_and_nothing_else(prod_plan: Plan, stack_file: StackFile) -> None:
    def bump(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"][1]["replicas"]["max"] = 15

    changed = plan_stack(ROOT, "prod", stack_file(bump))
    diff = diff_plans(prod_plan, changed)
    assert not diff.creates and not diff.deletes
    # A template change is a new revision, so it gets a new suffix (Azure rejects a re-used one).
    assert [(u.type, u.name, u.paths) for u in diff.updates] == [
        ("azure-native:app:ContainerApp", "cell-retail-eus-app", ["template.revisionSuffix",
                                                                   "template.scale.maxReplicas"])
    ]
    assert diff_plans(prod_plan, prod_plan).is_empty


def test_against_prints_the_diff(prod_plan: Plan, stack_file: StackFile, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.json"
    prod_plan.write(old)

    def fail_over(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"][0]["servingFrom"] = "dr"

    rc = main(["plan", "--project-dir", str(ROOT), "--config-file", str(stack_file(fail_over)),
               "--against", str(old), "--no-tree"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "routing-tm-eastus" in out and "update" in out
    # Failover touches eastus's Traffic Manager profile and the three standby apps: 4 resources.
    changed = plan_stack(ROOT, "prod", stack_file(fail_over))
    diff = diff_plans(prod_plan, changed)
    assert diff.changed == 4, diff.to_dict()


def test_several_stacks_in_one_process_do_not_leak(prod_plan: Plan, stack_file: StackFile) -> None:
    def small(cfg: dict[str, Any]) -> None:
        cfg["stamps:environment"] = "staging"
        cfg["stamps:cells"] = [c for c in cfg["stamps:cells"] if c["name"] == "shared-smb"]
        cfg["stamps:tenants"] = [t for t in cfg["stamps:tenants"] if t["cell"] == "shared-smb"]

    staging = plan_stack(ROOT, "staging", stack_file(small))
    again = plan_stack(ROOT, "prod")
    assert staging.stack == "staging"
    assert len(staging.by_type("stamps:cell:Cell")) == 1
    assert all("staging" in r["urn"] for r in staging.resources)
    assert len(again.resources) == len(prod_plan.resources)
    assert diff_plans(prod_plan, again).is_empty


def _subnets(plan: Plan) -> dict[tuple[str, str], str]:
    return {(v["name"], s["name"]): s["addressPrefix"] for v in plan.by_type("azure-native:network:VirtualNetwork")
            for s in v["inputs"]["subnets"]}


def test_removing_or_reordering_cells_moves_no_other_cells_subnet(prod_plan: Plan, stack_file: StackFile) -> None:
    """Azure refuses to re-prefix a delegated subnet in use: a CELL's /24 is its for life."""
    before = _subnets(prod_plan)

    def drop_retail(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"] = [c for c in cfg["stamps:cells"] if c["name"] != "retail"]

    def reverse(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"].reverse()

    def add_cell(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"].insert(0, {"name": "newcell", "region": "eastus", "model": "shared", "capacity": 5})

    for edit in (drop_retail, reverse, add_cell):
        after = _subnets(plan_stack(ROOT, "prod", stack_file(edit)))
        moved = {k: (before[k], v) for k, v in after.items() if k in before and before[k] != v}
        assert moved == {}, f"{edit.__name__} moved {moved}"
    # The CELL added first in the list still gets a free slot, after the four taken ones.
    added = _subnets(plan_stack(ROOT, "prod", stack_file(add_cell)))
    assert added[("region-eastus-vnet", "snet-cell-newcell")] == "10.10.6.0/24"
