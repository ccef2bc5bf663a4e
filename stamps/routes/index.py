"""The planned resources as Azure would see them: ARM ids resolved to resources, host names resolved by DNS.

`stamps routes` reads only what would be deployed: each resource's inputs, and the DNS records the program
tells the user to create (the `dnsRecords` output). Azure-assigned host names follow Azure's documented rules
(`<label>.<region>.cloudapp.azure.com` for a public IP's DNS label, `<name>.trafficmanager.net`,
`<service>-<region>-01.regional.azure-api.net` for an API Management regional gateway,
`<endpoint>-<hash>.z01.azurefd.net` for a Front Door endpoint); a Container Apps FQDN resolves only through a
private DNS zone named after its environment's domain, linked to the caller's virtual network.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from stamps.offline.mocks import ARM_IDS

Resource = Mapping[str, Any]

AGW = "azure-native:network:ApplicationGateway"
WAF = "azure-native:network:WebApplicationFirewallPolicy"
PIP = "azure-native:network:PublicIPAddress"
VNET = "azure-native:network:VirtualNetwork"
TM = "azure-native:trafficmanager:Profile"
APIM = "azure-native:apimanagement:ApiManagementService"
APIM_API = "azure-native:apimanagement:Api"
APIM_API_POLICY = "azure-native:apimanagement:ApiPolicy"
APIM_NAMED_VALUE = "azure-native:apimanagement:NamedValue"
APIM_BACKEND = "azure-native:apimanagement:Backend"
APIM_SUBSCRIPTION = "azure-native:apimanagement:Subscription"
APIM_PRODUCT = "azure-native:apimanagement:Product"
AFD_ENDPOINT = "azure-native:cdn:AFDEndpoint"
AFD_DOMAIN = "azure-native:cdn:AFDCustomDomain"
AFD_GROUP = "azure-native:cdn:AFDOriginGroup"
AFD_ORIGIN = "azure-native:cdn:AFDOrigin"
AFD_ROUTE = "azure-native:cdn:Route"
APP = "azure-native:app:ContainerApp"
APP_ENV = "azure-native:app:ManagedEnvironment"
ZONE = "azure-native:privatedns:PrivateZone"
ZONE_RECORD = "azure-native:privatedns:PrivateRecordSet"
ZONE_LINK = "azure-native:privatedns:VirtualNetworkLink"


def _template_regex(template: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos:m.start()]))
        name = m.group(1)
        if name == "sub":
            out.append(r"[^/]+")
        else:  # a scope or resource URI is itself an id, slashes included
            out.append(f"(?P<{name}>.+)" if name in ("scope", "resourceUri") else f"(?P<{name}>[^/]+)")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE)


# Longest templates first: a child's id also starts like its parent's.
_ID_PATTERNS = sorted(((t, _template_regex(tpl)) for t, tpl in ARM_IDS.items()), key=lambda p: -len(p[1].pattern))


@dataclass(frozen=True)
class Host:
    """What a DNS name leads to: a resource (and for API Management, which regional gateway)."""

    resource: Resource
    kind: str  # "public-ip", "traffic-manager", "apim", "front-door", "container-app"
    region: str | None = None


@dataclass
class PlanIndex:
    resources: list[Resource]
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def by_type(self) -> dict[str, list[Resource]]:
        out: dict[str, list[Resource]] = defaultdict(list)
        for r in self.resources:
            out[r["type"]].append(r)
        return out

    def of(self, typ: str) -> list[Resource]:
        return self.by_type.get(typ, [])

    # --- ARM ids -------------------------------------------------------------------------------------------
    def resolve_id(self, arm_id: Any) -> Resource | None:
        """The planned resource an ARM id names (matched on the names its path carries), or None."""
        if not isinstance(arm_id, str):
            return None
        for typ, pattern in _ID_PATTERNS:
            m = pattern.match(arm_id)
            if not m:
                continue
            want = {k: v.lower() for k, v in m.groupdict().items()}
            for r in self.of(typ):
                ins = r["inputs"]
                if all(str(ins.get(k, "")).lower() == v for k, v in want.items()):
                    return r
            return None
        return None

    # --- DNS -------------------------------------------------------------------------------------------------
    @cached_property
    def dns_records(self) -> dict[str, tuple[str, str]]:
        """Records the user creates (name → (type, value)), as the program prints them."""
        out: dict[str, tuple[str, str]] = {}
        for rec in self.outputs.get("dnsRecords") or []:
            if isinstance(rec, Mapping) and isinstance(rec.get("name"), str) and isinstance(rec.get("value"), str):
                out[rec["name"].lower().rstrip(".")] = (str(rec.get("type", "")).upper(), rec["value"])
        return out

    def resolve_host(self, host: str, from_vnet: str | None = None, depth: int = 0) -> Host | None:
        """Follow CNAMEs and Azure's naming rules to the resource answering `host`."""
        host = host.lower().rstrip(".")
        if depth > 8:
            return None
        if host in self.dns_records:
            typ, value = self.dns_records[host]
            return self.resolve_host(value, from_vnet, depth + 1) if typ == "CNAME" else None
        m = re.match(r"^([a-z0-9-]+)\.([a-z0-9]+)\.cloudapp\.azure\.com$", host)
        if m:
            for r in self.of(PIP):
                dns = r["inputs"].get("dnsSettings") or {}
                if dns.get("domainNameLabel", "").lower() == m.group(1) and r["inputs"].get("location") == m.group(2):
                    return Host(r, "public-ip", m.group(2))
            return None
        m = re.match(r"^([a-z0-9-]+)\.trafficmanager\.net$", host)
        if m:
            for r in self.of(TM):
                if ((r["inputs"].get("dnsConfig") or {}).get("relativeName") or "").lower() == m.group(1):
                    return Host(r, "traffic-manager")
            return None
        m = re.match(r"^(.+)-([a-z0-9]+)-01\.regional\.azure-api\.net$", host) or \
            re.match(r"^(.+)()\.azure-api\.net$", host)
        if m:
            for r in self.of(APIM):
                if r["inputs"].get("serviceName", "").lower() == m.group(1):
                    return Host(r, "apim", m.group(2) or r["inputs"].get("location"))
            return None
        if host.endswith(".azurefd.net"):
            for r in self.of(AFD_ENDPOINT):
                if host.startswith(r["inputs"].get("endpointName", "\0").lower() + "-"):
                    return Host(r, "front-door")
            return None
        if host.endswith(".azurecontainerapps.io"):
            return self._resolve_app(host, from_vnet)
        return None

    def _resolve_app(self, host: str, from_vnet: str | None) -> Host | None:
        app_name, _, domain = host.partition(".")
        zone = next((z for z in self.of(ZONE) if str(z["inputs"].get("privateZoneName", "")).lower() == domain), None)
        if zone is None:
            return None  # an internal environment's names resolve only through its private zone
        zname = zone["inputs"]["privateZoneName"]
        wildcard = any(rec["inputs"].get("privateZoneName") == zname and rec["inputs"].get("recordType") == "A"
                       and rec["inputs"].get("relativeRecordSetName") in ("*", app_name)
                       and rec["inputs"].get("aRecords") for rec in self.of(ZONE_RECORD))
        linked = from_vnet is None or any(
            link["inputs"].get("privateZoneName") == zname
            and (self.resolve_id((link["inputs"].get("virtualNetwork") or {}).get("id")) or {}).get("urn") == from_vnet
            for link in self.of(ZONE_LINK))
        if not (wildcard and linked):
            return None
        app = next((a for a in self.of(APP) if a["inputs"].get("containerAppName", "").lower() == app_name), None)
        return Host(app, "container-app", app["inputs"].get("location")) if app else None

    # --- helpers -------------------------------------------------------------------------------------------
    def gateway_for_ip(self, pip: Resource) -> Resource | None:
        for agw in self.of(AGW):
            for fe in agw["inputs"].get("frontendIPConfigurations") or []:
                if self.resolve_id((fe.get("publicIPAddress") or {}).get("id")) is pip:
                    return agw
        return None

    def named_values(self) -> dict[str, str]:
        return {str(nv["inputs"].get("namedValueId")): str(nv["inputs"].get("value", ""))
                for nv in self.of(APIM_NAMED_VALUE)}


def sub_name(ref: Any) -> str | None:
    """The last segment of a sub-resource reference (`.../backendAddressPools/pool-x` → `pool-x`)."""
    rid = (ref or {}).get("id") if isinstance(ref, Mapping) else None
    return rid.rsplit("/", 1)[-1] if isinstance(rid, str) else None


def names(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(i.get("name")): i for i in items}
