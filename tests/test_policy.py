"""Each policy of the pack with a passing and a failing resource, through the real analyzer protocol.

One pack process per module, started as the Pulumi CLI starts it (`python -m pulumi.policy <engine> .` in
policy/); hand-made resources go through Analyze / AnalyzeStack in the engine's wire form, so the policies
run inside the pulumi-policy runtime exactly as they would under `pulumi preview --policy-pack policy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from policy.stamps_policies import protection, tagging
from stamps.offline.plan import SECRET, UNKNOWN
from stamps.policycheck import PackProject, PolicyPackProcess, StackContext
from stamps.policycheck.config import LEVEL_NAMES, reconcile, to_request
from stamps.policycheck.report import strip_description
from stamps.policycheck.wire import analyze_request, stack_resource_message

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "policy"
AN = "azure-native:"

GOOD_TAGS = {"environment": "prod", "layer": "global", "cost-center": "cc-1"}


def cell_tags(cell: str, region: str, role: str = "primary", tenancy: str = "shared") -> dict[str, str]:
    return {"environment": "prod", "layer": "cell", "cost-center": "cc-1", "cell": cell, "region": region,
            "role": role, "tenancy": tenancy}


def res(typ: str, name: str, inputs: dict[str, Any] | None = None, *, parents: tuple[str, ...] = (),
        deps: tuple[str, ...] = (), prop_deps: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """A plan resource; `parents` are ancestor component types, as they appear in the URN."""
    return {"urn": f"urn:pulumi:unit::stamps::{'$'.join([*parents, typ])}::{name}", "type": typ, "name": name,
            "parent": None, "custom": True, "inputs": inputs or {}, "dependencies": list(deps),
            "propertyDependencies": prop_deps or {}}


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPackProcess]:
    with PolicyPackProcess(PackProject.load(PACK), StackContext(project="stamps", stack="unit")) as p:
        p.configure(to_request(reconcile(p.analyzer_info(), {})))
        yield p


# The deploy-and-protect rules (protection.py) need resources these fixtures do not build (auditing policies,
# blob services, role assignments); they have their own fixtures in test_policy_protection.py.
PROTECTION = frozenset(p.name for p in protection.policies())


def analyze(pack: PolicyPackProcess, resource: dict[str, Any],
            skip: frozenset[str] = PROTECTION) -> dict[str, list[str]]:
    """policy name -> messages for one resource."""
    out: dict[str, list[str]] = {}
    for d in pack.analyze(analyze_request(resource)):
        if d.policyName not in skip:
            out.setdefault(d.policyName, []).append(strip_description(d.message, d.description))
    return out


def analyze_stack(pack: PolicyPackProcess, resources: list[dict[str, Any]],
                  skip: frozenset[str] = PROTECTION) -> dict[str, list[tuple[str, str]]]:
    """policy name -> (resource name, message) for a stack."""
    names = {r["urn"]: r["name"] for r in resources}
    out: dict[str, list[tuple[str, str]]] = {}
    for d in pack.analyze_stack(stack_resource_message(r) for r in resources):
        if d.policyName not in skip:
            out.setdefault(d.policyName, []).append((names.get(d.urn, ""),
                                                     strip_description(d.message, d.description)))
    return out


# --- the pack's policies and their levels -------------------------------------------------------------------
def test_policies_and_enforcement_levels(pack: PolicyPackProcess) -> None:
    info = pack.analyzer_info()
    levels = {p.name: LEVEL_NAMES[p.enforcementLevel] for p in info.policies}
    assert info.name == "stamps-policies"
    assert {k for k, v in levels.items() if v == "advisory"} == {"cost-apim-premium-prod-only", "cost-sql-sku-ceiling",
                                                                  "cells-without-standby"}
    assert set(levels) == {
        "sql-public-network-disabled", "sql-entra-only-auth", "sql-min-tls-1-2", "storage-https-only",
        "storage-min-tls-1-2", "storage-no-public-blob-access", "keyvault-purge-protection", "keyvault-soft-delete",
        "keyvault-rbac-authorization", "required-tags", "allowed-regions", "apim-tier-product-limits",
        "apim-tenant-header-override", "apim-tier-tenant-header", "cell-alerts", "cell-diagnostics",
        "dr-standby-region", "dedicated-tenant-isolation", "cost-apim-premium-prod-only", "cost-sql-sku-ceiling",
        "cosmos-network-restricted", "cosmos-continuous-backup", "sql-auditing", "sql-defender",
        "storage-geo-redundancy", "blob-point-in-time-restore", "data-plane-roles", "role-propagation-wait",
        "zone-support", "gateway-certificate-and-role", "keyvault-writes-through-arm", "keyvault-data-plane-roles",
        "region-access",
        "traffic-through-api-management", "cells-without-standby",
    }
    assert {k for k, v in levels.items() if v == "mandatory"} == set(levels) - {
        "cost-apim-premium-prod-only", "cost-sql-sku-ceiling", "cells-without-standby"}
    schemas = {p.name for p in info.policies if p.HasField("configSchema") and p.configSchema.properties}
    assert {"allowed-regions", "required-tags", "cell-alerts", "cost-sql-sku-ceiling"} <= schemas


# --- Azure SQL -----------------------------------------------------------------------------------------------
def sql_server(**overrides: Any) -> dict[str, Any]:
    inputs = {"location": "eastus", "tags": GOOD_TAGS, "minimalTlsVersion": "1.2", "publicNetworkAccess": "Disabled",
              "administrators": {"administratorType": "ActiveDirectory", "azureADOnlyAuthentication": True,
                                 "login": "sg-sql", "sid": "6c1d3a52-9f0e-4c47-8a5e-2b7d8f1e4c90"}}
    inputs.update(overrides)
    return res(AN + "sql:Server", "sql", inputs)


def test_hardened_sql_server_passes(pack: PolicyPackProcess) -> None:
    assert analyze(pack, sql_server()) == {}


@pytest.mark.parametrize(("overrides", "policy", "fragment"), [
    ({"publicNetworkAccess": "Enabled"}, "sql-public-network-disabled", "'Enabled'"),
    ({"publicNetworkAccess": None}, "sql-public-network-disabled", "None"),
    ({"administrators": {"administratorType": "ActiveDirectory", "azureADOnlyAuthentication": False}},
     "sql-entra-only-auth", "azureADOnlyAuthentication is not true"),
    ({"administrators": None, "administratorLogin": "sa"}, "sql-entra-only-auth", "SQL logins stay usable"),
    ({"minimalTlsVersion": "1.0"}, "sql-min-tls-1-2", "'1.0'"),
])
def test_sql_server_violations(pack: PolicyPackProcess, overrides: dict[str, Any], policy: str,
                               fragment: str) -> None:
    found = analyze(pack, sql_server(**overrides))
    assert list(found) == [policy]
    assert fragment in found[policy][0]


def test_a_secret_admin_password_reaches_the_policy_as_a_set_value(pack: PolicyPackProcess) -> None:
    # The plan redacts secrets; on the wire they are secret objects, which the runtime unwraps.
    found = analyze(pack, sql_server(administratorLoginPassword=SECRET))
    assert found == {"sql-entra-only-auth": ["administratorLoginPassword is set: Entra-only servers have no SQL "
                                             "admin password"]}


def test_an_unknown_value_is_reported_as_cannot_check_during_preview(pack: PolicyPackProcess) -> None:
    diags = pack.analyze(analyze_request(sql_server(publicNetworkAccess=UNKNOWN)))
    assert [(d.policyName, LEVEL_NAMES[d.enforcementLevel]) for d in diags] == \
        [("sql-public-network-disabled", "advisory")]
    assert "can't run policy 'sql-public-network-disabled'" in diags[0].message
    assert "publicNetworkAccess can't be known during preview" in diags[0].message


# --- Storage -------------------------------------------------------------------------------------------------
def storage(**overrides: Any) -> dict[str, Any]:
    inputs = {"location": "eastus", "tags": GOOD_TAGS, "enableHttpsTrafficOnly": True,
              "minimumTlsVersion": "TLS1_2", "allowBlobPublicAccess": False}
    inputs.update(overrides)
    return res(AN + "storage:StorageAccount", "st", inputs)


def test_hardened_storage_passes(pack: PolicyPackProcess) -> None:
    assert analyze(pack, storage()) == {}


@pytest.mark.parametrize(("overrides", "policy"), [
    ({"enableHttpsTrafficOnly": False}, "storage-https-only"),
    ({"minimumTlsVersion": "TLS1_0"}, "storage-min-tls-1-2"),
    ({"minimumTlsVersion": None}, "storage-min-tls-1-2"),
    ({"allowBlobPublicAccess": True}, "storage-no-public-blob-access"),
    ({"allowBlobPublicAccess": None}, "storage-no-public-blob-access"),
])
def test_storage_violations(pack: PolicyPackProcess, overrides: dict[str, Any], policy: str) -> None:
    assert list(analyze(pack, storage(**overrides))) == [policy]


# --- Key Vault -----------------------------------------------------------------------------------------------
def vault(**flags: Any) -> dict[str, Any]:
    props = {"tenantId": "t", "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": True,
             "enableSoftDelete": True, "enablePurgeProtection": True, **flags}
    return res(AN + "keyvault:Vault", "kv", {"location": "eastus", "tags": GOOD_TAGS, "properties": props})


def test_hardened_vault_passes(pack: PolicyPackProcess) -> None:
    assert analyze(pack, vault()) == {}


@pytest.mark.parametrize(("flag", "policy"), [
    ("enablePurgeProtection", "keyvault-purge-protection"),
    ("enableSoftDelete", "keyvault-soft-delete"),
    ("enableRbacAuthorization", "keyvault-rbac-authorization"),
])
def test_vault_violations(pack: PolicyPackProcess, flag: str, policy: str) -> None:
    found = analyze(pack, vault(**{flag: False}))
    assert list(found) == [policy]
    assert found[policy][0].startswith(f"properties.{flag} is False: set it to true")


# --- Tags ----------------------------------------------------------------------------------------------------
def test_required_tags(pack: PolicyPackProcess) -> None:
    rg = AN + "resources:ResourceGroup"
    assert analyze(pack, res(rg, "rg", {"location": "eastus", "tags": GOOD_TAGS})) == {}
    missing = {k: v for k, v in GOOD_TAGS.items() if k != "cost-center"}
    assert analyze(pack, res(rg, "rg", {"location": "eastus", "tags": missing})) == \
        {"required-tags": ["missing tags: cost-center"]}
    assert analyze(pack, res(rg, "rg", {"location": "eastus"})) == \
        {"required-tags": ["missing tags: environment, layer, cost-center"]}
    assert analyze(pack, res(rg, "rg", {"location": "eastus", "tags": {**GOOD_TAGS, "layer": " "}})) == \
        {"required-tags": ["empty tags: layer"]}


def test_cell_resources_also_carry_cell_and_region(pack: PolicyPackProcess) -> None:
    app = AN + "app:ContainerApp"
    assert analyze(pack, res(app, "app", {"location": "eastus", "tags": cell_tags("retail", "eastus")})) == {}
    # Inside a stamps:cell:Cell component, whatever its layer tag says.
    inside = res(app, "app", {"location": "eastus", "tags": GOOD_TAGS},
                 parents=("stamps:regional:Region", "stamps:cell:Cell"))
    assert analyze(pack, inside) == {"required-tags": ["missing tags on a CELL resource: cell, region"]}


def test_types_without_arm_tags_are_exempt(pack: PolicyPackProcess) -> None:
    # Derived from the SDK's args classes: no `tags` parameter, or (named values) a list of labels.
    diag = res(AN + "monitor:DiagnosticSetting", "diag", {"resourceUri": "/x", "workspaceId": "/w"})
    named = res(AN + "apimanagement:NamedValue", "nv", {"value": "v", "tags": ["label"]})
    role = res(AN + "authorization:RoleAssignment", "ra", {"scope": "/x"})
    assert [analyze(pack, r) for r in (diag, named, role)] == [{}, {}, {}]
    # ...while a taggable type of a module the project does not use yet is checked.
    assert list(analyze(pack, res(AN + "eventhub:Namespace", "ns", {"location": "eastus"}))) == ["required-tags"]


# --- Regions -------------------------------------------------------------------------------------------------
def test_allowed_regions(pack: PolicyPackProcess) -> None:
    rg = AN + "resources:ResourceGroup"
    assert analyze(pack, res(rg, "a", {"location": "East US", "tags": GOOD_TAGS})) == {}
    assert analyze(pack, res(AN + "cdn:Profile", "afd", {"location": "global", "tags": GOOD_TAGS})) == {}
    assert analyze(pack, res(rg, "b", {"location": "northeurope", "tags": GOOD_TAGS})) == \
        {"allowed-regions": ["location is 'northeurope', outside the allowed regions (eastus, westus)"]}
    apim = res(AN + "apimanagement:ApiManagementService", "apim", {
        "location": "eastus", "tags": GOOD_TAGS, "sku": {"name": "Standard", "capacity": 1},
        "additionalLocations": [{"location": "westus"}, {"location": "West Europe"}]})
    assert analyze(pack, apim) == {"allowed-regions": [
        "additionalLocations[1].location is 'West Europe', outside the allowed regions (eastus, westus)"]}
    cosmos = res(AN + "cosmosdb:DatabaseAccount", "cosmos", {
        "location": "eastus", "tags": GOOD_TAGS, "locations": [{"locationName": "uksouth", "failoverPriority": 0}]})
    assert list(analyze(pack, cosmos)) == ["allowed-regions"]


# --- API Management ------------------------------------------------------------------------------------------
def policy_xml(inbound: str) -> str:
    return f"<policies><inbound><base />{inbound}</inbound><backend><base /></backend><outbound><base /></outbound>" \
           "<on-error><base /></on-error></policies>"


HOURLY = '<quota-by-key calls="10000" renewal-period="3600" counter-key="@(context.Subscription.Id)" />'
DAILY = '<quota calls="100000" renewal-period="86400" />'
STAMP = '<set-header name="X-Tenant-ID" exists-action="override"><value>@(context.Subscription.Id)</value></set-header>'


def product_policy(inbound: str, name: str = "pp", product: str = "basic-tier", **extra: Any) -> dict[str, Any]:
    return res(AN + "apimanagement:ProductPolicy", name, {
        "serviceName": "apim", "productId": product, "policyId": "policy", "format": "xml",
        "value": policy_xml(inbound), **extra})


@pytest.mark.parametrize("inbound", [
    HOURLY + DAILY + STAMP,
    '<rate-limit calls="100" renewal-period="60" />' + DAILY,
    '<rate-limit-by-key calls="{{tier-calls}}" renewal-period="300" counter-key="@(context.Subscription.Id)" />'
    + DAILY,
])
def test_tier_product_limits_pass(pack: PolicyPackProcess, inbound: str) -> None:
    assert analyze(pack, product_policy(inbound)) == {}


@pytest.mark.parametrize(("inbound", "fragment"), [
    (DAILY, "no unconditional rate limit"),
    (HOURLY, "no unconditional <quota> renewing after 86400s"),
    (f"<choose><when condition=\"@(true)\">{HOURLY}</when></choose>{DAILY}", "no unconditional rate limit"),
    ('<rate-limit calls="0" renewal-period="60" />' + DAILY, "<rate-limit> needs positive calls"),
])
def test_tier_product_limits_fail(pack: PolicyPackProcess, inbound: str, fragment: str) -> None:
    found = analyze(pack, product_policy(inbound))
    assert list(found) == ["apim-tier-product-limits"]
    assert any(fragment in m for m in found["apim-tier-product-limits"]), found


def test_malformed_or_linked_product_policy_fails(pack: PolicyPackProcess) -> None:
    broken = product_policy(HOURLY + DAILY)
    broken["inputs"]["value"] = "<policies><inbound>"
    assert "not well-formed XML" in analyze(pack, broken)["apim-tier-product-limits"][0]
    linked = product_policy("", format="xml-link")
    linked["inputs"]["value"] = "https://example.com/policy.xml"
    assert "cannot be verified" in analyze(pack, linked)["apim-tier-product-limits"][0]


@pytest.mark.parametrize(("header", "fragment"), [
    ('<set-header name="X-Tenant-ID" exists-action="append"><value>@(context.Subscription.Id)</value></set-header>',
     'exists-action="append"'),
    ('<set-header name="x-tenant-id"><value>@(context.Subscription.Id)</value></set-header>', "no exists-action"),
    ('<set-header name="X-Tenant-ID" exists-action="override"><value>'
     '@(context.Request.Headers.GetValueOrDefault("X-Tenant-ID",""))</value></set-header>',
     "computed from the request"),
])
def test_spoofable_tenant_header_fails(pack: PolicyPackProcess, header: str, fragment: str) -> None:
    api_policy = res(AN + "apimanagement:ApiPolicy", "api-policy", {
        "serviceName": "apim", "apiId": "tenant-api", "policyId": "policy", "format": "xml",
        "value": policy_xml(header)})
    found = analyze(pack, api_policy)
    assert list(found) == ["apim-tenant-header-override"]
    assert fragment in found["apim-tenant-header-override"][0]
    # The same element in a product policy, conditional or not, is just as spoofable.
    inside_choose = f'<choose><when condition="@(true)">{header}</when></choose>'
    assert "apim-tenant-header-override" in analyze(pack, product_policy(HOURLY + DAILY + inside_choose))


def apim_stack(product_inbound: str, api_inbound: str | None) -> list[dict[str, Any]]:
    product = res(AN + "apimanagement:Product", "product-basic", {"serviceName": "apim", "productId": "basic-tier"})
    resources = [product, product_policy(product_inbound),
                 res(AN + "apimanagement:ProductApi", "link", {"serviceName": "apim", "productId": "basic-tier",
                                                             "apiId": "tenant-api"})]
    if api_inbound is not None:
        resources.append(res(AN + "apimanagement:ApiPolicy", "api-policy", {
            "serviceName": "apim", "apiId": "tenant-api", "format": "xml", "value": policy_xml(api_inbound)}))
    return resources


def test_tier_traffic_is_stamped_at_product_or_api_scope(pack: PolicyPackProcess) -> None:
    assert "apim-tier-tenant-header" not in analyze_stack(pack, apim_stack(HOURLY + DAILY + STAMP, None))
    assert "apim-tier-tenant-header" not in analyze_stack(pack, apim_stack(HOURLY + DAILY, STAMP))


@pytest.mark.parametrize("api_inbound", [None, "", f'<choose><when condition="@(true)">{STAMP}</when></choose>'])
def test_unstamped_tier_traffic_fails(pack: PolicyPackProcess, api_inbound: str | None) -> None:
    found = analyze_stack(pack, apim_stack(HOURLY + DAILY, api_inbound))
    assert found["apim-tier-tenant-header"] == [(
        "product-basic", 'product basic-tier: requests through API(s) tenant-api reach the CELLs without an '
        'unconditional <set-header name="X-Tenant-ID" exists-action="override"> at service, product or API scope')]


# --- CELL topology (stack policies) ------------------------------------------------------------------------
def cell(name: str, region: str, role: str = "primary", tenancy: str = "shared", *, alerts: bool = True,
         diag: bool = True, db: dict[str, Any] | None = None, extra_tags: dict[str, str] | None = None,
         ) -> list[dict[str, Any]]:
    """A CELL instance: app, database, storage; with alert rules and diagnostic settings on each."""
    key = f"{name}-{region}"
    tags = {**cell_tags(name, region, role, tenancy), **(extra_tags or {})}
    core = [
        res(AN + "app:ContainerApp", f"{key}-app", {"location": region, "tags": tags}),
        res(AN + "sql:Database", f"{key}-db", {"location": region, "tags": tags, "sku": {"name": "S2"},
                                               **(db or {})}),
        res(AN + "storage:StorageAccount", f"{key}-st", {"location": region, "tags": tags}),
    ]
    out = list(core)
    for target in core:
        if alerts:
            out.append(res(AN + "monitor:MetricAlert", f"{target['name']}-alert",
                           {"location": "global", "tags": tags, "enabled": role == "primary"},
                           deps=(target["urn"],)))
        if diag:
            out.append(res(AN + "monitor:DiagnosticSetting", f"{target['name']}-diag", {"workspaceId": "/w"},
                           deps=(target["urn"], "urn:pulumi:unit::stamps::workspace::log")))
    return out


def dr_pair(name: str, tenancy: str = "shared", **kw: Any) -> list[dict[str, Any]]:
    return cell(name, "eastus", "primary", tenancy, **kw) + \
        cell(name, "westus", "standby", tenancy, db={"createMode": "Secondary", "secondaryType": "Geo"})


def test_a_complete_topology_passes_every_stack_policy(pack: PolicyPackProcess) -> None:
    assert analyze_stack(pack, dr_pair("retail") + dr_pair("banking", "dedicated")) == {}


def test_cell_without_alerts_fails(pack: PolicyPackProcess) -> None:
    found = analyze_stack(pack, dr_pair("retail") + cell("solo", "eastus", alerts=False) + dr_pair("x"))
    assert found["cell-alerts"] == [("solo-eastus-app", "CELL solo (eastus, primary) has no alert rules: expected "
                                                       "MetricAlert tagged cell=solo, region=eastus")]


def test_cell_with_an_unwatched_store_fails(pack: PolicyPackProcess) -> None:
    resources = dr_pair("retail")
    resources = [r for r in resources if r["name"] != "retail-eastus-st-alert"]
    assert analyze_stack(pack, resources) == {
        "cell-alerts": [("retail-eastus-st", "CELL retail (eastus, primary): no alert rule watches its "
                                             "StorageAccount retail-eastus-st")]}


def test_cell_diagnostics(pack: PolicyPackProcess) -> None:
    resources = [r for r in dr_pair("retail") if r["name"] != "retail-westus-db-diag"]
    assert analyze_stack(pack, resources) == {"cell-diagnostics": [(
        "retail-westus-db", "CELL retail (westus, standby): Database retail-westus-db has no diagnostic setting "
                            "(its logs and metrics reach no workspace)")]}
    # Restored copies need none.
    restore = res(AN + "sql:Database", "retail-eastus-restore", {
        "tags": cell_tags("retail", "eastus"), "createMode": "PointInTimeRestore"})
    assert analyze_stack(pack, [*dr_pair("retail"), restore]) == {}


def test_diagnostics_follow_property_dependencies_when_recorded(pack: PolicyPackProcess) -> None:
    resources = dr_pair("retail")
    diag = next(r for r in resources if r["name"] == "retail-eastus-db-diag")
    # Depends on the database (e.g. depends_on) but its resourceUri comes from the storage account.
    diag["propertyDependencies"] = {"resourceUri": ["urn:pulumi:unit::stamps::" + AN + "storage:StorageAccount"
                                                    "::retail-eastus-st"]}
    assert list(analyze_stack(pack, resources)) == ["cell-diagnostics"]


def test_dr_standby_region(pack: PolicyPackProcess) -> None:
    # Primary regions without any standby fail; one CELL without a standby is allowed if the region has DR.
    assert set(analyze_stack(pack, dr_pair("retail") + cell("smb", "eastus"))) == {"cells-without-standby"}
    found = analyze_stack(pack, cell("retail", "eastus") + cell("smb", "eastus"))
    found.pop("cells-without-standby")
    assert found == {"dr-standby-region": [("retail-eastus-app", (
        "primary region eastus has no DR region: none of its CELLs (retail, smb) has a standby (Container App "
        "tagged role=standby and a geo-secondary SQL database) in another region"))]}


def test_standby_without_geo_secondary_fails(pack: PolicyPackProcess) -> None:
    resources = cell("retail", "eastus") + cell("retail", "westus", "standby")
    found = analyze_stack(pack, resources)
    assert [name for name, _ in found["dr-standby-region"]] == ["retail-westus-app", "retail-eastus-app"]
    assert "has no geo-secondary SQL database" in found["dr-standby-region"][0][1]
    # The outputs form (after an update): createMode is gone, secondaryType remains.
    outputs_form = cell("retail", "eastus") + cell("retail", "westus", "standby", db={"secondaryType": "Geo"})
    assert "dr-standby-region" not in analyze_stack(pack, outputs_form)


def routing(value: str) -> dict[str, Any]:
    return res(AN + "apimanagement:NamedValue", "routing-0", {"serviceName": "apim", "value": value,
                                                            "tags": ["stamps", "tenant-routing"]})


def test_dedicated_tenant_isolation(pack: PolicyPackProcess) -> None:
    base = dr_pair("banking", "dedicated") + dr_pair("smb")
    assert analyze_stack(pack, [*base, routing("bank=banking;a=smb;b=smb:frozen")]) == {}
    found = analyze_stack(pack, [*base, routing("bank=banking;a=smb;b=banking:frozen")])
    assert found == {"dedicated-tenant-isolation": [(
        "banking-eastus-app", "dedicated CELL banking holds 2 tenants (b, bank): a dedicated CELL serves exactly "
                              "one tenant")]}
    # Tags are a source too: the app's `tenants` tag, or any resource tagged tenant + cell.
    tagged = dr_pair("banking", "dedicated", extra_tags={"tenants": "bank, other"})
    assert list(analyze_stack(pack, tagged)) == ["dedicated-tenant-isolation"]
    extra = res(AN + "storage:StorageAccount", "other-st", {"tags": {"tenant": "other", "cell": "banking"}})
    assert list(analyze_stack(pack, [*base, routing("bank=banking"), extra])) == ["dedicated-tenant-isolation"]


def test_stack_policies_skip_values_unknown_during_preview(pack: PolicyPackProcess) -> None:
    # One unknown must not cost the whole stack check (resource policies report "can't run" instead).
    unknown_tags = res(AN + "storage:StorageAccount", "pending-st", {"tags": UNKNOWN})
    unknown_product = res(AN + "apimanagement:Product", "pending-product", {"serviceName": "apim",
                                                                           "productId": UNKNOWN})
    assert analyze_stack(pack, [*dr_pair("retail"), unknown_tags, unknown_product]) == {}
    diags = pack.analyze(analyze_request(unknown_tags))
    assert {(d.policyName, LEVEL_NAMES[d.enforcementLevel]) for d in diags} >= {("required-tags", "advisory")}


# --- cost guards (advisory) ----------------------------------------------------------------------------------
def test_apim_premium_outside_prod_is_advisory(pack: PolicyPackProcess) -> None:
    def apim(env: str, sku: str) -> dict[str, Any]:
        return res(AN + "apimanagement:ApiManagementService", "apim", {
            "location": "eastus", "tags": {**GOOD_TAGS, "environment": env}, "sku": {"name": sku, "capacity": 1}})

    assert analyze(pack, apim("prod", "Premium")) == {}
    assert analyze(pack, apim("dev", "Developer")) == {}
    diags = pack.analyze(analyze_request(apim("dev", "Premium")))
    assert [(d.policyName, LEVEL_NAMES[d.enforcementLevel]) for d in diags] == \
        [("cost-apim-premium-prod-only", "advisory")]


@pytest.mark.parametrize(("env", "sku", "flagged"), [
    ("dev", "S1", False), ("dev", "Basic", False), ("dev", "P2", True), ("dev", "GP_Gen5_2", True),
    ("staging", "S3", False), ("staging", "GP_S_Gen5_1", False), ("prod", "P15", False),
])
def test_sql_sku_ceiling(pack: PolicyPackProcess, env: str, sku: str, flagged: bool) -> None:
    db = res(AN + "sql:Database", "db", {"location": "eastus", "tags": {**GOOD_TAGS, "environment": env},
                                         "sku": {"name": sku}})
    assert ("cost-sql-sku-ceiling" in analyze(pack, db)) is flagged


# --- pure helpers of the pack --------------------------------------------------------------------------------
def test_tag_support_read_from_source_matches_the_imported_args_classes() -> None:
    types = ["azure-native:monitor:ActionGroup", "azure-native:apimanagement:NamedValue", "azure-native:sql:Server",
             "azure-native:monitor:DiagnosticSetting", "azure-native:trafficmanager:Endpoint"]
    assert [tagging._signature_from_source(t) for t in types] == [True, False, True, False, False]
    assert [tagging._signature_from_import(t) for t in types] == [True, False, True, False, False]
    assert tagging.snake_case("PublicIPAddress") == "public_ip_address"
    assert tagging.takes_tags("stamps:cell:Cell") is None


# --- traffic: nothing public reaches a CELL except through API Management -------------------------------------


def test_prod_plan_has_no_bypass(pack: PolicyPackProcess, prod_plan: Any) -> None:
    assert "traffic-through-api-management" not in analyze_stack(pack, prod_plan.resources)


def test_front_door_origin_at_a_gateway_is_blocked_by_the_pack(pack: PolicyPackProcess, prod_plan: Any) -> None:
    import copy

    resources = copy.deepcopy(prod_plan.resources)
    pip = next(r for r in resources if r["name"] == "region-eastus-agw-pip")["inputs"]
    origin = next(r for r in resources if r["name"] == "routing-afd-origin-eastus")["inputs"]
    origin["hostName"] = f"{pip['dnsSettings']['domainNameLabel']}.eastus.cloudapp.azure.com"
    found = analyze_stack(pack, resources)["traffic-through-api-management"]
    assert found == [("routing-afd-route", "Front Door AFDOrigin routing-afd-origin-eastus sends public traffic to "
                                           "ApplicationGateway region-eastus-agw without API Management")]


def test_gateway_open_to_the_internet_is_blocked_by_the_pack(pack: PolicyPackProcess, prod_plan: Any) -> None:
    import copy

    resources = copy.deepcopy(prod_plan.resources)
    waf = next(r for r in resources if r["name"] == "region-westus-waf")["inputs"]
    waf["customRules"] = [r for r in waf["customRules"] if r["action"] != "Block"]
    found = analyze_stack(pack, resources)["traffic-through-api-management"]
    assert {name for name, _ in found} == {"region-westus-agw-pip"}
    assert any("anyone on the internet reaches CELL banking@westus" in msg for _, msg in found)


def test_unknown_origin_hosts_are_not_judged_during_preview(pack: PolicyPackProcess, prod_plan: Any) -> None:
    import copy

    resources = copy.deepcopy(prod_plan.resources)
    for r in resources:
        if r["type"] == AN + "cdn:AFDOrigin":
            r["inputs"]["hostName"] = UNKNOWN
    assert "traffic-through-api-management" not in analyze_stack(pack, resources)


def test_cells_without_standby_are_reported_advisory_unless_configured_mandatory(prod_plan: Any) -> None:
    from stamps.policycheck import check_plan
    from stamps.policycheck.config import parse

    report = check_plan(prod_plan, PACK)
    found = [(v.policy, v.level, v.message) for v in report.violations]
    assert found == [("cells-without-standby", "advisory",
                      "CELL shared-smb has no standby: a failover of eastus strands its tenants (stamps-ops failover "
                      "refuses without --accept-unprotected shared-smb)")]
    assert report.exit_code == 0
    strict = check_plan(prod_plan, PACK, parse({"cells-without-standby": "mandatory"}))
    assert strict.exit_code == 3
