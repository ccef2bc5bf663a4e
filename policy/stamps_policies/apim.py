"""API Management: tier products throttle and meter each subscription, and CELLs get a tenant id that
clients cannot forge.

- `apim-tier-product-limits` (each ProductPolicy): unconditionally in `<inbound>` (outside `<choose>`),
  a short-window limit (`rate-limit`/`rate-limit-by-key`, or `quota`/`quota-by-key` renewing within
  `maxRateWindowSeconds`: rate-limit windows stop at 300 s, so "calls per hour" is an hourly quota) and a
  long-window quota (`quota`/`quota-by-key` renewing after at least `minQuotaWindowSeconds`).
- `apim-tenant-header-override` (every APIM policy document: service, product, API, operation): each
  `set-header` of the tenant header, conditional ones included, has `exists-action="override"` and a
  value not read from the request (`context.Request...`); otherwise a caller picks its tenant. APIM's
  default action is override too, but "skip" and "append" are one word away and the attribute is what a
  reviewer checks, so it must be written out.
- `apim-tier-tenant-header` (stack): every product's traffic has the tenant header overridden
  unconditionally, by the product's policy, the service policy, or the policy of every API in the product.
  Products, APIs and their links are matched by their ids (`productId`, `apiId`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import APIM_PRODUCT_POLICY, MANDATORY, UNKNOWN, config, known, resource_policy

APIM = "azure-native:apimanagement:"
PRODUCT = APIM + "Product"
PRODUCT_APIS = (APIM + "ProductApi", APIM + "ProductApiLink")
API_POLICY = APIM + "ApiPolicy"
SERVICE_POLICY = APIM + "Policy"

RATE_LIMITS = ("rate-limit", "rate-limit-by-key")
QUOTAS = ("quota", "quota-by-key")
CONDITIONAL = "choose"

HEADER = {"type": "string", "default": "X-Tenant-ID", "description": "the header carrying the tenant id to CELLs"}
LIMITS_SCHEMA = PolicyConfigSchema(
    properties={
        "maxRateWindowSeconds": {
            "type": "integer", "minimum": 1, "default": 3600,
            "description": "a quota renewing within this many seconds counts as the tier's rate limit",
        },
        "minQuotaWindowSeconds": {
            "type": "integer", "minimum": 1, "default": 86400,
            "description": "the tier's quota renews after at least this many seconds",
        },
    },
)
HEADER_SCHEMA = PolicyConfigSchema(properties={"tenantHeader": HEADER})


def is_policy_document(type_token: str) -> bool:
    return type_token.startswith(APIM) and type_token.endswith("Policy")


def parse(xml: str) -> tuple[ET.Element | None, str | None]:
    """The `<inbound>` section of a policy document, or why there is none."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        return None, f"the policy is not well-formed XML ({exc}); use format \"xml\" with escaped expressions"
    inbound = root.find("inbound") if root.tag == "policies" else None
    return (inbound, None) if inbound is not None else (None, "the policy has no <policies><inbound> section")


def unconditional(section: ET.Element) -> Iterator[ET.Element]:
    """Elements of a policy section that always run: everything outside `<choose>` branches."""
    for child in section:
        if child.tag == CONDITIONAL:
            continue
        yield child
        yield from unconditional(child)


