"""Azure's rules on the planned resources, read from Azure's documentation (stamps/config/capabilities.py cites
each fact): zones and storage redundancy only where a region offers them, Container Apps revisions that Azure
accepts, identities with the roles they use, and the data protection compliance CELLs need."""

from __future__ import annotations

import copy
import ipaddress
import re
import uuid
from typing import Any

import pytest

from benchmarks.fleets import fleet_doc
from stamps.access import (
    OPERATOR_CERTIFICATE_ACTIONS,
    READ_SECRET,
    WRITE_SECRET,
    Caller,
    Grant,
    vault_refusals,
)
from stamps.components.base import COSMOS_ROLE_IDS, ROLE_IDS, ROLE_PROPAGATION, SLEEP_TYPE
from stamps.config import capabilities as cap
from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment
from stamps.config.regions import AZURE_REGIONS
from stamps.offline import Plan, plan_stack
from stamps.policycheck import check_plan
from stamps.policycheck.config import parse
from tests.conftest import ROOT, StackFile, cached_plan, prod_config

ZONE_SKUS = ("ZRS", "GZRS")


def _values(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k.split(":", 1)[1]: v for k, v in cfg.items() if k.startswith("stamps:")}


def _config_errors(mutate: Any) -> list[str]:
    cfg = prod_config()["config"]
    mutate(cfg)
    with pytest.raises(ConfigError) as info:
        load_environment("stamps", "prod", _values(cfg))
    return info.value.problems


def zone_violations(plan: Plan) -> list[str]:
    """What Azure would reject: zonal settings and zone/geo storage SKUs in a region that does not offer them."""
    out = []
    for r in plan.custom():
        i = r["inputs"]
        loc = str(i.get("location", "")).replace(" ", "").lower()
        if i.get("zones") and not cap.has_zones(loc):
            out.append(f"{r['name']}: zones in {loc}")
        if i.get("zoneRedundant") is True and not cap.has_zones(loc):
            out.append(f"{r['name']}: zoneRedundant in {loc}")
        for location in i.get("locations") or []:
            if location.get("isZoneRedundant") and not cap.has_zones(location["locationName"]):
                out.append(f"{r['name']}: isZoneRedundant in {location['locationName']}")
        sku = (i.get("sku") or {}).get("name", "") if r["type"] == "azure-native:storage:StorageAccount" else ""
        if sku and (why := cap.storage_sku_offered(sku, loc)):
            out.append(f"{r['name']}: {why}")
    return out


def pack_violations(plan: Plan, regions: list[str]) -> list[tuple[str, str]]:
    """The policy pack's mandatory findings on a plan, with the fleet's regions allowed."""
    report = check_plan(plan, ROOT / "policy", parse({"allowed-regions": {"allowedRegions": regions}}))
    return [(v.policy, v.name) for v in report.violations if v.level == "mandatory"]


# --- 1. region capabilities ----------------------------------------------------------------------------------
def test_every_capability_table_cites_microsoft_learn() -> None:
    for name in ("AZ_SOURCE", "ZRS_SOURCE", "GZRS_SOURCE", "PAIRS_SOURCE", "SQL_ZONES_SOURCE"):
        assert getattr(cap, name).startswith("https://learn.microsoft.com/azure/"), name
    # The review's finding: West US has neither zones nor ZRS; East US has both.
    assert not cap.has_zones("westus") and "westus" not in cap.ZRS_REGIONS
    assert cap.has_zones("eastus") and "eastus" in cap.GZRS_REGIONS


def _dr_in(region: str) -> Any:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"][1]["name"] = region
        cfg["stamps:regions"][0]["drRegion"] = region
        for cell in cfg["stamps:cells"]:
            if (cell.get("standby") or {}).get("region"):
                cell["standby"]["region"] = region
    return mutate


def test_services_per_region_follow_region_type_and_service_category() -> None:
    for name in ("CATEGORY_SOURCE", "RESTRICTED_SOURCE"):
        assert getattr(cap, name).startswith("https://learn.microsoft.com/azure/"), name
    assert all(s.source.startswith("https://learn.microsoft.com/azure/") for s in cap.SERVICES.values())
    # Every service the program deploys has a row (the plan's resource types map onto them).
    assert set(cap.REGION_SERVICES + cap.HOME_SERVICES) <= set(cap.SERVICES)
    # Foundational services everywhere but in restricted regions; mainstream ones promised only where zones are.
    assert cap.availability("sql", "westus") == "available"
    assert cap.availability("container-apps", "eastus") == "available"
    assert cap.availability("container-apps", "westus") == "demand-driven"
    assert cap.availability("automation", "eastus") == "demand-driven"  # strategic
    assert cap.availability("front-door", "germanynorth") == "available"  # non-regional
    assert {r for r in cap.RESTRICTED_REGIONS if cap.availability("key-vault", r) != "restricted"} == set()
    assert cap.RESTRICTED_REGIONS <= AZURE_REGIONS


@pytest.mark.parametrize("region", ["germanynorth", "switzerlandwest", "koreasouth"])
def test_a_region_where_the_services_cannot_be_deployed_is_a_config_error_naming_the_key(region: str) -> None:
    problems = _config_errors(_dr_in(region))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"stamps:regions[1].name: {region!r} is an access-restricted")
    assert "Container Apps" in problems[0] and "Azure SQL Database" in problems[0]
    assert "regions-list" in problems[0]


