"""API Management policy documents and the tenant routing map, built as data.

API Management has no per-subscription policy scope (the runbook's `az apim policy create --subscription-id`
does not exist), so per-tenant behaviour is expressed as:

- one product per tier whose policy limits each subscription: `quota-by-key` keyed on the subscription for
  the hourly limit and `quota` for the daily one. `rate-limit`/`rate-limit-by-key` accept a renewal period
  of at most 300 seconds, so they cannot express "calls per hour"; a quota's fixed window can.
- one API policy shared by every tenant: the tenant comes from the calling subscription
  (`tenant-<id>`), `X-Tenant-ID` is overwritten with it, the subscription key (header or query) is stripped
  before the request leaves the gateway, requests that did not come through our Front Door are refused, and
  the backend is the tenant's CELL (a backend entity per CELL, behind its region's Traffic Manager name).
- the tenant → CELL map is data in named values (`tenant=cell` entries, `:frozen` marks a tenant that is
  read-only during a migration). Moving or freezing a tenant changes one named value, never a policy.
  A named value holds at most 4096 characters, so the map is split over as many named values as needed;
  a tenant's shard depends only on its id, so moving it touches one value.

Documents are built with ElementTree (attribute and text escaping included) and every literal placed in a
C# policy expression or a named value is checked against a strict character set first.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stamps.config.model import ID_PATTERN

SUBSCRIPTION_PREFIX = "tenant-"
APIM_STATUS_PATH = "/status-0123456789abcdef"  # API Management's own gateway health endpoint
ROUTING_NAMED_VALUE = "tenant-routing"
FRONT_DOOR_ID_NAMED_VALUE = "front-door-id"
BACKEND_PREFIX = "cell-"
NAMED_VALUE_MAX_CHARS = 4096
FROZEN_MARK = ":frozen"
FROZEN_STATUS, FROZEN_REASON = 423, "Locked"
FROZEN_RETRY_AFTER_SECONDS = 300
UNKNOWN_TENANT_STATUS = 403
# Methods a frozen tenant may still call: they never change data.
READ_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")
HOUR, DAY = 3600, 86400

_HOST = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_NAMED_VALUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")


def _check_id(value: str, what: str) -> str:
    # Ids reach XML, C# string literals and named values: only the config's id alphabet is accepted.
    if not ID_PATTERN.match(value) or "--" in value:
        raise ValueError(f"{what} {value!r} is not a valid stamps id")
    return value


def subscription_id(tenant: str) -> str:
    """The APIM subscription id (`sid`) of a tenant; the policy derives the tenant back from it."""
    return SUBSCRIPTION_PREFIX + _check_id(tenant, "tenant id")


def user_id(tenant: str) -> str:
    return f"{_check_id(tenant, 'tenant id')}-admin"


def product_id(tier: str) -> str:
    return f"{_check_id(tier, 'tier')}-tier"


def cs_string(value: str) -> str:
    """A C# string literal for `value` (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch in "\u2028\u2029\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


# --- the routing map --------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Route:
    tenant: str
    cell: str
    frozen: bool = False

    def entry(self) -> str:
        _check_id(self.tenant, "tenant id")
        _check_id(self.cell, "CELL name")
        return f"{self.tenant}={self.cell}{FROZEN_MARK if self.frozen else ''}"


def _shard_of(tenant: str, shards: int) -> int:
    # A stable hash (not Python's salted hash()) so every run and machine agrees.
    return int.from_bytes(hashlib.sha256(tenant.encode()).digest()[:8], "big") % shards


def routing_values(routes: Iterable[Route], limit: int = NAMED_VALUE_MAX_CHARS) -> list[str]:
    """The named values holding the map: the fewest shards that each fit `limit` characters.

    Entries are sorted inside a shard, so config order never changes a value. An empty shard holds `;`
    (a named value may not be empty), which parses as no entries.
    """
    given = list(routes)
    entries = sorted({r.tenant: r for r in given}.values())
    if len(entries) != len(given):
        raise ValueError("a tenant appears twice in the routing map")
    if any(len(r.entry()) > limit for r in entries):
        raise ValueError(f"a routing entry is longer than {limit} characters")
    shards = 1
    while True:
        buckets: list[list[str]] = [[] for _ in range(shards)]
        for r in entries:
            buckets[_shard_of(r.tenant, shards)].append(r.entry())
        values = [";".join(b) or ";" for b in buckets]
        if all(len(v) <= limit for v in values):
            return values
        shards += 1


def parse_routing(values: Iterable[str]) -> dict[str, Route]:
    """The inverse of `routing_values` (what the policy expression computes, for tests and ops)."""
    out: dict[str, Route] = {}
    for value in values:
        for entry in value.split(";"):
            if not entry:
                continue
            tenant, sep, target = entry.partition("=")
            if not sep:
                raise ValueError(f"routing entry {entry!r} is not tenant=cell")
            frozen = target.endswith(FROZEN_MARK)
            cell = target.removesuffix(FROZEN_MARK)
            if tenant in out:
                raise ValueError(f"tenant {tenant!r} is routed twice")
            out[tenant] = Route(tenant, cell, frozen)
    return out


def routing_value_names(count: int) -> list[str]:
    return [f"{ROUTING_NAMED_VALUE}-{i}" for i in range(count)]


