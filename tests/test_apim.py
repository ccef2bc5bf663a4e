"""API Management tenant access: tier limits, tenant identity, routing as data, two resources per tenant.

Policies are read back from the plan and parsed as XML, so the checks see what ARM would receive. Small
stack configs keep the plans quick; each variant differs from the base in one tenant line, so the plan
diff shows exactly what that config change costs.
"""

from __future__ import annotations

import copy
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from stamps import apim_policy as ap
from stamps.components.tenants import API_ID, OPERATION_METHODS
from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment
from stamps.offline import Plan, PlanDiff, diff_plans, plan_stack
from stamps.offline.plan import SECRET
from tests.conftest import prod_config

ROOT = Path(__file__).resolve().parents[1]
APIM = "azure-native:apimanagement:"
COMPONENT = "stamps:tenants:TenantAccess"

SMALL: dict[str, Any] = {
    "stamps:environment": "test",
    "stamps:costCenter": "cc-test",
    "stamps:owner": "tests",
    "stamps:regions": [
        {"name": "eastus", "role": "primary", "drRegion": "westus", "addressSpace": "10.10.0.0/16"},
        {"name": "westus", "role": "dr", "addressSpace": "10.20.0.0/16"},
    ],
    "stamps:apiManagement": {"sku": "Developer", "publisherEmail": "platform@contoso.com",
                             "publisherName": "Contoso"},
    "stamps:sqlAdmins": {"login": "sg-sql", "objectId": "6c1d3a52-9f0e-4c47-8a5e-2b7d8f1e4c90"},
    "stamps:tls": {"hostName": "api.contoso.com", "cellsHostName": "cells.contoso.com"},
    "stamps:app": {"image": "mcr.microsoft.com/azuredocs/containerapps-helloworld:latest", "port": 80},
    "stamps:tiers": [
        {"name": "basic", "model": "shared", "callsPerHour": 10000, "callsPerDay": 100000},
        {"name": "premium", "model": "shared", "callsPerHour": 50000, "callsPerDay": 1000000},
        {"name": "enterprise", "model": "dedicated", "callsPerHour": 200000, "callsPerDay": 5000000},
    ],
    "stamps:cells": [
        {"name": "alpha", "region": "eastus", "model": "shared", "capacity": 10},
        {"name": "beta", "region": "eastus", "model": "shared", "capacity": 10},
    ],
    "stamps:tenants": [
        {"id": "acme", "tier": "basic", "cell": "alpha", "email": "admin@acme.example"},
        {"id": "globex", "tier": "premium", "cell": "beta", "email": "ops@globex.example", "frozen": True},
    ],
    "stamps:notifications": {"email": ["sre@contoso.com"]},
    "stamps:alertWebhookUrl": {"secure": "v1:AAAA:BBBB"},
    "stamps:pagerDutyWebhookUrl": {"secure": "v1:CCCC:DDDD"},
}

# The real program plus probes: the subscription keys as the program sees them, and the options each
# Subscription was registered with (the plan records inputs, not options).
PROBE_MAIN = '''
import pulumi
from stamps.config.loader import load_environment, read_pulumi_config
from stamps.stacks.compose import build_fleet

secret_outputs = {}

def record(args):
    if args.type_ == "azure-native:apimanagement:Subscription":
        secret_outputs[args.name] = sorted(args.opts.additional_secret_outputs or [])
    return None

pulumi.runtime.register_stack_transformation(record)
parts = build_fleet(load_environment(pulumi.get_project(), pulumi.get_stack(), read_pulumi_config()))
pulumi.export("probeSecretOutputs", secret_outputs)
pulumi.export("probeKeys", {t: s.primary_key for t, s in parts.access.subscriptions.items()})
'''


def _tenants(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return cfg["stamps:tenants"]


VARIANTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "added": lambda c: _tenants(c).append({"id": "initech", "tier": "basic", "email": "it@initech.example"}),
    "moved": lambda c: _tenants(c)[0].update(cell="beta"),
    "thawed": lambda c: _tenants(c)[1].update(frozen=False),
}