def test_the_plan_names_the_services_to_confirm_in_an_alternate_region(stack_file: StackFile,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    plan_stack(ROOT, "prod", stack_file())
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "stamps:regions[1].name: Azure deploys Automation, Private Link" in logged
    assert "to westus on demand only (an alternate region: no availability zones)" in logged
    warnings = cap.service_warnings(load_environment("stamps", "prod", _values(prod_config()["config"])).config)
    (west,) = [w for w in warnings if w.startswith("stamps:regions[1].name:")]
    for service in ("Container Apps", "API Management (Premium)", "Automation", "Private Link"):
        assert service in west
    assert "Azure SQL Database" not in west and "Key Vault" not in west  # foundational: everywhere
    (east,) = [w for w in warnings if w.startswith("stamps:regions[0].name:")]
    assert "Automation to eastus on demand only (strategic services)" in east
    assert "Container Apps" not in east  # a recommended region


def test_the_plan_says_where_blobs_fail_over_when_the_dr_region_is_not_the_pair(stack_file: StackFile) -> None:
    env = load_environment("stamps", "prod", _values(fleet_doc("M")["config"]))
    # Fleet M: centralus fails over to westus, but Azure pairs it with eastus2 (regions-list).
    (warning,) = cap.storage_pair_warnings(env.config)
    assert "westus is not centralus's paired region eastus2" in warning
    assert cap.storage_pair_warnings(load_environment("stamps", "prod", _values(prod_config()["config"])).config) == []


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda c: c["stamps:regions"][1].update(zoneRedundant=True), "stamps:regions[1].zoneRedundant"),
    (lambda c: c["stamps:cells"][0]["standby"].update(zoneRedundant=True), "stamps:cells[0].standby.zoneRedundant"),
    (lambda c: c["stamps:cells"][1].update(zoneRedundant=True), "stamps:cells[1].sql.sku"),
])
def test_asking_for_zones_where_there_are_none_is_a_config_error_naming_the_key(mutate: Any, key: str) -> None:
    problems = _config_errors(mutate)
    assert len(problems) == 1 and problems[0].startswith(key + ": "), problems
    assert "learn.microsoft.com" in problems[0]


def test_prod_places_nothing_zonal_in_westus_and_keeps_zones_in_eastus(prod_plan: Plan) -> None:
    assert zone_violations(prod_plan) == []
    agw = prod_plan.get("azure-native:network:ApplicationGateway", "region-westus-agw")["inputs"]
    assert not agw.get("zones")
    assert prod_plan.get("azure-native:app:ManagedEnvironment", "cell-banking-eus-cae")["inputs"]["zoneRedundant"]
    assert not prod_plan.get("azure-native:app:ManagedEnvironment", "cell-banking-wus-cae")["inputs"]["zoneRedundant"]
    cosmos = prod_plan.get("azure-native:cosmosdb:DatabaseAccount", "global-cosmos")["inputs"]
    assert {loc["locationName"]: loc["isZoneRedundant"] for loc in cosmos["locations"]} == \
        {"eastus": True, "westus": False}


@pytest.mark.parametrize("size", ["M", "L"])
def test_benchmark_fleets_respect_region_capabilities_and_pass_the_pack(size: str, stack_file: StackFile) -> None:
    doc = fleet_doc(size)
    plan = cached_plan(ROOT, "prod", stack_file(doc=doc))
    assert zone_violations(plan) == []
    assert pack_violations(plan, [r["name"] for r in doc["config"]["stamps:regions"]]) == []


