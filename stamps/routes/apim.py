"""What the tenant API's API Management policy does, read back from the planned policy document."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from stamps.apim_policy import parse_routing
from stamps.routes.index import APIM_API, APIM_API_POLICY, APIM_BACKEND, PlanIndex, Resource


@dataclass
class TenantPolicy:
    """The parts of the policy a request's fate depends on."""

    api_path: str
    requires_front_door: bool = False
    overrides_tenant_header: bool = False
    strips_key_header: bool = False
    strips_key_query: bool = False
    routing_names: list[str] = field(default_factory=list)
    backend_prefix: str | None = None  # set-backend-service backend-id="@("<prefix>" + cell)"
    base_url_prefix: str | None = None  # or base-url="@("<prefix>" + cell)"


def _literal_prefix(expr: str) -> str | None:
    m = re.match(r'^@\(\s*"((?:[^"\\]|\\.)*)"\s*\+', expr.strip())
    return m.group(1) if m else None


def read_policy(index: PlanIndex, api: Resource) -> TenantPolicy | None:
    api_id = api["inputs"].get("apiId")
    doc = next((p for p in index.of(APIM_API_POLICY) if p["inputs"].get("apiId") == api_id), None)
    if doc is None:
        return None
    out = TenantPolicy(api_path=str(api["inputs"].get("path", "")))
    try:
        root = ET.fromstring(str(doc["inputs"].get("value", "")))
    except ET.ParseError:
        return out
    inbound = root.find("inbound")
    for el in list(inbound) if inbound is not None else []:
        name = (el.get("name") or "").lower()
        if el.tag == "check-header" and name == "x-azure-fdid":
            out.requires_front_door = True
        elif el.tag == "set-header" and name == "x-tenant-id":
            out.overrides_tenant_header = el.get("exists-action") == "override"
        elif el.tag == "set-header" and name == "ocp-apim-subscription-key":
            out.strips_key_header = el.get("exists-action") == "delete"
        elif el.tag == "set-query-parameter" and name == "subscription-key":
            out.strips_key_query = el.get("exists-action") == "delete"
        elif el.tag == "set-variable" and name == "tenantroutes":
            out.routing_names = re.findall(r"\{\{([^}]+)\}\}", el.get("value") or "")
        elif el.tag == "set-backend-service":
            if el.get("backend-id"):
                out.backend_prefix = _literal_prefix(el.get("backend-id") or "")
            elif el.get("base-url"):
                out.base_url_prefix = _literal_prefix(el.get("base-url") or "")
    return out


def tenant_api(index: PlanIndex) -> Resource | None:
    return next((a for a in index.of(APIM_API) if a["inputs"].get("subscriptionRequired", True)), None)


def routes_of(index: PlanIndex, pol: TenantPolicy) -> dict[str, tuple[str, bool]]:
    """tenant → (CELL, frozen) from the named values the policy reads."""
    values = index.named_values()
    try:
        parsed = parse_routing(values.get(n, "") for n in pol.routing_names)
    except ValueError:
        return {}
    return {t: (r.cell, r.frozen) for t, r in parsed.items()}


def backend_url(index: PlanIndex, pol: TenantPolicy, cell: str) -> tuple[str | None, Resource | None]:
    """The URL API Management calls for a CELL, and the backend entity that holds it (None for base-url)."""
    if pol.backend_prefix is not None:
        bid = pol.backend_prefix + cell
        backend = next((b for b in index.of(APIM_BACKEND) if b["inputs"].get("backendId") == bid), None)
        return (str(backend["inputs"].get("url")) if backend else None), backend
    if pol.base_url_prefix is not None:
        return pol.base_url_prefix + cell, None
    return None, None
