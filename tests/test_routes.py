"""`stamps routes`: where requests, probes and public callers would go, walked through planned resources.

Each broken plan below is the real prod plan with one thing changed the way a bad edit would change it; the
walker must name the exact finding and the resources on the path. It reads only the plan, never the config.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stamps.cli import main
from stamps.offline import Plan, plan_stack
from stamps.routes import RouteReport, check_routes
from tests.conftest import ROOT, StackFile

AGW = "azure-native:network:ApplicationGateway"
TM = "azure-native:trafficmanager:Profile"


def walk(plan: Plan, failed_over: tuple[str, ...] = ()) -> RouteReport:
    return check_routes(plan.resources, plan.outputs, failed_over)


def broken(plan: Plan, edit: Callable[[Plan], Any]) -> Plan:
    copy_ = Plan(plan.project, plan.stack, copy.deepcopy(plan.resources), copy.deepcopy(plan.outputs))
    edit(copy_)
    return copy_


def codes(report: RouteReport, severity: str = "error") -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}


def messages(report: RouteReport, code: str) -> list[str]:
    return [f.message for f in report.findings if f.code == code]


@pytest.fixture(scope="module")
def failed_over_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    import yaml

    from tests.conftest import prod_config

    doc = prod_config()
    doc["config"]["stamps:regions"][0]["servingFrom"] = "dr"
    path = tmp_path_factory.mktemp("fo") / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return plan_stack(ROOT, "prod", path)


# --- what the real plans do ---------------------------------------------------------------------------------


def test_prod_every_tenant_reaches_its_own_primary_through_api_management(prod_plan: Plan) -> None:
    report = walk(prod_plan)
    assert report.ok, report.errors
    assert {(t.tenant, t.instance, t.verdict) for t in report.tenants} == {
        ("banking-corp", "cell-banking-eus-app", "ok"),
        ("fintech-scale", "cell-shared-smb-eus-app", "ok"),
        ("startup", "cell-shared-smb-eus-app", "ok"),
    }
    # Every public entry point either is API Management or reaches only health paths.
    assert all(e.through_apim for e in report.entries)
    gateways = {e.name: e.reaches for e in report.entries if e.kind.startswith("public ip")}
    assert gateways == {"region-eastus-agw-pip": "/health/eastus (health only)",
                        "region-westus-agw-pip": "/health/eastus (health only)"}
    # The probes alone move eastus: but shared-smb has no standby, which is said, not hidden.
    assert codes(report, "warning") == {"unprotected"}
    assert "shared-smb" in messages(report, "unprotected")[0]


def test_failed_over_region_lands_on_standbys_and_strands_only_unprotected_cells(failed_over_plan: Plan) -> None:
    report = walk(failed_over_plan, ("eastus",))
    assert report.ok, report.errors
    verdicts = {t.tenant: (t.instance, t.verdict) for t in report.tenants}
    assert verdicts["banking-corp"] == ("cell-banking-wus-app", "ok")
    assert verdicts["startup"][1] == verdicts["fintech-scale"][1] == "stranded (no standby)"
    # Read as if eastus still served, the same plan sends banking to its read-only standby: an error.
    wrong = walk(failed_over_plan)
    assert codes(wrong) == {"wrong-instance", "tenant-unreachable"}
    assert "banking-corp lands on the read-only standby while eastus serves" in messages(wrong, "wrong-instance")[0]


def test_three_region_fleet_serves_every_primary_at_once(stack_file: StackFile) -> None:
    def three_regions(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"].insert(1, {"name": "centralus", "role": "primary", "drRegion": "westus",
                                         "addressSpace": "10.30.0.0/16"})
        cfg["stamps:cells"].append({"name": "central", "region": "centralus", "model": "shared", "capacity": 10,
                                    "standby": {"region": "westus"}})
        cfg["stamps:tenants"].append({"id": "midwest", "tier": "basic", "cell": "central",
                                      "email": "ops@midwest.example"})

    plan = plan_stack(ROOT, "prod", stack_file(three_regions))
    report = walk(plan)
    assert report.ok, report.errors
    assert {t.tenant: t.instance for t in report.tenants}["midwest"] == "cell-central-cus-app"
    assert {t.tenant: t.instance for t in report.tenants}["startup"] == "cell-shared-smb-eus-app"
    # westus backs both primaries: one health path per primary, each reaching only that primary's standbys.
    westus = plan.get(AGW, "region-westus-agw")["inputs"]
    assert {r["name"] for r in westus["urlPathMaps"][0]["pathRules"]} >= {"path-health-eastus",
                                                                         "path-health-centralus"}


# --- plans broken on purpose ----------------------------------------------------------------------------------


def _origin_to_gateway(plan: Plan) -> None:
    pip = plan.get("azure-native:network:PublicIPAddress", "region-eastus-agw-pip")["inputs"]
    origin = plan.get("azure-native:cdn:AFDOrigin", "routing-afd-origin-eastus")["inputs"]
    origin["hostName"] = f"{pip['dnsSettings']['domainNameLabel']}.eastus.cloudapp.azure.com"


def test_front_door_origin_pointed_at_an_app_gateway_is_a_bypass(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _origin_to_gateway))
    assert "bypass-api-management" in codes(report)
    (msg,) = messages(report, "bypass-api-management")
    assert msg == ("Front Door AFDOrigin routing-afd-origin-eastus sends public traffic to ApplicationGateway "
                   "region-eastus-agw without API Management")
    # Its probe (API Management's status path) lands in the gateway's empty default pool, too.
    assert any("routing-afd-origin-eastus" in m for m in messages(report, "probe-empty-pool"))


def _drop_path_rule(plan: Plan) -> None:
    agw = plan.get(AGW, "region-eastus-agw")["inputs"]
    rules = agw["urlPathMaps"][0]["pathRules"]
    rules[:] = [r for r in rules if r["name"] != "path-shared-smb"]


def test_removed_path_rule_strands_the_cells_tenants(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _drop_path_rule))
    assert codes(report) == {"tenant-unreachable"}
    assert sorted(messages(report, "tenant-unreachable")) == [
        f"tenant {t}: ApplicationGateway region-eastus-agw rule default sends /cells/shared-smb/ to the empty pool "
        "pool-unrouted" for t in ("fintech-scale", "startup")]
    assert {t.tenant: t.verdict for t in report.tenants}["banking-corp"] == "ok"


def _probe_path(plan: Plan) -> None:
    plan.get(TM, "routing-tm-eastus")["inputs"]["monitorConfig"]["path"] = "/health"


def _probe_unrouted(plan: Plan) -> None:
    plan.get(TM, "routing-tm-eastus")["inputs"]["monitorConfig"]["path"] = "/health/centralus"


def test_probe_path_matching_no_rule_lands_in_the_empty_default_pool(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _probe_unrouted))
    assert ("Profile routing-tm-eastus probe /health/centralus on endpoint endpoint-eastus lands in the empty pool "
            "pool-unrouted: the endpoint always looks down") in messages(report, "probe-empty-pool")


def test_changed_probe_path_lands_in_the_empty_pool(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _probe_path))
    assert "probe-empty-pool" in codes(report)
    # /health is not under the probes' /health/ prefix: the WAF blocks it before any pool.
    assert ("Profile routing-tm-eastus probe /health on endpoint endpoint-eastus blocked by the WAF: the endpoint "
            "always looks down") in messages(report, "probe-empty-pool")
    # With every endpoint failing its probe, no tenant is routed (Traffic Manager answers with all of them).
    assert all(t.verdict != "ok" for t in report.tenants)


def _route_to_other_tenants_cell(plan: Plan) -> None:
    nv = next(r for r in plan.by_type("azure-native:apimanagement:NamedValue")
              if r["inputs"]["namedValueId"] == "tenant-routing-0")
    nv["inputs"]["value"] = nv["inputs"]["value"].replace("startup=shared-smb", "startup=banking")


def test_tenant_routed_to_another_tenants_cell(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _route_to_other_tenants_cell))
    assert codes(report) == {"wrong-cell"}
    msgs = messages(report, "wrong-cell")
    assert "tenant startup is routed to CELL banking but placed in shared-smb (tenantCells)" in msgs
    assert ("tenant startup reaches ContainerApp cell-banking-eus-app (CELL banking, dedicated to banking-corp), "
            "not its own CELL banking") in msgs


def _open_gateway(plan: Plan) -> None:
    waf = plan.get("azure-native:network:WebApplicationFirewallPolicy", "region-eastus-waf")["inputs"]
    waf["customRules"] = [r for r in waf["customRules"] if r["name"] != "BlockEveryoneElse"]


def test_gateway_open_to_the_internet_is_a_bypass(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _open_gateway))
    msgs = messages(report, "bypass-api-management")
    assert ("PublicIPAddress region-eastus-agw-pip → ApplicationGateway region-eastus-agw rule path-banking: anyone "
            "on the internet reaches CELL banking@eastus at /cells/banking/* without API Management") in msgs
    entry = next(e for e in report.entries if e.name == "region-eastus-agw-pip")
    assert not entry.through_apim


def _spoofable(plan: Plan) -> None:
    pol = plan.get("azure-native:apimanagement:ApiPolicy", "tenants-api-policy")["inputs"]
    pol["value"] = pol["value"].replace('name="X-Tenant-ID" exists-action="override"',
                                        'name="X-Tenant-ID" exists-action="skip"')


def test_tenant_header_not_overwritten_is_spoofable(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _spoofable))
    assert codes(report) == {"spoofable-tenant"}


def _swap_priorities(plan: Plan) -> None:
    for ep in plan.get(TM, "routing-tm-eastus")["inputs"]["endpoints"]:
        ep["priority"] = 3 - ep["priority"]


def test_standby_taking_traffic_while_its_primary_serves(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _swap_priorities))
    assert "wrong-instance" in codes(report)
    assert any("banking-corp lands on the read-only standby while eastus serves" in m
               for m in messages(report, "wrong-instance"))


def _no_dns_record(plan: Plan) -> None:
    plan.outputs["dnsRecords"] = [r for r in plan.outputs["dnsRecords"] if r["name"] != "eastus.cells.contoso.com"]


def test_backend_host_without_a_printed_dns_record_is_unreachable(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _no_dns_record))
    assert "tenant-unreachable" in codes(report)
    assert all("eastus.cells.contoso.com resolves to nothing planned" in m
               for m in messages(report, "tenant-unreachable"))


def _no_private_zone_link(plan: Plan) -> None:
    plan.resources[:] = [r for r in plan.resources if not (
        r["type"] == "azure-native:privatedns:VirtualNetworkLink" and r["name"] == "cell-banking-eus-cae-dns-link")]


def test_app_fqdn_the_gateway_cannot_resolve(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _no_private_zone_link))
    assert "unresolvable-backend" in codes(report)
    assert {t.tenant: t.verdict for t in report.tenants}["banking-corp"] != "ok"


def _gateway_probe_path(plan: Plan) -> None:
    for probe in plan.get(AGW, "region-eastus-agw")["inputs"]["probes"]:
        probe["path"] = "/health"


def test_gateway_probe_on_a_path_the_app_does_not_serve(prod_plan: Plan) -> None:
    report = walk(broken(prod_plan, _gateway_probe_path))
    assert "probe-misses-backend" in codes(report)
    assert any("probe-banking calls /health on ContainerApp cell-banking-eus-app, which serves /" in m
               for m in messages(report, "probe-misses-backend"))


# --- the command ----------------------------------------------------------------------------------------------


def test_command_exits_4_naming_the_finding(prod_plan: Plan, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    prod_plan.write(good)
    broken(prod_plan, _origin_to_gateway).write(bad)
    assert main(["routes", "--plan", str(good)]) == 0
    assert "routes ok: 3 of 3 tenants" in capsys.readouterr().out
    assert main(["routes", "--plan", str(bad)]) == 4
    out = capsys.readouterr().out
    assert "bypass-api-management" in out and "routing-afd-origin-eastus" in out
    assert main(["routes", "--plan", str(bad), "--json"]) == 4
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and {f["code"] for f in data["findings"]} >= {"bypass-api-management"}


def test_command_plans_each_failover_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes", "--project-dir", str(ROOT), "--each-failover"]) == 0
    out = capsys.readouterr().out
    assert "every primary serving" in out and "failed over: eastus" in out


def test_command_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    assert main(["routes", "--plan", str(junk)]) == 2
    assert "--plan:" in capsys.readouterr().err
    assert main(["routes", "--project-dir", str(ROOT), "--failed-over", "westus"]) == 2
    assert "--failed-over: 'westus' is not a primary region" in capsys.readouterr().err