def test_a_fleet_whose_dr_region_has_no_zones_plans_without_zonal_resources_there(stack_file: StackFile) -> None:
    def dr_north_central(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"][1]["name"] = "northcentralus"
        cfg["stamps:regions"][0]["drRegion"] = "northcentralus"
        for c in cfg["stamps:cells"]:
            if c.get("standby"):
                c["standby"]["region"] = "northcentralus"

    plan = plan_stack(ROOT, "prod", stack_file(dr_north_central))
    assert not cap.has_zones("northcentralus")
    assert zone_violations(plan) == []
    assert pack_violations(plan, ["eastus", "northcentralus"]) == []
    assert [r for r in plan.custom() if r["inputs"].get("location") == "northcentralus"]


def test_zone_redundancy_is_a_choice(stack_file: StackFile) -> None:
    def off(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"][0]["zoneRedundant"] = False
        cfg["stamps:regions"][0]["zoneRedundant"] = False

    plan = plan_stack(ROOT, "prod", stack_file(off))
    assert plan.get("azure-native:app:ManagedEnvironment", "cell-banking-eus-cae")["inputs"]["zoneRedundant"] is False
    assert plan.get("azure-native:sql:Database", "cell-banking-eus-db")["inputs"]["zoneRedundant"] is False
    assert plan.get("azure-native:storage:StorageAccount", "cell-banking-eus-st")["inputs"]["sku"]["name"] == \
        "Standard_GRS"
    assert not plan.get("azure-native:network:ApplicationGateway", "region-eastus-agw")["inputs"].get("zones")


def test_role_assignment_names_are_seeded_by_scope_principal_and_role(prod_plan: Plan, stack_file: StackFile) -> None:
    prod = _role_assignments(prod_plan)
    for ra in prod:
        seed = "/".join(str(p).lower() for p in (ra["scope"], ra["principalId"], ra["roleDefinitionId"]))
        assert ra["roleAssignmentName"] == str(uuid.uuid5(uuid.NAMESPACE_URL, seed))
    assert len({ra["roleAssignmentName"] for ra in prod}) == len(prod)

    def staging(cfg: dict[str, Any]) -> None:
        cfg["stamps:environment"] = "staging"

    # Names are unique in the whole Entra tenant: a staging stack next to prod must not collide.
    other = _role_assignments(plan_stack(ROOT, "staging", stack_file(staging)))
    assert not {ra["roleAssignmentName"] for ra in prod} & {ra["roleAssignmentName"] for ra in other}


# --- 2. edge certificates ------------------------------------------------------------------------------------
def _depends_on(plan: Plan, gateway: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    return [r for r in plan.by_type(typ) if r["urn"] in gateway["dependencies"]]


def test_each_gateway_waits_for_its_stored_certificate_and_its_role(prod_plan: Plan) -> None:
    for region in ("eastus", "westus"):
        agw = prod_plan.get("azure-native:network:ApplicationGateway", f"region-{region}-agw")
        vault = prod_plan.get("azure-native:keyvault:Vault", f"region-{region}-kv")["inputs"]["vaultName"]
        (secret,) = _depends_on(prod_plan, agw, "azure-native:keyvault:Secret")
        assert secret["inputs"]["vaultName"] == vault and secret["inputs"]["secretName"] == "stamps-edge"
        assert secret["inputs"]["properties"]["value"] == "[secret]"
        assert secret["inputs"]["properties"]["contentType"] == "application/x-pkcs12"
        # The vault denies the deployer's network: the secret goes in through ARM (the control plane, which the
        # firewall does not apply to), and nothing in the plan writes through the vault's data plane.
        kv = prod_plan.get("azure-native:keyvault:Vault", f"region-{region}-kv")["inputs"]["properties"]
        assert kv["networkAcls"]["defaultAction"] == "Deny"
        assert secret["type"] == "azure-native:keyvault:Secret"
        assert not [r for r in prod_plan.custom() if r["type"].startswith("azure:keyvault/")]
        assert agw["inputs"]["sslCertificates"][0]["keyVaultSecretId"] == \
            f"https://{vault}.vault.azure.net/secrets/stamps-edge"
        roles = _depends_on(prod_plan, agw, "azure-native:authorization:RoleAssignment")
        assert [r["inputs"]["roleDefinitionId"].rsplit("/", 1)[-1] for r in roles] == \
            [ROLE_IDS["Key Vault Secrets User"]]
        assert roles[0]["inputs"]["scope"].endswith(f"/vaults/{vault}")
        # Operators may import and rotate certificates: roles on the vault and its firewall lets them in.
        officers = {r["roleDefinitionId"].rsplit("/", 1)[-1] for r in _role_assignments(prod_plan)
                    if r["scope"].endswith(f"/vaults/{vault}") and r["principalType"] == "Group"}
        assert officers == {ROLE_IDS["Key Vault Certificates Officer"], ROLE_IDS["Key Vault Secrets Officer"]}


def test_a_certificate_in_an_existing_vault_is_read_there(stack_file: StackFile) -> None:
    central = ("/subscriptions/00000000-0000-4000-8000-00000000c0de/resourceGroups/rg-pki/providers/"
               "Microsoft.KeyVault/vaults/kv-central-pki")

    def external(cfg: dict[str, Any]) -> None:
        cfg["stamps:tls"]["keyVaultId"] = central

    plan = plan_stack(ROOT, "prod", stack_file(external))
    assert plan.by_type("azure-native:keyvault:Secret") == []
    agw = plan.get("azure-native:network:ApplicationGateway", "region-eastus-agw")
    assert agw["inputs"]["sslCertificates"][0]["keyVaultSecretId"] == \
        "https://kv-central-pki.vault.azure.net/secrets/stamps-edge"
    (role,) = _depends_on(plan, agw, "azure-native:authorization:RoleAssignment")
    assert role["inputs"]["scope"] == central


KV_ROLE = "azure-native:authorization:RoleAssignment"


def vault_refuses(plan: Plan, vault: dict[str, Any], caller: Caller, actions: tuple[str, ...]) -> list[str]:
    """What Azure would refuse of `caller`'s data-plane `actions` on a planned vault, from the vault's planned
    properties and every planned role assignment (stamps/access.py holds Azure's rules); empty: Azure serves them."""
    grants = [Grant(r["inputs"]["scope"], r["inputs"]["principalId"], r["inputs"]["roleDefinitionId"])
              for r in plan.by_type(KV_ROLE)]
    return vault_refusals(_mock_id(vault), vault["inputs"]["properties"], grants, caller, actions)


def edge_certificate_vaults(plan: Plan) -> dict[str, dict[str, Any]]:
    """Every planned vault a gateway reads its listener certificate from, by name."""
    vaults = {v["inputs"]["vaultName"]: v for v in plan.by_type("azure-native:keyvault:Vault")}
    out = {}
    for agw in plan.by_type("azure-native:network:ApplicationGateway"):
        for cert in agw["inputs"]["sslCertificates"]:
            name = cert["keyVaultSecretId"].removeprefix("https://").split(".", 1)[0]
            assert name in vaults, f"{agw['name']} reads {name}, which the plan does not hold"
            out[name] = vaults[name]
    return out


def _operators() -> list[Caller]:
    """Each operator principal of the prod config, calling from an address in each of the operators' ranges."""
    cfg = prod_config()["config"]
    hosts = [str(next(ipaddress.ip_network(r).hosts())) for r in cfg["stamps:operatorIpRanges"]]
    assert hosts
    return [Caller(op["objectId"], ip=h) for op in cfg["stamps:operators"] for h in hosts]


def test_operators_reach_the_vaults_holding_the_edge_certificate(prod_plan: Plan) -> None:
    vaults = edge_certificate_vaults(prod_plan)
    assert sorted(vaults) == sorted(prod_plan.get("azure-native:keyvault:Vault", f"region-{r}-kv")["inputs"]
                                    ["vaultName"] for r in ("eastus", "westus"))
    for name, vault in vaults.items():
        # The firewall is closed (the finding: it denied the operator) and the vault is RBAC-only.
        assert vault["inputs"]["properties"]["networkAcls"]["defaultAction"] == "Deny"
        assert vault["inputs"]["properties"]["enableRbacAuthorization"] is True
        for operator in _operators():
            assert vault_refuses(prod_plan, vault, operator, OPERATOR_CERTIFICATE_ACTIONS) == [], (name, operator)
        # Anyone else is refused on both gates: by the firewall, and for want of a role.
        outsider = vault_refuses(prod_plan, vault, Caller(str(uuid.uuid4()), ip="198.51.100.7"), (READ_SECRET,))
        assert len(outsider) == 2 and "no role assignment" in outsider[0] and "firewall" in outsider[1]
        # The gateway reading it: its identity's role, over its subnet's service endpoint.
        for agw in prod_plan.by_type("azure-native:network:ApplicationGateway"):
            if name in agw["inputs"]["sslCertificates"][0]["keyVaultSecretId"]:
                (identity,) = _identities(prod_plan, agw)
                subnet = agw["inputs"]["gatewayIPConfigurations"][0]["subnet"]["id"]
                assert vault_refuses(prod_plan, vault, Caller(identity["principalId"], subnet_id=subnet),
                                     (READ_SECRET,)) == []


def _without(plan: Plan, drop: Any = None, edit: Any = None) -> Plan:
    resources = [r for r in copy.deepcopy(plan.resources) if not (drop and drop(r))]
    for r in resources:
        if edit:
            edit(r)
    return Plan(plan.project, plan.stack, resources, plan.outputs)


def test_vault_refuses_says_no_on_a_plan_without_the_operators_role_or_address(prod_plan: Plan) -> None:
    (operator, *_) = _operators()
    secrets_officer = ROLE_IDS["Key Vault Secrets Officer"]

    def officer_role(r: dict[str, Any]) -> bool:
        return r["type"] == KV_ROLE and r["inputs"]["roleDefinitionId"].endswith(secrets_officer)

    def no_ip_rules(r: dict[str, Any]) -> None:
        if r["type"] == "azure-native:keyvault:Vault":
            r["inputs"]["properties"]["networkAcls"]["ipRules"] = []

    def at_group_scope(r: dict[str, Any]) -> None:
        # The same role granted on the vault's resource group: Azure inherits it down to the vault.
        if officer_role(r):
            r["inputs"]["scope"] = r["inputs"]["scope"].split("/providers/")[0]

    without_role, without_ip = _without(prod_plan, drop=officer_role), _without(prod_plan, edit=no_ip_rules)
    for vault in edge_certificate_vaults(prod_plan).values():
        # Certificates Officer still imports and reads certificates; the PFX as a secret (what the gateway reads)
        # needs Secrets Officer to be written or read back.
        assert vault_refuses(without_role, vault, operator, OPERATOR_CERTIFICATE_ACTIONS) == [
            f"{action}: no role assignment to {operator.principal_id} at the vault or above grants it"
            for action in (WRITE_SECRET, READ_SECRET)]
        (refusal,) = vault_refuses(without_ip, without_ip.get(vault["type"], vault["name"]), operator, (READ_SECRET,))
        assert "firewall denies by default" in refusal and operator.ip in refusal
        assert vault_refuses(_without(prod_plan, edit=at_group_scope), vault, operator,
                             OPERATOR_CERTIFICATE_ACTIONS) == []


SECURE = {"secure": "v1:c3RhbXBzLXRlc3Q="}  # what `pulumi config set --secret` writes (ciphertext, opaque offline)


def _plan_cli(path: Any, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    from stamps.cli import main

    code = main(["plan", "--project-dir", str(ROOT), "--stack", "prod", "--config-file", str(path), "--quiet",
                 "--no-tree", *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_missing_edge_certificate_exits_2_naming_the_secret(stack_file: StackFile,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    def webhooks(cfg: dict[str, Any]) -> None:
        cfg["stamps:alertWebhookUrl"] = cfg["stamps:pagerDutyWebhookUrl"] = SECURE

    # As `pulumi preview` would: the secrets the stack file sets are there, the certificate is not.
    code, out = _plan_cli(stack_file(webhooks), capsys, "--require-secrets")
    assert code == 2, out
    assert "stamps:edgeCertificatePfx: missing" in out and "stamps:tls.keyVaultId" in out
    assert "Traceback" not in out and "unexpected" not in out

    def plain_pfx(cfg: dict[str, Any]) -> None:
        webhooks(cfg)
        cfg["stamps:edgeCertificatePfx"] = "MIIKcQIBAzCCCjcGCSqGSIb3DQEHAaCCCigEggokMIIKIDCC"

    # In plain text the private key would be committed with the stack file: refused with or without the flag.
    code, out = _plan_cli(stack_file(plain_pfx), capsys)
    assert code == 2 and "stamps:edgeCertificatePfx: set in plain text" in out and "Traceback" not in out
    # Empty, the gateway would fail on Azure minutes into the update (ApplicationGatewayKeyVaultSecretException).
    code, out = _plan_cli(stack_file(lambda cfg: cfg.update({"stamps:edgeCertificatePfx": " "})), capsys)
    assert code == 2 and "stamps:edgeCertificatePfx: empty" in out

    def central_vault(cfg: dict[str, Any]) -> None:
        webhooks(cfg)
        cfg["stamps:tls"]["keyVaultId"] = (f"/subscriptions/{uuid.UUID(int=1)}/resourceGroups/rg-pki/providers/"
                                           "Microsoft.KeyVault/vaults/kv-central-pki")

    # A certificate in an existing vault needs no PFX: the same strict plan goes through.
    assert _plan_cli(stack_file(central_vault), capsys, "--require-secrets")[0] == 0


def test_a_malformed_vault_id_is_a_config_error_naming_the_key() -> None:
    problems = _config_errors(lambda c: c["stamps:tls"].update(keyVaultId="kv-central-pki"))
    assert problems[0].startswith("stamps:tls.keyVaultId: ")


# --- 3. Container Apps that start ------------------------------------------------------------------------------
def test_outside_dev_the_image_and_port_are_required() -> None:
    problems = _config_errors(lambda c: c.pop("stamps:app"))
    assert problems == [problems[0]] and problems[0].startswith("stamps:app: required in prod")


def test_dev_falls_back_to_an_image_that_serves_its_probes(stack_file: StackFile) -> None:
    def dev(cfg: dict[str, Any]) -> None:
        cfg.pop("stamps:app")
        cfg["stamps:environment"] = "dev"

    plan = plan_stack(ROOT, "dev", stack_file(dev))
    app = plan.get("azure-native:app:ContainerApp", "cell-retail-eus-app")["inputs"]
    container = app["template"]["containers"][0]
    # The published sample: `:latest` on port 80 (container-apps/tutorial-deploy-first-app-cli).
    assert container["image"] == "mcr.microsoft.com/azuredocs/containerapps-helloworld:latest"
    assert app["configuration"]["ingress"]["targetPort"] == 80
    assert {(p["httpGet"]["path"], p["httpGet"]["port"]) for p in container["probes"]} == {("/", 80)}


SUFFIX = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")


def _apps(plan: Plan) -> dict[str, dict[str, Any]]:
    return {a["name"]: a["inputs"] for a in plan.by_type("azure-native:app:ContainerApp")}


def test_every_template_change_gets_a_new_revision_suffix(prod_plan: Plan, stack_file: StackFile) -> None:
    def fail_over(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"][0]["servingFrom"] = "dr"

    after = _apps(plan_stack(ROOT, "prod", stack_file(fail_over)))
    before = _apps(prod_plan)
    for name, app in after.items():
        same_template = {k: v for k, v in app["template"].items() if k != "revisionSuffix"} == \
            {k: v for k, v in before[name]["template"].items() if k != "revisionSuffix"}
        # Azure: "revision with suffix already exists" when a changed template re-uses a suffix.
        assert (app["template"]["revisionSuffix"] == before[name]["template"]["revisionSuffix"]) is same_template, name
        assert SUFFIX.match(app["template"]["revisionSuffix"])
        assert len(f"{app['containerAppName']}--{app['template']['revisionSuffix']}") <= 63
    assert sum(a["template"]["revisionSuffix"] != before[n]["template"]["revisionSuffix"]
               for n, a in after.items()) == 3  # the three standbys scale up


def test_a_canary_shifts_traffic_between_revisions_that_exist(prod_plan: Plan, stack_file: StackFile) -> None:
    def canary(cfg: dict[str, Any]) -> None:
        cfg["stamps:cells"][1]["canary"] = {"version": "1.1.0", "weight": 10}

    released = _apps(plan_stack(ROOT, "prod", stack_file(canary)))["cell-retail-eus-app"]
    deployed_before = _apps(prod_plan)["cell-retail-eus-app"]
    weights = {w["label"]: w for w in released["configuration"]["ingress"]["traffic"]}
    name = released["containerAppName"]
    # The candidate is the revision this update creates; the stable one is the revision deployed before it.
    assert weights["candidate"]["revisionName"] == f"{name}--{released['template']['revisionSuffix']}"
    assert weights["stable"]["revisionName"] == f"{name}--{deployed_before['template']['revisionSuffix']}"
    assert (weights["candidate"]["weight"], weights["stable"]["weight"]) == (10, 90)


# --- 4. identities ------------------------------------------------------------------------------------------------
def _role_assignments(plan: Plan) -> list[dict[str, Any]]:
    return [r["inputs"] for r in plan.by_type("azure-native:authorization:RoleAssignment")]


def test_operators_and_cell_apps_hold_cosmos_data_plane_roles(prod_plan: Plan) -> None:
    account = prod_plan.get("azure-native:cosmosdb:DatabaseAccount", "global-cosmos")["inputs"]
    assert account["disableLocalAuth"] is True  # keys are off: only data-plane roles grant item access
    grants = [r["inputs"] for r in prod_plan.by_type("azure-native:cosmosdb:SqlResourceSqlRoleAssignment")]
    by_role = {}
    for g in grants:
        by_role.setdefault(g["roleDefinitionId"].rsplit("/", 1)[-1], []).append(g)
        assert g["scope"].endswith("/dbs/globaldb/colls/tenants")
    writers = {g["principalId"] for g in by_role[COSMOS_ROLE_IDS["Cosmos DB Built-in Data Contributor"]]}
    assert writers == {op["objectId"] for op in prod_config()["config"]["stamps:operators"]}
    assert len(by_role[COSMOS_ROLE_IDS["Cosmos DB Built-in Data Reader"]]) == 7  # every CELL app


def test_every_app_sends_telemetry_with_entra_auth(prod_plan: Plan) -> None:
    component = prod_plan.get("azure-native:applicationinsights:Component", "global-appi")
    assert component["inputs"]["disableLocalAuth"] is True
    publishers = [ra for ra in _role_assignments(prod_plan)
                  if ra["roleDefinitionId"].endswith(ROLE_IDS["Monitoring Metrics Publisher"])]
    assert len(publishers) == 7 and all("/components/" in ra["scope"] for ra in publishers)
    for app in prod_plan.by_type("azure-native:app:ContainerApp"):
        env = {e["name"]: e["value"] for e in app["inputs"]["template"]["containers"][0]["env"]}
        assert env["APPLICATIONINSIGHTS_CONNECTION_STRING"].startswith("InstrumentationKey=")
        # A user-assigned identity is named by its client id (azure-monitor/app/azure-ad-authentication).
        (identity,) = _identities(prod_plan, app)
        assert env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"Authorization=AAD;ClientId={identity['clientId']}"
        assert env["AZURE_CLIENT_ID"] == identity["clientId"]


def _identities(plan: Plan, consumer: dict[str, Any]) -> list[dict[str, Any]]:
    """The user-assigned identities a resource runs as, with the ids Azure gave them."""
    ids = set((consumer["inputs"].get("identity") or {}).get("userAssignedIdentities") or [])
    return [{**r["inputs"], "urn": r["urn"], "id": _mock_id(r), "clientId": _mock(r, "client"),
             "principalId": _mock(r, "principal")}
            for r in plan.by_type("azure-native:managedidentity:UserAssignedIdentity") if _mock_id(r) in ids]


def _mock_id(r: dict[str, Any]) -> str:
    from stamps.offline.mocks import ARM_IDS, SUBSCRIPTION_ID

    return ARM_IDS[r["type"]].format(sub=SUBSCRIPTION_ID, **r["inputs"])


def _mock(r: dict[str, Any], what: str) -> str:
    from stamps.offline.mocks import _uuid

    return _uuid(_mock_id(r), what)


# --- role propagation: every consumer of a fresh role waits for it ------------------------------------------------
def _role_consumers(plan: Plan) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each resource that uses a data-plane role when it is created, with those roles: a gateway its Key Vault
    role (granted to its identity), an app every role granted to the identity it runs as."""
    roles = plan.by_type("azure-native:authorization:RoleAssignment") + \
        plan.by_type("azure-native:cosmosdb:SqlResourceSqlRoleAssignment")
    out = []
    for consumer in plan.by_type("azure-native:network:ApplicationGateway") + \
            plan.by_type("azure-native:app:ContainerApp"):
        principals = {i["principalId"] for i in _identities(plan, consumer)}
        assert principals, f"{consumer['name']} runs as no user-assigned identity"
        out.append((consumer, [r for r in roles if r["inputs"]["principalId"] in principals]))
    return out


def test_every_consumer_of_a_fresh_role_waits_for_its_propagation(prod_plan: Plan, stack_file: StackFile) -> None:
    def fail_over(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"][0]["servingFrom"] = "dr"

    for plan in (prod_plan, plan_stack(ROOT, "prod", stack_file(fail_over))):
        sleeps = {s["urn"]: s for s in plan.by_type(SLEEP_TYPE)}
        consumers = _role_consumers(plan)
        assert len(consumers) == 2 + 7  # two gateways, seven CELL apps
        for consumer, roles in consumers:
            kinds = {r["inputs"]["roleDefinitionId"].rsplit("/", 1)[-1] for r in roles}
            if consumer["type"].endswith("ApplicationGateway"):
                assert kinds == {ROLE_IDS["Key Vault Secrets User"]}
            else:
                assert kinds == {ROLE_IDS["Storage Blob Data Contributor"], ROLE_IDS["Monitoring Metrics Publisher"],
                                 COSMOS_ROLE_IDS["Cosmos DB Built-in Data Reader"]}
            waits = [sleeps[u] for u in consumer["dependencies"] if u in sleeps]
            for role in roles:
                # Azure: "up to 10 minutes for changes to take effect" (RBAC troubleshooting).
                assert any(role["urn"] in w["dependencies"] and w["inputs"]["createDuration"] == ROLE_PROPAGATION
                           and _mock_id(role) in w["inputs"]["triggers"].values() for w in waits), \
                    (consumer["name"], role["name"])
    assert ROLE_PROPAGATION == "10m"


# --- 5. data protection ------------------------------------------------------------------------------------------
def test_every_sql_server_is_audited_to_log_analytics_and_defended(prod_plan: Plan) -> None:
    servers = {r["inputs"]["serverName"] for r in prod_plan.by_type("azure-native:sql:Server")}
    audits = {r["inputs"]["serverName"]: r["inputs"]
              for r in prod_plan.by_type("azure-native:sql:ExtendedServerBlobAuditingPolicy")}
    assert set(audits) == servers
    assert all(a["state"] == "Enabled" and a["isAzureMonitorTargetEnabled"] is True for a in audits.values())
    master = {d["inputs"]["resourceUri"].split("/servers/")[1].split("/")[0]
              for d in prod_plan.by_type("azure-native:monitor:DiagnosticSetting")
              if d["inputs"]["resourceUri"].endswith("/databases/master")
              and {"category": "SQLSecurityAuditEvents", "enabled": True} in d["inputs"]["logs"]}
    assert master == servers
    alerts = {r["inputs"]["serverName"] for r in prod_plan.by_type("azure-native:sql:ServerSecurityAlertPolicy")
              if r["inputs"]["state"] == "Enabled"}
    assert alerts == servers


def test_cosmos_is_network_restricted_with_continuous_backup(prod_plan: Plan) -> None:
    c = prod_plan.get("azure-native:cosmosdb:DatabaseAccount", "global-cosmos")["inputs"]
    assert c["publicNetworkAccess"] == "Disabled" or (c["isVirtualNetworkFilterEnabled"] and c["ipRules"])
    assert c["backupPolicy"]["type"] == "Continuous"


def test_geo_replicated_cells_keep_geo_redundant_blobs_with_point_in_time_restore(prod_plan: Plan) -> None:
    standbys = {r["name"].split("-")[1] for r in prod_plan.by_type("azure-native:sql:Database")
                if r["inputs"].get("createMode") == "Secondary"}
    for st in prod_plan.by_type("azure-native:storage:StorageAccount"):
        cell, code = st["name"].split("-")[1], st["name"].split("-")[2]
        if cell in standbys and code == "eus":
            assert st["inputs"]["sku"]["name"] in ("Standard_GZRS", "Standard_GRS"), st["name"]
    for blob in prod_plan.by_type("azure-native:storage:BlobServiceProperties"):
        i = blob["inputs"]
        assert i["isVersioningEnabled"] and i["changeFeed"]["enabled"] and i["restorePolicy"]["enabled"]
        assert i["restorePolicy"]["days"] < i["deleteRetentionPolicy"]["days"]
    # One account per primary CELL: a standby keeps none of its own (it uses its primary's, see below).
    assert len(prod_plan.by_type("azure-native:storage:BlobServiceProperties")) == 4
    assert len(prod_plan.by_type("azure-native:storage:StorageAccount")) == 4


def test_the_banking_premium_database_is_zone_redundant(prod_plan: Plan) -> None:
    db = prod_plan.get("azure-native:sql:Database", "cell-banking-eus-db")["inputs"]
    assert db["sku"]["name"] == "P2" and db["zoneRedundant"] is True


def _minutes(duration: str) -> float:
    """A Go duration as the engine parses customTimeouts (`90m`, `1h30m`, `45s`) in minutes."""
    assert re.fullmatch(r"(\d+(\.\d+)?(h|m|s))+", duration), duration
    unit = {"h": 60.0, "m": 1.0, "s": 1 / 60}
    return sum(float(n) * unit[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|m|s)", duration))


def _create_minutes_azure_needs(r: dict[str, Any]) -> float:
    """How long Azure may take to create the resource, per Microsoft Learn and the issue's measurements."""
    if r["type"] == "azure-native:apimanagement:ApiManagementService":
        # A Premium instance takes 30-40 minutes (quickstart), 45-90+ with a second region; every further region
        # is another infrastructure change of "15 minutes or longer" done one after another (deploy-multi-region):
        # 45 minutes per gateway region.
        return 45.0 * (1 + len(r["inputs"].get("additionalLocations") or []))
    if r["type"] in ("azure-native:sql:Server", "azure-native:sql:Database"):
        # A geo-secondary seeds the whole primary, a zone-redundant Premium database builds replicas in three zones.
        return 60.0
    if r["type"] == "azure-native:network:ApplicationGateway":
        # A WAF_v2 gateway in three zones, reading its certificate from Key Vault.
        return 30.0
    return 0.0


SLOW_TYPES = ("azure-native:apimanagement:ApiManagementService", "azure-native:sql:Server",
              "azure-native:sql:Database", "azure-native:network:ApplicationGateway")


@pytest.mark.parametrize("fleet", ["prod", "L"])
def test_slow_resources_are_registered_with_custom_timeouts(fleet: str, prod_plan: Plan,
                                                            stack_file: StackFile) -> None:
    plan = prod_plan if fleet == "prod" else cached_plan(ROOT, "prod", stack_file(doc=fleet_doc(fleet)))
    slow = [r for r in plan.custom() if r["type"] in SLOW_TYPES]
    assert len({r["type"] for r in slow}) == len(SLOW_TYPES)
    for r in slow:
        # What the engine receives in RegisterResourceRequest.customTimeouts and hands to the provider.
        timeouts = r.get("customTimeouts") or {}
        assert _minutes(timeouts.get("create", "0s")) >= _create_minutes_azure_needs(r), (r["name"], timeouts)
        assert _minutes(timeouts.get("update", "0s")) >= _create_minutes_azure_needs(r), (r["name"], timeouts)
        assert "delete" in timeouts, r["name"]
    # Timeouts go only where they are needed: nothing else carries one.
    assert {r["type"] for r in plan.resources if r.get("customTimeouts")} == set(SLOW_TYPES)
    apim = plan.by_type("azure-native:apimanagement:ApiManagementService")[0]
    assert len(apim["inputs"]["additionalLocations"]) == (1 if fleet == "prod" else 3)


# --- 6. rebuilds -------------------------------------------------------------------------------------------------
def test_the_plan_warns_which_names_a_destroy_leaves_reserved(stack_file: StackFile,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    def suffix(cfg: dict[str, Any]) -> None:
        cfg["stamps:nameSuffix"] = "b42c1"

    plan_stack(ROOT, "prod", stack_file(suffix))
    err = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "names reserved after a destroy: Key Vaults kv-prod-eus-b42c1, kv-prod-wus-b42c1" in err
    assert "API Management apim-stamps-prod-b42c1 (48 hours)" in err and "stamps:nameSuffix" in err


def test_api_management_can_undelete_its_soft_deleted_instance(stack_file: StackFile) -> None:
    def restore(cfg: dict[str, Any]) -> None:
        cfg["stamps:apiManagement"]["restore"] = True

    plan = plan_stack(ROOT, "prod", stack_file(restore))
    assert plan.get("azure-native:apimanagement:ApiManagementService", "global-apim")["inputs"]["restore"] is True


# --- regional hardening (AZURE_REVIEW S6, S7, S8) ----------------------------------------------------------------
def test_blob_reads_writes_and_deletes_reach_the_workspace(prod_plan: Plan) -> None:
    blob_logs = {d["inputs"]["resourceUri"].split("/storageAccounts/")[1].split("/")[0]
                 for d in prod_plan.by_type("azure-native:monitor:DiagnosticSetting")
                 if d["inputs"]["resourceUri"].endswith("/blobServices/default")
                 and {c["category"] for c in d["inputs"]["logs"]} == {"StorageRead", "StorageWrite", "StorageDelete"}}
    assert blob_logs == {s["inputs"]["accountName"] for s in prod_plan.by_type("azure-native:storage:StorageAccount")}


def test_the_automation_account_is_reachable_over_private_endpoints(prod_plan: Plan) -> None:
    for region in ("eastus", "westus"):
        account = prod_plan.get("azure-native:automation:AutomationAccount", f"region-{region}-aa")["inputs"]
        assert account["publicNetworkAccess"] is False
        groups = {pe["inputs"]["privateLinkServiceConnections"][0]["groupIds"][0]
                  for pe in prod_plan.by_type("azure-native:network:PrivateEndpoint")
                  if "/automationAccounts/" in pe["inputs"]["privateLinkServiceConnections"][0]["privateLinkServiceId"]
                  and pe["inputs"]["location"] == region}
        assert groups == {"Webhook", "DSCAndHybridWorker"}
    zones = {z["inputs"]["privateZoneName"] for z in prod_plan.by_type("azure-native:privatedns:PrivateZone")}
    assert {"privatelink.azure-automation.net", "privatelink.documents.azure.com"} <= zones


def test_the_waf_runs_the_current_default_rule_set(prod_plan: Plan) -> None:
    for waf in prod_plan.by_type("azure-native:network:WebApplicationFirewallPolicy"):
        sets = {(m["ruleSetType"], m["ruleSetVersion"]) for m in waf["inputs"]["managedRules"]["managedRuleSets"]}
        assert ("Microsoft_DefaultRuleSet", "2.2") in sets and not any(t == "OWASP" for t, _ in sets)


# --- a failover finds the CELL's blobs -------------------------------------------------------------------------------
def test_after_a_failover_the_standby_app_uses_the_geo_replicated_account(stack_file: StackFile) -> None:
    def fail_over(cfg: dict[str, Any]) -> None:
        cfg["stamps:regions"][0]["servingFrom"] = "dr"

    plan = plan_stack(ROOT, "prod", stack_file(fail_over))
    accounts = {r["inputs"]["accountName"]: r for r in plan.by_type("azure-native:storage:StorageAccount")}
    standbys = [a for a in plan.by_type("azure-native:app:ContainerApp")
                if a["inputs"]["tags"]["role"] == "standby"]
    assert len(standbys) == 3
    for app in standbys:
        inputs = app["inputs"]
        cell, region = inputs["tags"]["cell"], inputs["location"]
        env = {e["name"]: e["value"] for e in inputs["template"]["containers"][0]["env"]}
        assert inputs["template"]["scale"]["minReplicas"] >= 1  # it serves now
        # Its blobs are the primary's account: Azure replicates GZRS/GRS to the primary region's pair, and an
        # account failover makes that copy the primary under the same name and endpoint.
        name = env["STORAGE_BLOB_ENDPOINT"].removeprefix("https://").split(".")[0]
        account = accounts[name]["inputs"]
        assert account["tags"]["cell"] == cell and account["tags"]["role"] == "primary"
        assert account["sku"]["name"] in ("Standard_GZRS", "Standard_GRS", "Standard_RAGZRS", "Standard_RAGRS")
        assert cap.PAIRED_REGIONS[account["location"]] == region
        account_id = _mock_id(accounts[name])
        # The app's identity may use it (shared keys are off)...
        (identity,) = _identities(plan, app)
        assert any(r["inputs"]["scope"] == account_id and r["inputs"]["principalId"] == identity["principalId"]
                   and r["inputs"]["roleDefinitionId"].endswith(ROLE_IDS["Storage Blob Data Contributor"])
                   for r in plan.by_type("azure-native:authorization:RoleAssignment"))
        # ...and reach it: the account has no public network access; a private endpoint in the DR region's network.
        assert account["publicNetworkAccess"] == "Disabled"
        assert any(pe["inputs"]["location"] == region and pe["inputs"]["privateLinkServiceConnections"][0] ==
                   {"privateLinkServiceId": account_id, "groupIds": ["blob"],
                    "name": pe["inputs"]["privateLinkServiceConnections"][0]["name"]}
                   for pe in plan.by_type("azure-native:network:PrivateEndpoint"))
    # No standby keeps an (empty) account of its own.
    assert {a["inputs"]["tags"]["role"] for a in accounts.values()} == {"primary"}