def _write(path: Path, mutate: Callable[[dict[str, Any]], None] | None = None) -> Path:
    cfg = copy.deepcopy(SMALL)
    if mutate:
        mutate(cfg)
    path.write_text(yaml.safe_dump({"config": cfg}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    tmp = tmp_path_factory.mktemp("apim")
    probe = tmp / "probe"
    probe.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", probe / "Pulumi.yaml")
    (probe / "__main__.py").write_text(PROBE_MAIN)
    out = {"base": plan_stack(probe, "test", _write(tmp / "Pulumi.base.yaml"))}
    for name, mutate in VARIANTS.items():
        out[name] = plan_stack(ROOT, "test", _write(tmp / f"Pulumi.{name}.yaml", mutate))
    return out


def _policy(plan: Plan, typ: str, name: str) -> ET.Element:
    res = plan.get(APIM + typ, name)
    assert res["inputs"]["format"] == "xml"
    return ET.fromstring(res["inputs"]["value"])


def _inbound(root: ET.Element) -> ET.Element:
    inbound = root.find("inbound")
    assert inbound is not None
    # Every scope runs the enclosing scope's policy first.
    assert inbound[0].tag == "base"
    assert [c.tag for c in root] == ["inbound", "backend", "outbound", "on-error"]
    return inbound


def _returns(inbound: ET.Element) -> dict[str, ET.Element]:
    """status code → the `when` that returns it."""
    out = {}
    for when in inbound.iter("when"):
        status = when.find("return-response/set-status")
        assert status is not None
        out[status.get("code", "")] = when
    return out


# --- tiers: one product each, limits per subscription from config ------------------------------------------


@pytest.mark.parametrize("tier", SMALL["stamps:tiers"], ids=lambda t: t["name"])
def test_tier_product_limits_come_from_config(plans: dict[str, Plan], tier: dict[str, Any]) -> None:
    plan = plans["base"]
    product = plan.get(APIM + "Product", f"tenants-product-{tier['name']}")["inputs"]
    assert product["productId"] == f"{tier['name']}-tier"
    assert product["subscriptionRequired"] is True and product["approvalRequired"] is False
    assert product["state"] == "published"
    link = plan.get(APIM + "ProductApi", f"tenants-product-{tier['name']}-api")["inputs"]
    assert link == {**link, "productId": f"{tier['name']}-tier", "apiId": API_ID}

    inbound = _inbound(_policy(plan, "ProductPolicy", f"tenants-product-{tier['name']}-policy"))
    hourly, daily = inbound.find("quota-by-key"), inbound.find("quota")
    assert hourly is not None and daily is not None
    assert (hourly.get("calls"), hourly.get("renewal-period")) == (str(tier["callsPerHour"]), "3600")
    assert (daily.get("calls"), daily.get("renewal-period")) == (str(tier["callsPerDay"]), "86400")
    # The hourly counter is per subscription, so one tenant can never spend another's allowance.
    assert "context.Subscription.Id" in hourly.get("counter-key", "")
    # rate-limit windows stop at 300 s: an hourly rate-limit would be rejected by APIM at deploy time.
    for limiter in (*inbound.iter("rate-limit"), *inbound.iter("rate-limit-by-key")):
        assert int(limiter.get("renewal-period", "0")) <= 300


def test_prod_products_match_the_runbook_limits(prod_plan: Plan) -> None:
    want = {"basic": ("10000", "100000"), "premium": ("50000", "1000000"), "enterprise": ("200000", "5000000")}
    for tier, (hour, day) in want.items():
        inbound = _inbound(_policy(prod_plan, "ProductPolicy", f"tenants-product-{tier}-policy"))
        assert inbound.find("quota-by-key").get("calls") == hour  # type: ignore[union-attr]
        assert inbound.find("quota").get("calls") == day  # type: ignore[union-attr]


# --- the tenant API policy -----------------------------------------------------------------------------------


def test_tenant_api_shape(plans: dict[str, Plan]) -> None:
    plan = plans["base"]
    api = plan.get(APIM + "Api", "tenants-api")["inputs"]
    assert (api["apiId"], api["path"], api["protocols"], api["subscriptionRequired"]) == (
        API_ID, "tenant", ["https"], True)
    ops = {r["inputs"]["method"]: r["inputs"]["urlTemplate"] for r in plan.by_type(APIM + "ApiOperation")}
    assert ops == dict.fromkeys(OPERATION_METHODS, "/*")
    # The policy may only be saved once the named values it references exist.
    nv_urns = {r["urn"] for r in plan.by_type(APIM + "NamedValue")}
    assert nv_urns and nv_urns <= set(plan.get(APIM + "ApiPolicy", "tenants-api-policy")["dependencies"])


def test_tenant_header_is_overridden_from_the_subscription(plans: dict[str, Plan]) -> None:
    inbound = _inbound(_policy(plans["base"], "ApiPolicy", "tenants-api-policy"))
    headers = {h.get("name"): h for h in inbound.findall("set-header")}
    tenant_header = headers["X-Tenant-ID"]
    assert tenant_header.get("exists-action") == "override"
    value = tenant_header.findtext("value", "")
    assert value.startswith("@(") and '"tenantId"' in value
    variables = {v.get("name"): v.get("value", "") for v in inbound.findall("set-variable")}
    assert "context.Subscription" in variables["tenantId"] and '"tenant-"' in variables["tenantId"]
    # Nothing the caller sends is read: no expression looks at request headers, query or body.
    text = ET.tostring(inbound, encoding="unicode")
    for caller_input in ("context.Request.Headers", "context.Request.Url", "context.Request.Body"):
        assert caller_input not in text
    # The header is set only after unknown tenants were turned away, and the key never reaches a CELL.
    tags = [c.tag for c in inbound]
    assert tags.index("choose") < list(inbound).index(tenant_header)
    assert headers["Ocp-Apim-Subscription-Key"].get("exists-action") == "delete"
    # APIM also accepts the key as the `subscription-key` query parameter: it is stripped there too.
    query = {q.get("name"): q.get("exists-action") for q in inbound.findall("set-query-parameter")}
    assert query == {"subscription-key": "delete"}


def test_unknown_subscriptions_are_refused(plans: dict[str, Plan]) -> None:
    inbound = _inbound(_policy(plans["base"], "ApiPolicy", "tenants-api-policy"))
    refuse = _returns(inbound)["403"]
    assert '"tenantRoute"' in refuse.get("condition", "") and "Length == 0" in refuse.get("condition", "")


def test_frozen_tenant_gets_reads_only(plans: dict[str, Plan]) -> None:
    plan = plans["base"]
    inbound = _inbound(_policy(plan, "ApiPolicy", "tenants-api-policy"))
    locked = _returns(inbound)["423"]
    condition = locked.get("condition", "")
    assert f'"{ap.FROZEN_MARK}"' in condition
    for method in ap.READ_METHODS:
        assert f'"{method}"' in condition
    for write in ("POST", "PUT", "PATCH", "DELETE"):
        assert f'"{write}"' not in condition  # writes are blocked by not being in the read list
    retry = locked.find("return-response/set-header[@name='Retry-After']")
    assert retry is not None and int(retry.findtext("value", "0")) > 0
    # The freeze is data: the routing map marks the tenant, the policy is shared by all tenants.
    routes = ap.parse_routing(r["inputs"]["value"] for r in plan.by_type(APIM + "NamedValue")
                              if "tenant-routing" in r["inputs"]["tags"])
    assert routes["globex"] == ap.Route("globex", "beta", frozen=True)
    assert routes["acme"] == ap.Route("acme", "alpha", frozen=False)


def test_backend_is_the_cell_behind_its_regions_cells_host(plans: dict[str, Plan]) -> None:
    plan = plans["base"]
    inbound = _inbound(_policy(plan, "ApiPolicy", "tenants-api-policy"))
    backend = inbound.find("set-backend-service")
    assert backend is not None
    # One backend entity per CELL: its primary region's cells host (a CNAME to that region's Traffic
    # Manager profile, covered by the gateway certificate) and the path the gateways route on.
    route = 'context.Variables.GetValueOrDefault<string>("tenantRoute", "")'
    assert backend.get("backend-id", "") == f'@("cell-" + {route}.Split(\':\')[0])'
    urls = {r["inputs"]["backendId"]: r["inputs"]["url"] for r in plan.by_type(APIM + "Backend")}
    assert urls and all(url.endswith(f"/cells/{bid.removeprefix('cell-')}") for bid, url in urls.items())
    assert all(r["inputs"]["tls"] == {"validateCertificateChain": True, "validateCertificateName": True}
               for r in plan.by_type(APIM + "Backend"))
    # Only requests through our Front Door: its id is checked against a named value.
    fdid = inbound.find("check-header")
    assert fdid is not None and fdid.get("name") == "X-Azure-FDID" and fdid.findtext("value") == "{{front-door-id}}"
    # Routing reads the map from the named values, by name.
    names = [r["inputs"]["displayName"] for r in plan.by_type(APIM + "NamedValue")
             if r["inputs"]["displayName"].startswith("tenant-routing")]
    variables = {v.get("name"): v.get("value") for v in inbound.findall("set-variable")}
    assert variables["tenantRoutes"] == ";".join("{{" + n + "}}" for n in names)


# --- cost and blast radius of config changes ------------------------------------------------------------------


def _apim_updates(diff: PlanDiff) -> list[tuple[str, str, list[str]]]:
    # Dashboards list each CELL's tenants, so they change too; routing is about API Management only.
    return [(u.type, u.name, u.paths) for u in diff.updates if u.type.startswith(APIM)]


def test_adding_a_tenant_adds_exactly_two_resources(plans: dict[str, Plan]) -> None:
    diff = diff_plans(plans["base"], plans["added"])
    assert diff.creates == sorted([(APIM + "Subscription", "tenants-sub-initech"),
                                   (APIM + "User", "tenants-user-initech")])
    assert diff.deletes == []
    # Its route is one more entry in the map; no other API Management object changes.
    assert _apim_updates(diff) == [(APIM + "NamedValue", "tenants-tenant-routing-0", ["value"])]
    sub = plans["added"].get(APIM + "Subscription", "tenants-sub-initech")["inputs"]
    assert sub["sid"] == "tenant-initech" and sub["state"] == "active"
    assert sub["scope"].endswith("/products/basic-tier") and sub["ownerId"].endswith("/users/initech-admin")


def test_moving_a_tenant_changes_one_value(plans: dict[str, Plan]) -> None:
    diff = diff_plans(plans["base"], plans["moved"])
    assert (diff.creates, diff.deletes) == ([], [])
    assert _apim_updates(diff) == [(APIM + "NamedValue", "tenants-tenant-routing-0", ["value"])]
    routes = ap.parse_routing(r["inputs"]["value"] for r in plans["moved"].by_type(APIM + "NamedValue")
                              if "tenant-routing" in r["inputs"]["tags"])
    assert routes["acme"].cell == "beta"


def test_unfreezing_a_tenant_changes_one_value(plans: dict[str, Plan]) -> None:
    diff = diff_plans(plans["base"], plans["thawed"])
    assert (diff.creates, diff.deletes) == ([], [])
    assert _apim_updates(diff) == [(APIM + "NamedValue", "tenants-tenant-routing-0", ["value"])]


def test_component_owns_its_children(plans: dict[str, Plan]) -> None:
    plan = plans["base"]
    (component,) = plan.by_type(COMPONENT)
    children = [r for r in plan.resources if r["type"].startswith(APIM) and r["type"] != APIM + "ApiManagementService"]
    assert children and all(r["parent"] == component["urn"] for r in children)
    assert all(r["name"].startswith(component["name"] + "-") for r in children)


def test_subscription_keys_are_secret_and_never_exported(plans: dict[str, Plan]) -> None:
    base = plans["base"]
    probe = base.outputs
    assert probe["probeKeys"] == {"acme": SECRET, "globex": SECRET}
    assert probe["probeSecretOutputs"] == {
        "tenants-sub-acme": ["primaryKey", "secondaryKey"], "tenants-sub-globex": ["primaryKey", "secondaryKey"]}
    # The real program exports nothing secret and nothing key-like.
    exported = json.dumps(plans["moved"].outputs)
    assert SECRET not in exported and "mock-primaryKey" not in exported
    access = plans["moved"].outputs["tenantAccess"]["acme"]
    assert access == {"subscriptionId": "tenant-acme", "userId": "acme-admin", "productId": "basic-tier",
                      "cell": "beta", "frozen": False}
    for r in base.by_type(APIM + "Subscription"):
        assert "primaryKey" not in r["inputs"] and "secondaryKey" not in r["inputs"]


def test_apim_resources_added_to_prod(prod_plan: Plan) -> None:
    tenants = len(prod_config()["config"]["stamps:tenants"])
    tiers = len(prod_config()["config"]["stamps:tiers"])
    mine = [r for r in prod_plan.custom() if r["type"].startswith(APIM) and r["name"].startswith("tenants-")]
    cells = len(prod_config()["config"]["stamps:cells"])
    # API, its policy, operations, one routing value, the Front Door id, one backend per CELL.
    shared = 1 + 1 + len(OPERATION_METHODS) + 1 + 1 + cells
    assert len(mine) == shared + 3 * tiers + 2 * tenants


def test_duplicate_tenant_emails_are_a_config_error() -> None:
    values = {k.split(":", 1)[1]: v for k, v in SMALL.items() if "secure" not in (v if isinstance(v, dict) else {})}
    values = copy.deepcopy(values)
    values["tenants"][1]["email"] = "ADMIN@acme.example"
    with pytest.raises(ConfigError) as info:
        load_environment("stamps", "test", values)
    assert info.value.problems == [
        "stamps:tenants[0].email: 'admin@acme.example' is used by another tenant; "
        "API Management users need distinct emails",
        "stamps:tenants[1].email: 'ADMIN@acme.example' is used by another tenant; "
        "API Management users need distinct emails",
    ]


# --- the builder on its own ----------------------------------------------------------------------------------


def test_routing_map_shards_stay_under_the_named_value_limit() -> None:
    # 600 tenants with the longest ids: far beyond one 4096-character value.
    routes = [ap.Route(f"t{i:04d}-{'x' * 18}", f"cell-{i % 7}-{'y' * 16}", frozen=i % 5 == 0) for i in range(600)]
    values = ap.routing_values(routes)
    assert len(values) > 1 and all(len(v) <= ap.NAMED_VALUE_MAX_CHARS for v in values)
    assert ap.parse_routing(values) == {r.tenant: r for r in routes}
    assert ap.routing_values(list(reversed(routes))) == values  # config order never matters
    # A tenant's shard depends on its id only: moving it rewrites one value.
    moved = [ap.Route(r.tenant, "cell-9-" + "z" * 16, r.frozen) if i == 123 else r for i, r in enumerate(routes)]
    after = ap.routing_values(moved)
    assert len(after) == len(values)
    assert sum(a != b for a, b in zip(values, after, strict=True)) == 1


def test_empty_routing_map_is_a_valid_named_value() -> None:
    assert ap.routing_values([]) == [";"]
    assert ap.parse_routing([";"]) == {}


@pytest.mark.parametrize("bad", [
    lambda: ap.Route('acme"', "alpha").entry(),
    lambda: ap.Route("acme", "alpha;evil=beta").entry(),
    lambda: ap.subscription_id("acme}}{{x"),
    lambda: ap.cell_url('eastus.cells.example.net" + x + "', "retail"),
    lambda: ap.cell_url("eastus.cells.example.net/x", "retail"),
    lambda: ap.api_policy(["}}{{evil"]),
    lambda: ap.product_policy(0, 10),
    lambda: ap.routing_values([ap.Route("acme", "alpha"), ap.Route("acme", "beta")]),
    lambda: ap.routing_values([ap.Route("acme", "alpha")], limit=5),
], ids=["quote-in-tenant", "separator-in-cell", "named-value-in-id", "quote-in-url", "plain-http",
        "named-value-name", "zero-limit", "duplicate-tenant", "entry-over-limit"])
def test_builder_rejects_unsafe_values(bad: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        bad()


def test_csharp_literals_and_xml_escaping() -> None:
    assert ap.cs_string('a"b\\c\n') == '"a\\"b\\\\c\\u000a"'
    xml = ap.api_policy(["tenant-routing-0"])
    root = ET.fromstring(xml)  # well-formed despite &&, < and quotes inside expressions
    assert "&&" in root.find("inbound/choose/when[2]").get("condition", "")  # type: ignore[union-attr]
    assert "&amp;&amp;" in xml


def test_onboarding_a_shared_tenant_changes_two_objects_and_one_routing_value(prod_plan: Plan,
                                                                              stack_file: Any) -> None:
    """Issue 10's budget: nothing but the tenant's user and subscription and one routing value (no dashboards)."""
    from stamps.offline import plan_stack
    from tests.conftest import ROOT

    plan = plan_stack(ROOT, "prod", stack_file(lambda c: c["stamps:tenants"].append(
        {"id": "newco", "tier": "basic", "cell": "retail", "email": "it@newco.example"})))
    diff = diff_plans(prod_plan, plan)
    assert sorted(n for _, n in diff.creates) == ["tenants-sub-newco", "tenants-user-newco"]
    assert [(u.name, u.paths) for u in diff.updates] == [("tenants-tenant-routing-0", ["value"])]
    assert diff.deletes == []