# --- policy documents --------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    # Attribute names use hyphens in APIM (`renewal-period`); Python keywords can't, so map `_` → `-`.
    el = ET.SubElement(parent, tag, {k.replace("_", "-"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _document() -> tuple[ET.Element, ET.Element]:
    root = ET.Element("policies")
    inbound = _sub(root, "inbound")
    _sub(inbound, "base")
    return root, inbound


def _finish(root: ET.Element) -> str:
    for section in ("backend", "outbound", "on-error"):
        _sub(_sub(root, section), "base")
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode")


def product_policy(calls_per_hour: int, calls_per_day: int) -> str:
    """A tier's limits, counted per subscription (= per tenant)."""
    for what, n in (("calls per hour", calls_per_hour), ("calls per day", calls_per_day)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what} must be a positive integer, got {n!r}")
    root, inbound = _document()
    # Hourly: a fixed one-hour window per subscription (rate-limit windows stop at 300 s). The key is
    # prefixed so it can never share a counter with another quota keyed on the bare subscription id.
    _sub(inbound, "quota-by-key", calls=str(calls_per_hour), renewal_period=str(HOUR),
         counter_key='@("hourly-" + context.Subscription.Id)')
    # Daily: `quota` at product scope counts per subscription by itself.
    _sub(inbound, "quota", calls=str(calls_per_day), renewal_period=str(DAY))
    return _finish(root)


def _var(name: str) -> str:
    return f"context.Variables.GetValueOrDefault<string>({cs_string(name)}, \"\")"


def backend_id(cell: str) -> str:
    """The API Management backend of a CELL: its URL, TLS checks and circuit breaker."""
    return BACKEND_PREFIX + _check_id(cell, "CELL name")


def cell_url(cell_host: str, cell: str) -> str:
    """Where a CELL answers: `https://<primary>.<cellsHostName>/cells/<cell>`, the prefix the gateways route on."""
    if not _HOST.match(cell_host):
        raise ValueError(f"cell host {cell_host!r} is not a DNS name")
    return f"https://{cell_host}/cells/{_check_id(cell, 'CELL name')}"


def api_policy(routing_names: Sequence[str], front_door_id_name: str = FRONT_DOOR_ID_NAMED_VALUE) -> str:
    """The tenant API's policy: only via Front Door, identify the tenant by subscription, enforce freezes,
    route to the backend of its CELL (whose host is the CELL's region's Traffic Manager name, so a regional
    failover needs no API Management change)."""
    if not routing_names:
        raise ValueError("at least one routing named value is needed")
    for name in (*routing_names, front_door_id_name):
        if not _NAMED_VALUE_NAME.match(name):
            raise ValueError(f"named value name {name!r} has characters APIM does not allow")

    root, inbound = _document()
    # Only our Front Door profile may call: it stamps its id on every request it forwards
    # (learn.microsoft.com/azure/api-management/front-door-api-management).
    fdid = _sub(inbound, "check-header", name="X-Azure-FDID", failed_check_httpcode="403",
                failed_check_error_message="Call the API through its public host", ignore_case="true")
    _sub(fdid, "value", "{{" + front_door_id_name + "}}")
    prefix = cs_string(SUBSCRIPTION_PREFIX)
    # The tenant is whatever the subscription says; nothing the caller sends is read.
    _sub(inbound, "set-variable", name="tenantId", value=(
        "@{ var sid = context.Subscription?.Id ?? \"\"; "
        f"return sid.StartsWith({prefix}) ? sid.Substring({len(SUBSCRIPTION_PREFIX)}) : \"\"; }}"
    ))
    # Named values are substituted as literal text (not an expression), then parsed below.
    _sub(inbound, "set-variable", name="tenantRoutes", value=";".join("{{" + n + "}}" for n in routing_names))
    _sub(inbound, "set-variable", name="tenantRoute", value=(
        "@{ var id = " + _var("tenantId") + "; "
        "foreach (var entry in " + _var("tenantRoutes") + ".Split(';')) { "
        "var kv = entry.Split('='); "
        "if (id.Length > 0 && kv.Length == 2 && kv[0] == id) { return kv[1]; } } "
        "return \"\"; }"
    ))
    choose = _sub(inbound, "choose")
    unknown = _sub(choose, "when", condition=f"@({_var('tenantRoute')}.Length == 0)")
    deny = _sub(unknown, "return-response")
    _sub(deny, "set-status", code=str(UNKNOWN_TENANT_STATUS), reason="Forbidden")

    reads = " || ".join(f"context.Request.Method == {cs_string(m)}" for m in READ_METHODS)
    frozen = _sub(choose, "when", condition=(
        f"@({_var('tenantRoute')}.EndsWith({cs_string(FROZEN_MARK)}) && !({reads}))"
    ))
    locked = _sub(frozen, "return-response")
    _sub(locked, "set-status", code=str(FROZEN_STATUS), reason=FROZEN_REASON)
    _sub(_sub(locked, "set-header", name="Retry-After", exists_action="override"), "value",
         str(FROZEN_RETRY_AFTER_SECONDS))

    # Override, not append: a caller-supplied X-Tenant-ID never reaches a CELL.
    _sub(_sub(inbound, "set-header", name="X-Tenant-ID", exists_action="override"), "value",
         f"@({_var('tenantId')})")
    # The CELL has no use for the tenant's key, in either place APIM accepts it; don't hand it to backend logs.
    _sub(inbound, "set-header", name="Ocp-Apim-Subscription-Key", exists_action="delete")
    _sub(inbound, "set-query-parameter", name="subscription-key", exists_action="delete")
    _sub(inbound, "set-backend-service", backend_id=(
        f"@({cs_string(BACKEND_PREFIX)} + {_var('tenantRoute')}.Split(':')[0])"
    ))
    return _finish(root)
