"""Walk every tenant's request, every probe and every public entry through the planned resources.

A request for tenant T enters by a public host, passes Front Door to an origin, API Management's tenant
policy (subscription → tenant, routing named values, backend), the backend's host (DNS → Traffic Manager →
the endpoint its priorities and probes pick), the App Gateway (WAF custom rules, listener, path map, pool)
and lands on the Container App behind the pool's address. Findings name the resources on the path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from stamps.apim_policy import APIM_STATUS_PATH, SUBSCRIPTION_PREFIX
from stamps.offline.plan import UNKNOWN as UNKNOWN_MARK
from stamps.routes.apim import TenantPolicy, backend_url, read_policy, routes_of, tenant_api
from stamps.routes.gateway import GatewayResult, Request, evaluate, gateway_vnet, probe_of_pool
from stamps.routes.index import (
    AFD_DOMAIN,
    AFD_GROUP,
    AFD_ORIGIN,
    AFD_ROUTE,
    AGW,
    APIM,
    APIM_SUBSCRIPTION,
    APP,
    APP_ENV,
    PIP,
    TM,
    PlanIndex,
    Resource,
)

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str
    path: tuple[str, ...] = ()


@dataclass
class TenantRoute:
    tenant: str
    entry: str = ""
    apim: str = ""
    cell: str = ""
    region: str = ""
    instance: str = ""
    role: str = ""
    verdict: str = "unreachable"
    hops: list[str] = field(default_factory=list)


@dataclass
class EntryPoint:
    kind: str
    name: str
    reaches: str
    through_apim: bool


@dataclass
class RouteReport:
    tenants: list[TenantRoute]
    entries: list[EntryPoint]
    findings: list[Finding]
    failed_over: list[str]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failedOver": self.failed_over,
                "tenants": [asdict(t) for t in self.tenants], "entries": [asdict(e) for e in self.entries],
                "findings": [asdict(f) for f in self.findings]}


def _label(r: Resource | None) -> str:
    return f"{r['type'].split(':')[-1]} {r['name']}" if r else "?"


def _tag(r: Resource, key: str) -> str:
    return str((r["inputs"].get("tags") or {}).get(key, ""))


class Walker:
    def __init__(self, resources: Iterable[Mapping[str, Any]], outputs: Mapping[str, Any],
                 failed_over: Iterable[str] = ()) -> None:
        self.index = PlanIndex(list(resources), outputs)
        self.failed_over = sorted(set(failed_over))
        self.findings: list[Finding] = []
        self.apim_sources = [str(a) for a in outputs.get("apiManagementAddresses") or []]
        # Primary instances by CELL: where a CELL's tenants belong while its region serves.
        self.primary_region = {_tag(a, "cell"): str(a["inputs"].get("location")) for a in self.index.of(APP)
                               if _tag(a, "role") == "primary"}
        self.has_standby = {_tag(a, "cell") for a in self.index.of(APP) if _tag(a, "role") == "standby"}
        # The tenant API and its policy, read once: every check below asks where tenants go.
        self.api = tenant_api(self.index)
        self.policy = read_policy(self.index, self.api) if self.api else None

    def add(self, severity: str, code: str, message: str, *path: str) -> None:
        f = Finding(severity, code, message, tuple(path))
        if f not in self.findings:
            self.findings.append(f)

    # --- the App Gateway hop ---------------------------------------------------------------------------------
    def via_gateway(self, pip: Resource, req: Request) -> tuple[GatewayResult | None, list[Resource]]:
        agw = self.index.gateway_for_ip(pip)
        if agw is None:
            return None, []
        result = evaluate(self.index, agw, pip, req)
        vnet = gateway_vnet(self.index, agw)
        apps = []
        for addr in result.addresses:
            host = self.index.resolve_host(addr, from_vnet=vnet)
            if host is not None and host.kind == "container-app":
                apps.append(host.resource)
            else:
                self.add(ERROR, "unresolvable-backend",
                         f"{_label(agw)} pool {result.pool} address {addr} does not resolve from the gateway's "
                         "network to a Container App (missing private DNS zone, wildcard record or VNet link)",
                         agw["urn"])
        return result, apps

    @staticmethod
    def probe_paths(app: Resource) -> set[str]:
        """The paths a Container App's own liveness/readiness probes call."""
        return {str((p.get("httpGet") or {}).get("path")) for c in
                (app["inputs"].get("template") or {}).get("containers") or [] for p in c.get("probes") or []}

    def endpoint_targets(self, profile: Resource) -> list[tuple[Mapping[str, Any], Resource | None]]:
        eps = [e for e in profile["inputs"].get("endpoints") or [] if e.get("endpointStatus", "Enabled") == "Enabled"]
        eps.sort(key=lambda e: float(e.get("priority", 1e9)))
        return [(e, self.index.resolve_id(e.get("targetResourceId"))) for e in eps]

    def probe_members(self, profile: Resource, pip: Resource) -> tuple[GatewayResult | None, list[Resource]]:
        mon = profile["inputs"].get("monitorConfig") or {}
        return self.via_gateway(pip, Request(path=str(mon.get("path", "/")), method="GET"))

    def tm_choice(self, profile: Resource, down: set[str]) -> tuple[Mapping[str, Any] | None, Resource | None]:
        """The endpoint Traffic Manager answers with: the best-priority enabled endpoint whose probe passes."""
        targets = self.endpoint_targets(profile)
        for ep, pip in targets:
            if pip is None or pip["type"] != PIP:
                continue
            result, apps = self.probe_members(profile, pip)
            if result is not None and result.verdict == "routed" and any(a["urn"] not in down for a in apps):
                return ep, pip
        # Every endpoint degraded: Traffic Manager answers with all of them (no failover happens).
        return None, None

    # --- checks ------------------------------------------------------------------------------------------
    def run(self) -> RouteReport:
        entries = self.check_entries()
        tenants = self.check_tenants()
        self.check_traffic_manager_probes()
        self.check_region_down()
        self.check_gateway_probes()
        return RouteReport(tenants, entries, self.findings, self.failed_over)

    def front_door_origins(self) -> list[tuple[Resource, Resource, Any]]:
        """(route, origin, resolved host) for every enabled origin behind every Front Door route."""
        out = []
        for route in self.index.of(AFD_ROUTE):
            group = self.index.resolve_id((route["inputs"].get("originGroup") or {}).get("id"))
            if group is None or group["type"] != AFD_GROUP:
                self.add(ERROR, "front-door-no-origins", f"{_label(route)} names no planned origin group",
                         route["urn"])
                continue
            gname = group["inputs"].get("originGroupName")
            for origin in self.index.of(AFD_ORIGIN):
                if origin["inputs"].get("originGroupName") != gname or \
                        origin["inputs"].get("enabledState", "Enabled") != "Enabled" or \
                        origin["inputs"].get("hostName") in (None, UNKNOWN_MARK):
                    continue  # an origin whose host is not known yet (preview) cannot be judged
                out.append((route, origin, self.index.resolve_host(str(origin["inputs"].get("hostName", "")))))
                self.check_front_door_probe(group, origin, out[-1][2])
        return out

    def check_front_door_probe(self, group: Resource, origin: Resource, host: Any) -> None:
        probe = group["inputs"].get("healthProbeSettings") or {}
        path = str(probe.get("probePath", "/"))
        if host is not None and host.kind == "apim":
            if path != APIM_STATUS_PATH:
                self.add(ERROR, "probe-misses-backend",
                         f"{_label(group)} probes {path} on API Management {_label(origin)}; only "
                         f"{APIM_STATUS_PATH} reports the gateway's health", group["urn"], origin["urn"])
        elif host is not None and host.kind == "public-ip":
            result, apps = self.via_gateway(host.resource, Request(path=path, method=probe.get("probeRequestType",
                                                                                                "GET")))
            if result is None or result.verdict != "routed" or not apps:
                self.add(ERROR, "probe-empty-pool",
                         f"{_label(group)} probe {path} on {_label(origin)} reaches "
                         f"{'an empty pool' if result and result.verdict == 'routed' else 'no backend'}",
                         group["urn"], origin["urn"])

    def check_entries(self) -> list[EntryPoint]:
        entries: list[EntryPoint] = []
        origins = self.front_door_origins()
        bypass = [(route, origin, host) for route, origin, host in origins if host is None or host.kind != "apim"]
        for route, origin, host in bypass:
            what = _label(self.index.gateway_for_ip(host.resource)) if host and host.kind == "public-ip" else \
                str(origin["inputs"].get("hostName"))
            self.add(ERROR, "bypass-api-management",
                     f"Front Door {_label(origin)} sends public traffic to {what} without API Management",
                     route["urn"], origin["urn"])
        reaches = "API Management" if origins and not bypass else "a backend without API Management"
        domains = self.index.of(AFD_DOMAIN)
        for d in domains:
            host = str(d["inputs"].get("hostName", ""))
            resolved = self.index.resolve_host(host)
            if resolved is None or resolved.kind != "front-door":
                self.add(ERROR, "public-host-unbound",
                         f"public host {host} has no DNS record leading to Front Door (dnsRecords output)", d["urn"])
            if not any(self.index.resolve_id(c.get("id")) is d for r in self.index.of(AFD_ROUTE)
                       for c in r["inputs"].get("customDomains") or []):
                self.add(ERROR, "public-host-unbound", f"no Front Door route serves {host}", d["urn"])
            entries.append(EntryPoint("front-door custom domain", host, reaches, not bypass))
        if not domains:
            self.add(ERROR, "public-host-unbound", "no Front Door custom domain: the public API host is not served")
        for r in self.index.of(AFD_ROUTE):
            if r["inputs"].get("linkToDefaultDomain") == "Enabled":
                entries.append(EntryPoint("front-door default domain", str(r["name"]), reaches, not bypass))
        for apim in self.index.of(APIM):
            entries.append(EntryPoint("api-management gateways", str(apim["inputs"].get("serviceName")),
                                      "CELL backends per tenant policy", True))
        for pip in self.index.of(PIP):
            entries.append(self.check_public_ip(pip))
        for app in self.index.of(APP):
            env = self.index.resolve_id(app["inputs"].get("managedEnvironmentId"))
            internal = bool(((env or {}).get("inputs", {}).get("vnetConfiguration") or {}).get("internal"))
            ingress = ((app["inputs"].get("configuration") or {}).get("ingress") or {})
            if ingress.get("external") and not internal:
                self.add(ERROR, "bypass-api-management",
                         f"{_label(app)} has external ingress in a non-internal environment: the internet reaches "
                         "the CELL without API Management", app["urn"])
                entries.append(EntryPoint("container app", str(app["name"]), "its CELL directly", False))
        return entries

    def check_public_ip(self, pip: Resource) -> EntryPoint:
        agw = self.index.gateway_for_ip(pip)
        if agw is None:
            return EntryPoint("public ip", str(pip["name"]), "nothing", True)
        reached: list[str] = []
        health_only = True
        for pm in agw["inputs"].get("urlPathMaps") or []:
            for pr in pm.get("pathRules") or []:
                for p in pr.get("paths") or []:
                    sample = p[:-1] + "anything" if p.endswith("*") else p
                    result, apps = self.via_gateway(pip, Request(path=sample))
                    if result is None or result.verdict != "routed" or not apps:
                        continue
                    cells = sorted({_tag(a, "cell") + "@" + str(a["inputs"].get("location")) for a in apps})
                    if all(result.backend_path in self.probe_paths(a) for a in apps):
                        # Rewritten to the apps' own probe path: a probe answer, no tenant data.
                        reached.append(f"{p} (health only)")
                        continue
                    health_only = False
                    reached.append(f"{p} → {', '.join(cells)}")
                    self.add(ERROR, "bypass-api-management",
                             f"{_label(pip)} → {_label(agw)} rule {result.rule}: anyone on the internet reaches "
                             f"CELL {', '.join(cells)} at {p} without API Management", pip["urn"], agw["urn"])
        return EntryPoint("public ip → app gateway", str(pip["name"]),
                          "; ".join(reached) or "nothing (WAF blocks)", health_only)

    def check_tenants(self) -> list[TenantRoute]:
        api, pol = self.api, self.policy
        routing = routes_of(self.index, pol) if pol else {}
        placed = {str(k): str(v) for k, v in (self.index.outputs.get("tenantCells") or {}).items()}
        if pol is not None and api is not None:  # a policy is only read from an API
            self.check_policy(pol, api)
        entry = next((str(d["inputs"].get("hostName")) for d in self.index.of(AFD_DOMAIN)), "")
        out = []
        for sub in sorted(self.index.of(APIM_SUBSCRIPTION), key=lambda s: str(s["inputs"].get("sid"))):
            sid = str(sub["inputs"].get("sid", ""))
            if not sid.startswith(SUBSCRIPTION_PREFIX):
                continue
            tenant = sid[len(SUBSCRIPTION_PREFIX):]
            tr = TenantRoute(tenant, entry=entry, apim=str(api["name"]) if api else "")
            out.append(tr)
            if pol is None:
                self.add(ERROR, "tenant-unreachable", f"tenant {tenant}: no tenant API policy", sub["urn"])
                continue
            if tenant not in routing:
                self.add(ERROR, "tenant-unreachable", f"tenant {tenant}: no routing entry (API Management answers 403)",
                         sub["urn"])
                continue
            tr.cell = routing[tenant][0]
            if placed.get(tenant) not in (None, tr.cell):
                self.add(ERROR, "wrong-cell", f"tenant {tenant} is routed to CELL {tr.cell} but placed in "
                         f"{placed[tenant]} (tenantCells)", sub["urn"])
            self.walk_tenant(tr, pol, sub, down=set())
        return out

    def check_policy(self, pol: TenantPolicy, api: Resource) -> None:
        if not pol.overrides_tenant_header:
            self.add(ERROR, "spoofable-tenant", "the tenant API policy does not overwrite X-Tenant-ID: a caller's "
                     "own header reaches the CELL", api["urn"])
        if not (pol.strips_key_header and pol.strips_key_query):
            self.add(ERROR, "key-forwarded", "the tenant API policy forwards the subscription key "
                     f"({'query parameter' if pol.strips_key_header else 'header'}) to the CELL", api["urn"])
        if not pol.requires_front_door:
            self.add(WARNING, "skips-front-door", "API Management accepts calls that did not come through Front "
                     "Door (no X-Azure-FDID check): its WAF can be skipped", api["urn"])

    def walk_tenant(self, tr: TenantRoute, pol: TenantPolicy, sub: Resource, down: set[str],
                    failed_over: Iterable[str] | None = None) -> None:
        failed = self.failed_over if failed_over is None else list(failed_over)
        home = self.primary_region.get(tr.cell, "")
        if home in failed and tr.cell not in self.has_standby:
            # Accepted at failover time (stamps-ops failover --accept-unprotected): said, never silent.
            self.add(WARNING, "stranded", f"tenant {tr.tenant}: CELL {tr.cell} has no standby; it is unreachable "
                     f"while {home} is failed over", sub["urn"])
            tr.verdict = "stranded (no standby)"
            return
        url, backend = backend_url(self.index, pol, tr.cell)
        if url is None:
            self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: no API Management backend for CELL "
                     f"{tr.cell}", sub["urn"])
            return
        tr.hops.append(_label(backend) if backend else f"base-url {url}")
        parsed = urlparse(url)
        host = self.index.resolve_host(parsed.hostname or "")
        if host is None:
            self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: {parsed.hostname} resolves to nothing "
                     "planned (no DNS record in dnsRecords)", sub["urn"], *(b["urn"] for b in [backend] if b))
            return
        pip = host.resource if host.kind == "public-ip" else None
        if host.kind == "traffic-manager":
            tr.hops.append(_label(host.resource))
            _, pip = self.tm_choice(host.resource, down)
            if pip is None:
                self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: every endpoint of "
                         f"{_label(host.resource)} fails its probe", host.resource["urn"])
                return
        if pip is None:
            self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: {parsed.hostname} leads to "
                     f"{_label(host.resource)}, not a regional gateway", sub["urn"])
            return
        source = self.apim_sources[0] if self.apim_sources else None
        result, apps = self.via_gateway(pip, Request(path=(parsed.path.rstrip("/") or "") + "/orders", source=source))
        if result is None:
            self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: {_label(pip)} fronts no gateway", pip["urn"])
            return
        tr.hops.append(f"{_label(result.gateway)} {result.rule}")
        if result.verdict != "routed":
            why = (f"blocks API Management (WAF rule {result.waf_rule})" if result.verdict == "blocked"
                   else "has no listener")
            self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: {_label(result.gateway)} {why}",
                     result.gateway["urn"])
            return
        if not apps:
            self.add(ERROR, "tenant-unreachable", f"tenant {tr.tenant}: {_label(result.gateway)} rule {result.rule} "
                     f"sends /cells/{tr.cell}/ to the empty pool {result.pool}", result.gateway["urn"])
            return
        app = apps[0]
        tr.instance, tr.role = str(app["name"]), _tag(app, "role")
        tr.region = str(app["inputs"].get("location"))
        reached_cell = _tag(app, "cell")
        dedicated_to = _tag(app, "tenant")
        if reached_cell != tr.cell or (dedicated_to and dedicated_to != tr.tenant):
            self.add(ERROR, "wrong-cell", f"tenant {tr.tenant} reaches {_label(app)} (CELL {reached_cell}"
                     f"{', dedicated to ' + dedicated_to if dedicated_to else ''}), not its own CELL {tr.cell}",
                     sub["urn"], app["urn"])
            tr.verdict = "wrong CELL"
            return
        expected = "standby" if home in failed else "primary"
        if tr.role != expected:
            why = (f"lands on the read-only standby while {home} serves" if tr.role == "standby"
                   else f"lands on the primary although {home} is failed over")
            self.add(ERROR, "wrong-instance", f"tenant {tr.tenant} {why} ({_label(app)})", sub["urn"], app["urn"])
            tr.verdict = "wrong instance"
            return
        tr.verdict = "ok"

    def check_traffic_manager_probes(self) -> None:
        """Each profile's probe must reach, at every endpoint, the CELL instances that serve its region there."""
        for profile in self.index.of(TM):
            cells = self.cells_behind(profile)
            for ep, pip in self.endpoint_targets(profile):
                if pip is None or pip["type"] != PIP:
                    self.add(ERROR, "probe-misses-backend", f"{_label(profile)} endpoint {ep.get('name')} is not a "
                             "planned public IP", profile["urn"])
                    continue
                result, apps = self.probe_members(profile, pip)
                path = (profile["inputs"].get("monitorConfig") or {}).get("path")
                if result is None or result.verdict != "routed" or not apps:
                    state = ("blocked by the WAF" if result and result.verdict == "blocked" else
                             f"lands in the empty pool {result.pool}" if result else "reaches no gateway")
                    self.add(ERROR, "probe-empty-pool",
                             f"{_label(profile)} probe {path} on endpoint {ep.get('name')} {state}: the endpoint "
                             "always looks down", profile["urn"], pip["urn"])
                    continue
                others = sorted({_tag(a, "cell") for a in apps} - cells)
                if others:
                    self.add(ERROR, "probe-misses-backend",
                             f"{_label(profile)} probe {path} on endpoint {ep.get('name')} also checks CELLs "
                             f"{', '.join(others)} it does not route", profile["urn"])

    def cells_behind(self, profile: Resource) -> set[str]:
        """The CELLs whose API Management backend host resolves to this profile."""
        pol = self.policy
        out = set()
        for cell in self.primary_region:
            url, _ = backend_url(self.index, pol, cell) if pol else (None, None)
            host = self.index.resolve_host(urlparse(url).hostname or "") if url else None
            if host is not None and host.resource is profile:
                out.add(cell)
        return out

    def check_region_down(self) -> None:
        """With every CELL of a primary region down, its profile's probes alone must move its traffic."""
        for profile in self.index.of(TM):
            targets = self.endpoint_targets(profile)
            if not targets or targets[0][1] is None:
                continue
            serving_pip = targets[0][1]
            _, apps = self.probe_members(profile, serving_pip)
            if not apps:
                continue
            down = {a["urn"] for a in apps}
            _, chosen = self.tm_choice(profile, down)
            region = str(serving_pip["inputs"].get("location"))
            if chosen is serving_pip:
                self.add(ERROR, "no-automatic-failover",
                         f"{_label(profile)}: with every CELL behind {region}'s gateway down, the probe still "
                         "passes there; traffic would not move", profile["urn"])
            elif chosen is None and len(targets) > 1:
                self.add(ERROR, "no-automatic-failover",
                         f"{_label(profile)}: with {region}'s CELLs down no other endpoint passes its probe",
                         profile["urn"])
            elif chosen is None:
                cells = sorted(self.cells_behind(profile))
                self.add(WARNING, "unprotected", f"{_label(profile)} has no DR endpoint: tenants of "
                         f"{', '.join(cells) or 'its CELLs'} are unreachable while {region} is down", profile["urn"])
                continue
            if any(self.primary_region.get(c) == region for c in self.cells_behind(profile)):
                self.simulate_outage(profile, region, down)

    def simulate_outage(self, profile: Resource, region: str, down: set[str]) -> None:
        """Walk the tenants of a downed region's CELLs: those without a standby are stranded (a warning)."""
        pol = self.policy
        if pol is None:
            return
        cells = self.cells_behind(profile)
        routing = routes_of(self.index, pol)
        stranded: dict[str, list[str]] = {}
        saved = self.findings
        for sub in self.index.of(APIM_SUBSCRIPTION):
            tenant = str(sub["inputs"].get("sid", "")).removeprefix(SUBSCRIPTION_PREFIX)
            cell = routing.get(tenant, ("", False))[0]
            if cell not in cells:
                continue
            self.findings = []
            tr = TenantRoute(tenant, cell=cell)
            self.walk_tenant(tr, pol, sub, down, failed_over=[*self.failed_over, region])
            if tr.verdict != "ok":
                stranded.setdefault(cell, []).append(tenant)
        self.findings = saved
        for cell, tenants in sorted(stranded.items()):
            self.add(WARNING, "unprotected",
                     f"while {region}'s CELLs are down, CELL {cell} has no standby serving: tenants "
                     f"{', '.join(sorted(tenants)[:5])}{' …' if len(tenants) > 5 else ''} are unreachable",
                     profile["urn"])

    def check_gateway_probes(self) -> None:
        """Every gateway probe must call a path the CELL app really serves (its readiness or liveness probe)."""
        for agw in self.index.of(AGW):
            vnet = gateway_vnet(self.index, agw)
            for pool in agw["inputs"].get("backendAddressPools") or []:
                probe = probe_of_pool(agw, str(pool.get("name")))
                for addr in pool.get("backendAddresses") or []:
                    host = self.index.resolve_host(str(addr.get("fqdn") or addr.get("ipAddress")), from_vnet=vnet)
                    if host is None or host.kind != "container-app" or probe is None:
                        continue
                    served = self.probe_paths(host.resource)
                    if probe.get("path") not in served:
                        self.add(ERROR, "probe-misses-backend",
                                 f"{_label(agw)} probe {probe.get('name')} calls {probe.get('path')} on "
                                 f"{_label(host.resource)}, which serves "
                                 f"{', '.join(sorted(served)) or 'no probe path'}",
                                 agw["urn"], host.resource["urn"])


def check_routes(resources: Iterable[Mapping[str, Any]], outputs: Mapping[str, Any],
                 failed_over: Iterable[str] = ()) -> RouteReport:
    """Walk a plan (its resources' inputs and the DNS records it prints); `failed_over` names the primary
    regions expected to serve from their DR region."""
    return Walker(resources, outputs, failed_over).run()


# Types the walker reads: what a plan must keep for the proof (the policy pack filters on them).
ROUTE_TYPES = (AFD_DOMAIN, AFD_GROUP, AFD_ORIGIN, AFD_ROUTE, AGW, APIM, APIM_SUBSCRIPTION, APP, APP_ENV, PIP, TM)