def _number(value: str | None) -> int | None:
    """A positive integer attribute. A named value (`{{tier-calls}}`) is substituted by APIM before parsing:
    it counts as set, with 0 standing for "any" (a named-value window satisfies either window rule)."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("{{") and value.endswith("}}"):
        return 0
    return int(value) if value.isdigit() and int(value) > 0 else None


def check_limits(inbound: ET.Element, max_rate_window: int, min_quota_window: int) -> list[str]:
    problems: list[str] = []
    rate = quota = False
    for e in unconditional(inbound):
        if e.tag not in RATE_LIMITS + QUOTAS:
            continue
        amount = _number(e.get("calls")) if e.tag in RATE_LIMITS else (
            _number(e.get("calls")) if e.get("calls") is not None else _number(e.get("bandwidth")))
        window = _number(e.get("renewal-period"))
        if amount is None or window is None:
            problems.append(f"<{e.tag}> needs positive calls{'' if e.tag in RATE_LIMITS else ' (or bandwidth)'} "
                            "and renewal-period attributes")
            continue
        if e.tag in RATE_LIMITS or window <= max_rate_window:
            rate = True
        if e.tag in QUOTAS and (window == 0 or window >= min_quota_window):
            quota = True
    if not rate:
        problems.append(f"no unconditional rate limit in <inbound> (<rate-limit>, or a <quota> renewing within "
                        f"{max_rate_window}s): the tier's calls per period are not enforced")
    if not quota:
        problems.append(f"no unconditional <quota> renewing after {min_quota_window}s or more in <inbound>: the "
                        "tier's volume is not capped")
    return problems


def check_header(inbound: ET.Element, header: str) -> list[str]:
    problems: list[str] = []
    for e in inbound.iter("set-header"):
        if (e.get("name") or "").lower() != header.lower():
            continue
        action = e.get("exists-action")
        if action != "override":
            shown = f"exists-action=\"{action}\"" if action is not None else "no exists-action"
            problems.append(f"<set-header name=\"{header}\"> has {shown}: a client-sent {header} survives "
                            "(spoofable); set exists-action=\"override\"")
        values = " ".join("".join(v.itertext()) for v in e.iter("value"))
        if "context.request" in values.lower():
            problems.append(f"{header} is computed from the request ({values.strip()}): a client chooses its "
                            "tenant; derive it from context.Subscription or context.User")
    return problems


def overrides_header(inbound: ET.Element, header: str) -> bool:
    """The section always sets the header, and every setting of it overrides from a trusted value."""
    always = any(e.tag == "set-header" and (e.get("name") or "").lower() == header.lower()
                 for e in unconditional(inbound))
    return always and not check_header(inbound, header)


def _document(props: Any) -> tuple[ET.Element | None, str | None]:
    fmt = str(props.get("format") or "xml").lower()
    if fmt.endswith("-link"):
        return None, f"format is {fmt!r}: a linked policy cannot be verified before deployment; inline it as \"xml\""
    value = props.get("value")
    if not isinstance(value, str) or not value.strip():
        return None, "the policy document is empty"
    return parse(value)


def _limits(args: ResourceValidationArgs, cfg: dict[str, Any]) -> Iterator[str]:
    inbound, error = _document(args.props)
    if inbound is None:
        yield error or "no policy document"
        return
    yield from check_limits(inbound, int(cfg["maxRateWindowSeconds"]), int(cfg["minQuotaWindowSeconds"]))


def _header(args: ResourceValidationArgs, cfg: dict[str, Any]) -> Iterator[str]:
    if not is_policy_document(args.resource_type):
        return
    inbound, error = _document(args.props)
    if inbound is None:
        yield error or "no policy document"
        return
    yield from check_header(inbound, cfg["tenantHeader"])


def _last_segment(value: Any) -> Any:
    """`apiId` is a bare id on ProductApi and an ARM id on ProductApiLink; compare the last segment."""
    return value.rstrip("/").rsplit("/", 1)[-1] if isinstance(value, str) else value


def _tier_header(args: StackValidationArgs, report: ReportViolation) -> None:
    header = config(args, HEADER_SCHEMA)["tenantHeader"]

    def stamped(r: Any) -> bool:
        doc = known(lambda: _document(r.props))
        inbound = doc[0] if isinstance(doc, tuple) else None
        return inbound is not None and overrides_header(inbound, header)

    def ids(r: Any, *keys: str) -> tuple[Any, ...] | None:
        """The resource's ids, or None while one is unknown (preview): it is matched after the update."""
        values = tuple(_last_segment(known(lambda k=k: r.props.get(k))) for k in keys)  # type: ignore[misc]  # the default binds the loop value; known() calls the lambda at once
        return None if UNKNOWN in values else values

    by_type: dict[str, list[Any]] = {}
    for r in args.resources:
        by_type.setdefault(r.resource_type, []).append(r)
    services_stamped = {ids(p, "serviceName") for p in by_type.get(SERVICE_POLICY, []) if stamped(p)}
    products_stamped = {ids(p, "serviceName", "productId") for p in by_type.get(APIM_PRODUCT_POLICY, [])
                        if stamped(p)}
    apis_stamped = {ids(p, "serviceName", "apiId") for p in by_type.get(API_POLICY, []) if stamped(p)}
    links = [ids(link, "serviceName", "productId", "apiId") for t in PRODUCT_APIS for link in by_type.get(t, [])]

    for product in by_type.get(PRODUCT, []):
        product_ids = ids(product, "serviceName", "productId")
        if product_ids is None:
            continue
        service, product_id = product_ids
        if (service,) in services_stamped or (service, product_id) in products_stamped:
            continue
        apis = sorted({link[2] for link in links if link is not None and link[:2] == product_ids}, key=str)
        bare = [a for a in apis if (service, a) not in apis_stamped]
        if bare:
            report(f"product {product_id}: requests through API(s) {', '.join(map(str, bare))} reach the CELLs without "
                   f"an unconditional <set-header name=\"{header}\" exists-action=\"override\"> at service, product "
                   "or API scope", product.urn)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [
        resource_policy(
            "apim-tier-product-limits",
            "API Management tier products rate-limit and meter (quota) every subscription.",
            [APIM_PRODUCT_POLICY], _limits, schema=LIMITS_SCHEMA),
        resource_policy(
            "apim-tenant-header-override",
            "API Management policies set the tenant header with exists-action=\"override\" from trusted values.",
            None, _header, schema=HEADER_SCHEMA),
        StackValidationPolicy(
            name="apim-tier-tenant-header",
            description="Every API Management product's traffic gets the tenant header overridden.",
            validate=_tier_header, enforcement_level=MANDATORY, config_schema=HEADER_SCHEMA),
    ]
