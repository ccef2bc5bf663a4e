"""What an Application Gateway does with one request: WAF custom rules, listener, path map, pool.

Evaluated from the gateway's and its WAF policy's planned inputs, the way the gateway would: custom rules in
priority order (first match decides: Allow skips the rest of the WAF, Block answers 403), then the listener on
the frontend that owns the public IP, its routing rule, the first path rule whose path matches (a trailing `*`
matches any suffix), and that rule's pool; unmatched paths go to the map's default pool.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stamps.routes.index import WAF, PlanIndex, Resource, names, sub_name


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    source: str | None = None  # the caller's address; None = anyone on the internet


@dataclass
class GatewayResult:
    gateway: Resource
    verdict: str  # "blocked", "no-listener", "routed"
    rule: str = ""
    waf_rule: str = ""
    pool: str = ""
    addresses: list[str] = field(default_factory=list)
    backend_path: str = ""

    @property
    def empty_pool(self) -> bool:
        return self.verdict == "routed" and not self.addresses


def _path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            continue  # not known yet (preview) or not an address: matches nothing
    return out


def _condition(cond: Mapping[str, Any], req: Request) -> bool:
    variables = [v.get("variableName") for v in cond.get("matchVariables") or []]
    values = [str(v) for v in cond.get("matchValues") or []]
    op = cond.get("operator")
    hit = False
    for var in variables:
        if var == "RemoteAddr":
            if req.source is None:
                # Anyone on the internet: a match only for a rule that covers every address.
                hit = op == "IPMatch" and any(n.num_addresses >= 2**32 for n in _networks(values) if n.version == 4)
            else:
                addr = ipaddress.ip_address(req.source)
                hit = op == "IPMatch" and any(addr in n for n in _networks(values))
        elif var == "RequestMethod":
            hit = op == "Equal" and req.method in values
        elif var == "RequestUri":
            hit = {"BeginsWith": any(req.path.startswith(v) for v in values),
                   "Equal": req.path in values,
                   "Contains": any(v in req.path for v in values),
                   "EndsWith": any(req.path.endswith(v) for v in values)}.get(str(op), False)
        if hit:
            break
    return hit != bool(cond.get("negationConditon") or cond.get("negationCondition"))


def waf_decision(index: PlanIndex, agw: Resource, req: Request) -> tuple[str, str]:
    """("allow"|"block"|"pass", rule name) from the gateway's WAF policy custom rules."""
    policy = index.resolve_id((agw["inputs"].get("firewallPolicy") or {}).get("id"))
    if policy is None or policy["type"] != WAF:
        return "pass", ""
    settings = policy["inputs"].get("policySettings") or {}
    if settings.get("state", "Enabled") != "Enabled":
        return "pass", ""
    rules = sorted(policy["inputs"].get("customRules") or [], key=lambda r: float(r.get("priority", 1e9)))
    for rule in rules:
        if rule.get("state", "Enabled") != "Enabled" or rule.get("ruleType", "MatchRule") != "MatchRule":
            continue
        if all(_condition(c, req) for c in rule.get("matchConditions") or []):
            action = str(rule.get("action", "")).lower()
            # Detection mode logs and lets everything through.
            if action == "block" and settings.get("mode") != "Prevention":
                return "pass", str(rule.get("name"))
            return ("allow" if action == "allow" else "block" if action == "block" else "pass"), str(rule.get("name"))
    return "pass", ""


def evaluate(index: PlanIndex, agw: Resource, pip: Resource | None, req: Request) -> GatewayResult:
    ins = agw["inputs"]
    frontends = [fe for fe in ins.get("frontendIPConfigurations") or []
                 if pip is None or index.resolve_id((fe.get("publicIPAddress") or {}).get("id")) is pip]
    fe_names = {str(fe.get("name")) for fe in frontends}
    listeners = [li for li in ins.get("httpListeners") or [] if sub_name(li.get("frontendIPConfiguration")) in fe_names]
    rules = sorted(ins.get("requestRoutingRules") or [], key=lambda r: float(r.get("priority", 1e9)))
    rule = next((r for r in rules if sub_name(r.get("httpListener")) in {str(li.get("name")) for li in listeners}),
                None)
    if rule is None:
        return GatewayResult(agw, "no-listener")
    action, waf_rule = waf_decision(index, agw, req)
    if action == "block":
        return GatewayResult(agw, "blocked", waf_rule=waf_rule)
    pools = names(ins.get("backendAddressPools") or [])
    settings = names(ins.get("backendHttpSettingsCollection") or [])
    if rule.get("ruleType") == "PathBasedRouting":
        path_map = names(ins.get("urlPathMaps") or []).get(str(sub_name(rule.get("urlPathMap"))), {})
        chosen = next((pr for pr in path_map.get("pathRules") or []
                       if any(_path_matches(p, req.path) for p in pr.get("paths") or [])), None)
        pool_ref = (chosen or {}).get("backendAddressPool") or path_map.get("defaultBackendAddressPool")
        settings_ref = (chosen or {}).get("backendHttpSettings") or path_map.get("defaultBackendHttpSettings")
        rule_name = str((chosen or {}).get("name") or "default")
    else:
        pool_ref, settings_ref, rule_name = rule.get("backendAddressPool"), rule.get("backendHttpSettings"), "basic"
    pool = pools.get(str(sub_name(pool_ref)), {})
    setting = settings.get(str(sub_name(settings_ref)), {})
    addresses = [str(a.get("fqdn") or a.get("ipAddress")) for a in pool.get("backendAddresses") or []]
    return GatewayResult(agw, "routed", rule=rule_name, waf_rule=waf_rule, pool=str(pool.get("name", "")),
                         addresses=addresses, backend_path=str(setting.get("path") or req.path))


def probe_of_pool(agw: Resource, pool: str) -> Mapping[str, Any] | None:
    """The custom probe the gateway uses for a pool (via the settings the path rules pair with it)."""
    ins = agw["inputs"]
    settings = names(ins.get("backendHttpSettingsCollection") or [])
    probes = names(ins.get("probes") or [])
    for pm in ins.get("urlPathMaps") or []:
        for pr in pm.get("pathRules") or []:
            if sub_name(pr.get("backendAddressPool")) == pool:
                s = settings.get(str(sub_name(pr.get("backendHttpSettings"))), {})
                return probes.get(str(sub_name(s.get("probe"))))
    return None


def gateway_vnet(index: PlanIndex, agw: Resource) -> str | None:
    """URN of the virtual network the gateway's subnet belongs to (whose private zones it resolves with)."""
    for cfg in agw["inputs"].get("gatewayIPConfigurations") or []:
        subnet = (cfg.get("subnet") or {}).get("id")
        if isinstance(subnet, str) and "/subnets/" in subnet:
            vnet = index.resolve_id(subnet.split("/subnets/")[0])
            if vnet is not None:
                return str(vnet["urn"])
    return None
