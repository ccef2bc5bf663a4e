"""The regional layer: network, secrets, automation and the WAF entry point for the region's CELLs.

Runbook: "Regional Monitoring - Application Gateway health, Key Vault access patterns, Automation Account
execution". Each region has one virtual network carved into fixed /24 slots (App Gateway, private
endpoints, then one per CELL), a Key Vault (RBAC, soft delete, purge protection), an Automation Account
for runbooks, and an Application Gateway WAF_v2 (Microsoft DRS 2.2, Prevention) whose path rules send
`/cells/<cell>/*` to that CELL's pool. Unmatched paths go to an empty pool, never to a random CELL.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import cast

import pulumi
import pulumi_azure_native as azure

from stamps.components.base import StampsComponent
from stamps.components.cell import Cell, CellNetwork, PrimaryData, Shared
from stamps.config.capabilities import ZONES, zones_for
from stamps.config.errors import ConfigError
from stamps.config.slots import RESERVED
from stamps.environment import CellInstance, Environment
from stamps.stacks.contracts import RegionOutputs, pick

APPGW_SLOT, ENDPOINT_SLOT, FIRST_CELL_SLOT = 0, 1, RESERVED
HEALTH_PREFIX = "/health/"


def health_path(primary: str) -> str:
    """The gateway path a primary region's Traffic Manager probe calls: healthy while one of its CELLs is."""
    return f"{HEALTH_PREFIX}{primary}"


def edge_rules(api_management_ips: pulumi.Input[list[str]]) -> list[azure.network.WebApplicationFirewallCustomRuleArgs]:
    """Only API Management reaches a CELL: the gateway admits its addresses, and anyone on the health paths
    (probes; they return no tenant data), and blocks everything else before routing."""
    def cond(variable: str, operator: str, values: pulumi.Input[list[str]]) -> azure.network.MatchConditionArgs:
        return azure.network.MatchConditionArgs(
            match_variables=[azure.network.MatchVariableArgs(variable_name=variable)],
            operator=operator, match_values=values)

    return [
        azure.network.WebApplicationFirewallCustomRuleArgs(
            name="AllowApiManagement", priority=10, rule_type="MatchRule", action="Allow", state="Enabled",
            match_conditions=[cond("RemoteAddr", "IPMatch", api_management_ips)]),
        azure.network.WebApplicationFirewallCustomRuleArgs(
            name="AllowHealthProbes", priority=20, rule_type="MatchRule", action="Allow", state="Enabled",
            match_conditions=[cond("RequestMethod", "Equal", ["GET", "HEAD"]),
                              cond("RequestUri", "BeginsWith", [HEALTH_PREFIX])]),
        azure.network.WebApplicationFirewallCustomRuleArgs(
            name="BlockEveryoneElse", priority=100, rule_type="MatchRule", action="Block", state="Enabled",
            match_conditions=[cond("RemoteAddr", "IPMatch", ["0.0.0.0/0"])]),
    ]
PRIVATE_ZONES = {"sql": "privatelink.database.windows.net", "blob": "privatelink.blob.core.windows.net",
                 "automation": "privatelink.azure-automation.net", "cosmos": "privatelink.documents.azure.com"}
# Creating or updating a WAF_v2 gateway takes minutes to tens of minutes; give it room before giving up.
APP_GATEWAY_TIMEOUTS = pulumi.CustomTimeouts(create="60m", update="60m", delete="60m")
# Operators import and rotate the edge certificate in the regional vaults (RBAC-only vaults: no access policies).
OPERATOR_VAULT_ROLES = ("Key Vault Certificates Officer", "Key Vault Secrets Officer")


def subnet_slots(address_space: str) -> list[str]:
    """The region's /24 slots in order; slot numbers are stable, so adding a CELL never moves another."""
    return [str(s) for s in ipaddress.ip_network(address_space).subnets(new_prefix=24)]


def cell_slot(env: Environment, cell: str) -> int:
    """A CELL keeps the same /24 in its primary and DR regions, for life (stamps/config/slots.py)."""
    return FIRST_CELL_SLOT + env.cell_slots[cell]


@dataclass(frozen=True)
class CellEndpoint:
    """What the gateway needs of a CELL instance it routes to: which instance, and its app's FQDN."""

    instance: CellInstance
    fqdn: pulumi.Input[str]


class Region(StampsComponent):
    """One Azure region of the environment: its network, vault and automation, the CELL instances it hosts
    and the App Gateway in front of them.

    Declared in parts, because the parts deploy apart (stamps/stacks/units.py): `network` in the region's
    stack, `cell` once per CELL instance stack, `edge` in the region's edge stack, which needs the CELLs'
    addresses. Each of those stacks declares this component under the same name, so every resource keeps
    the URN it has when the whole fleet is one stack. `done()` registers the outputs, last.
    """

    def __init__(self, name: str, env: Environment, region: str,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:regional:Region", name, opts)
        self.env = env
        self.region = region
        self.cells: list[Cell] = []
        # What the gateway must wait for when declared in the same program as the network (the single stack);
        # across stacks the region's stack has finished before the edge's starts.
        self.edge_waits: list[pulumi.Resource] = []
        self.app_gateway: azure.network.ApplicationGateway | None = None
        self._outputs: dict[str, pulumi.Input[str]] = {}

    def done(self) -> None:
        self.register_outputs(self._outputs)

    def network(self, shared: Shared) -> RegionOutputs:
        """The region's stack: network, private DNS, Key Vault, Automation, and the gateway's IP, identity
        and certificate (in place before any gateway reads them)."""
        env, region = self.env, self.region
        n = env.naming
        rcfg = env.regions[region]
        tags = env.tags("regional", region=region)
        # Zone redundancy of the gateway and its IP: on where the region has zones (stamps/config/capabilities).
        zoned = zones_for(region, rcfg.zone_redundant)
        slots = subnet_slots(rcfg.address_space)
        instances = env.instances_in(region)

        self.resource_group = azure.resources.ResourceGroup(
            self.child("rg"), resource_group_name=n.region_group(region), location=region, tags=tags,
            opts=self.opts(),
        )
        rg = self.resource_group.name

        # --- Network ------------------------------------------------------------------------------------
        subnets = [
            # The gateway reads its certificate from the regional Key Vault over a service endpoint.
            azure.network.SubnetArgs(
                name="snet-appgw", address_prefix=slots[APPGW_SLOT],
                service_endpoints=[azure.network.ServiceEndpointPropertiesFormatArgs(service="Microsoft.KeyVault")],
            ),
            azure.network.SubnetArgs(
                name="snet-private-endpoints", address_prefix=slots[ENDPOINT_SLOT],
                private_endpoint_network_policies="Enabled",
            ),
        ] + [
            azure.network.SubnetArgs(
                name=f"snet-cell-{inst.name}",
                address_prefix=slots[cell_slot(env, inst.name)],
                delegations=[azure.network.DelegationArgs(name="aca", service_name="Microsoft.App/environments")],
            )
            for inst in instances
        ]
        self.vnet = azure.network.VirtualNetwork(
            self.child("vnet"),
            virtual_network_name=n.vnet(region),
            resource_group_name=rg,
            location=region,
            address_space=azure.network.AddressSpaceArgs(address_prefixes=[rcfg.address_space]),
            subnets=subnets,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.vnet, shared.workspace_id)
        subnet_ids = cast("pulumi.Output[dict[str, str]]",  # every subnet of ours has a name and an id
                          self.vnet.subnets.apply(lambda ss: {s.name: s.id for s in (ss or [])}))

        zones = {}
        for what, zone in PRIVATE_ZONES.items():
            z = azure.privatedns.PrivateZone(
                self.child(f"dns-{what}"), private_zone_name=zone, resource_group_name=rg, location="global",
                tags=tags, opts=self.opts(),
            )
            azure.privatedns.VirtualNetworkLink(
                self.child(f"dns-{what}-link"),
                virtual_network_link_name=f"link-{n.vnet(region)}",
                private_zone_name=z.name,
                resource_group_name=rg,
                location="global",
                registration_enabled=False,
                virtual_network=azure.privatedns.SubResourceArgs(id=self.vnet.id),
                tags=tags,
                opts=self.opts(),
            )
            zones[what] = z.id

        # --- Key Vault and Automation -----------------------------------------------------------------------
        self.key_vault = azure.keyvault.Vault(
            self.child("kv"),
            vault_name=n.key_vault(region),
            resource_group_name=rg,
            location=region,
            properties=azure.keyvault.VaultPropertiesArgs(
                tenant_id=shared.tenant_id,
                sku=azure.keyvault.SkuArgs(family="A", name=azure.keyvault.SkuName.STANDARD),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=90,
                enable_purge_protection=True,
                # Closed by default: only the App Gateway's subnet (its certificate), the operators' egress
                # ranges (certificate import and rotation) and trusted Azure services get through; "Disabled"
                # would shut the gateway out, it has no private endpoint.
                public_network_access="Enabled",
                network_acls=azure.keyvault.NetworkRuleSetArgs(
                    default_action="Deny", bypass="AzureServices",
                    virtual_network_rules=[azure.keyvault.VirtualNetworkRuleArgs(
                        id=subnet_ids.apply(lambda ids: ids["snet-appgw"]))],
                    ip_rules=[azure.keyvault.IPRuleArgs(value=r) for r in env.config.operator_ip_ranges],
                ),
            ),
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.key_vault, shared.workspace_id)
        self.automation = azure.automation.AutomationAccount(
            self.child("aa"),
            automation_account_name=n.automation(region),
            resource_group_name=rg,
            location=region,
            sku=azure.automation.SkuArgs(name="Basic"),
            identity=azure.automation.IdentityArgs(type=azure.automation.ResourceIdentityType.SYSTEM_ASSIGNED),
            disable_local_auth=True,
            public_network_access=False,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.automation, shared.workspace_id)
        # Public access is off, so webhooks and hybrid workers reach the account over private endpoints only
        # (sub-resources Webhook and DSCAndHybridWorker:
        # https://learn.microsoft.com/azure/automation/how-to/private-link-security).
        for group in ("Webhook", "DSCAndHybridWorker"):
            self.private_endpoint(f"aa-{group.lower()}", self.automation.id, group,
                                  subnet_ids.apply(lambda ids: ids["snet-private-endpoints"]), zones["automation"],
                                  rg, region, tags)
        # The tenant directory admits only the operators' ranges over its public endpoint: the region's CELLs
        # read it over a private endpoint (sub-resource "Sql" for the NoSQL API,
        # https://learn.microsoft.com/azure/cosmos-db/how-to-configure-private-endpoints).
        if shared.directory is not None:
            self.private_endpoint("cosmos", shared.directory.account_id, "Sql",
                                  subnet_ids.apply(lambda ids: ids["snet-private-endpoints"]), zones["cosmos"],
                                  rg, region, tags)

        # --- Application Gateway WAF_v2 ---------------------------------------------------------------------
        self.public_ip = azure.network.PublicIPAddress(
            self.child("agw-pip"),
            public_ip_address_name=f"pip-{n.app_gateway(region)}",
            resource_group_name=rg,
            location=region,
            sku=azure.network.PublicIPAddressSkuArgs(name="Standard", tier="Regional"),
            public_ip_allocation_method="Static",
            zones=list(ZONES) if zoned else None,
            dns_settings=azure.network.PublicIPAddressDnsSettingsArgs(
                domain_name_label=f"{n.app_gateway(region)}-{n.suffix}"
            ),
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.public_ip, shared.workspace_id)
        self.identity = azure.managedidentity.UserAssignedIdentity(
            self.child("agw-id"), resource_name_=f"id-{n.app_gateway(region)}", resource_group_name=rg,
            location=region, tags=tags, opts=self.opts(),
        )
        # --- The edge certificate, provisioned before the gateway reads it ------------------------------------
        tls = env.config.tls
        # The vault the gateway reads: an existing, centrally managed one, or this region's (PFX stored below).
        cert_vault = tls.key_vault_id or self.key_vault.id
        self.certificate: azure.keyvault.Secret | None = None
        if tls.key_vault_id is None:
            # Stored through ARM (Microsoft.KeyVault/vaults/secrets), which the vault's firewall does not apply to:
            # "control plane operations (... deployment of secrets or keys through ARM templates) are not affected"
            # (learn.microsoft.com/azure/key-vault/general/overview-vnet-service-endpoints). A data-plane write from
            # the deployer would be refused; the pack's keyvault-writes-through-arm rule keeps it that way.
            self.certificate = azure.keyvault.Secret(
                self.child("edge-cert"),
                vault_name=self.key_vault.name,
                resource_group_name=rg,
                secret_name=tls.certificate_name,
                # App Gateway reads a password-less PFX stored as a Key Vault secret (key-vault-certs).
                properties=azure.keyvault.SecretPropertiesArgs(value=_edge_pfx(), content_type="application/x-pkcs12"),
                tags=tags,
                opts=self.opts(),
            )
        for i, op in enumerate(env.config.operators):
            for role in OPERATOR_VAULT_ROLES:
                self.grant(f"kv-operator-{i}-{role.split()[2].lower()}", self.key_vault.id, op.object_id, role,
                           shared.subscription_id, principal_type=op.principal_type)
        # The gateway's identity reads the certificate when the gateway is created; RBAC grants apply minutes after
        # they exist, so the gateway waits for the grant and then for its propagation.
        self.certificate_access = self.grant("agw-kv-access", cert_vault, self.identity.principal_id,
                                             "Key Vault Secrets User", shared.subscription_id)
        self.certificate_access_wait = self.propagation_wait("agw-kv-access-wait", [self.certificate_access])
        self.edge_waits = [self.key_vault, self.certificate_access, self.certificate_access_wait]
        self.edge_waits += [self.certificate] if self.certificate else []
        entry_fqdn: pulumi.Output[str] = self.public_ip.dns_settings.apply(lambda d: (d.fqdn if d else None) or "")
        self._outputs = {"keyVaultId": self.key_vault.id, "entryFqdn": entry_fqdn}
        return RegionOutputs(
            resource_group_name=self.resource_group.name,
            vnet_id=self.vnet.id,
            subnet_ids=subnet_ids,
            dns_zone_ids=zones,
            key_vault_id=self.key_vault.id,
            key_vault_uri=self.key_vault.properties.apply(lambda p: p.vault_uri),
            public_ip_id=self.public_ip.id,
            entry_fqdn=entry_fqdn,
            identity_id=self.identity.id,
        )

    def cell(self, inst: CellInstance, net: RegionOutputs, shared: Shared,
             primary: PrimaryData | None = None) -> Cell:
        """One CELL instance of this region, in the subnet slot its CELL holds for life."""
        subnet_ids, zones = net.subnet_ids, net.dns_zone_ids
        cell_net = CellNetwork(
            subnet_id=pick(subnet_ids, f"snet-cell-{inst.name}"),
            vnet_id=net.vnet_id,
            endpoint_subnet_id=pick(subnet_ids, "snet-private-endpoints"),
            sql_dns_zone_id=pick(zones, "sql"),
            blob_dns_zone_id=pick(zones, "blob"),
        )
        cell = Cell(f"cell-{inst.key}", self.env, inst, cell_net, shared, primary=primary,
                    opts=self.opts())
        self.cells.append(cell)
        return cell

    def edge(self, net: RegionOutputs, cells: list[CellEndpoint], shared: Shared,
             api_management_ips: pulumi.Input[list[str]]) -> azure.network.ApplicationGateway:
        """The region's edge stack: the WAF policy and the App Gateway routing to the region's CELLs."""
        env, region = self.env, self.region
        n = env.naming
        tags = env.tags("regional", region=region)
        self.waf_policy = azure.network.WebApplicationFirewallPolicy(
            self.child("waf"),
            policy_name=f"waf-{n.app_gateway(region)}",
            resource_group_name=net.resource_group_name,
            location=region,
            policy_settings=azure.network.PolicySettingsArgs(
                state="Enabled", mode="Prevention", request_body_check=True,
            ),
            custom_rules=edge_rules(api_management_ips),
            managed_rules=azure.network.ManagedRulesDefinitionArgs(
                managed_rule_sets=[
                    # DRS 2.2 supersedes every CRS (OWASP) version: learn.microsoft.com/azure/web-application-firewall/
                    # ag/upgrade-ruleset-version ("always use the highest available version (DRS 2.2)").
                    azure.network.ManagedRuleSetArgs(rule_set_type="Microsoft_DefaultRuleSet", rule_set_version="2.2"),
                    azure.network.ManagedRuleSetArgs(rule_set_type="Microsoft_BotManagerRuleSet",
                                                     rule_set_version="1.0"),
                ]
            ),
            tags=tags,
            opts=self.opts(),
        )
        self.app_gateway = self._app_gateway(net, cells, shared, tags)
        self.diagnose(self.app_gateway, shared.workspace_id)
        self._outputs = {**self._outputs, "appGatewayId": self.app_gateway.id}
        return self.app_gateway

    def _app_gateway(self, net: RegionOutputs, cells: list[CellEndpoint], shared: Shared,
                     tags: dict[str, str]) -> azure.network.ApplicationGateway:
        env, region, rg = self.env, self.region, net.resource_group_name
        n = env.naming
        agw_name = n.app_gateway(region)

        def sub_id(kind: str, child: str) -> pulumi.Output[str]:
            # App Gateway parts reference each other by ARM id inside the one resource.
            return pulumi.Output.concat(
                "/subscriptions/", shared.subscription_id, "/resourceGroups/", rg,
                "/providers/Microsoft.Network/applicationGateways/", agw_name, f"/{kind}/{child}",
            )

        def ref(kind: str, child: str) -> azure.network.SubResourceArgs:
            return azure.network.SubResourceArgs(id=sub_id(kind, child))

        pools = [azure.network.ApplicationGatewayBackendAddressPoolArgs(name="pool-unrouted")]
        settings, probes, rules = [], [], []

        def ready_path(cell: CellEndpoint) -> str:
            # The gateway probes what the app's own readiness probe calls (stamps:app.readinessPath).
            app = env.config.app_for(cell.instance.cell)
            return app.readiness_path if app else "/"

        def backend(key: str, fqdns: list[pulumi.Input[str]], probe_path: str,
                    path_override: str | None = None) -> None:
            # Backends by FQDN with the host name taken from it: the environment's ingress routes by host,
            # and one pool may hold several CELLs (the health pools).
            pools.append(azure.network.ApplicationGatewayBackendAddressPoolArgs(
                name=f"pool-{key}", backend_addresses=[
                    azure.network.ApplicationGatewayBackendAddressArgs(fqdn=f) for f in fqdns]))
            probes.append(azure.network.ApplicationGatewayProbeArgs(
                name=f"probe-{key}", protocol="Https", path=probe_path, interval=30, timeout=30,
                unhealthy_threshold=3, pick_host_name_from_backend_http_settings=True,
            ))
            settings.append(azure.network.ApplicationGatewayBackendHttpSettingsArgs(
                name=f"settings-{key}", port=443, protocol="Https", cookie_based_affinity="Disabled",
                pick_host_name_from_backend_address=True, request_timeout=30, path=path_override,
                probe=ref("probes", f"probe-{key}"),
            ))

        def rule(key: str, path: str) -> azure.network.ApplicationGatewayPathRuleArgs:
            return azure.network.ApplicationGatewayPathRuleArgs(
                name=f"path-{key}", paths=[path],
                backend_address_pool=ref("backendAddressPools", f"pool-{key}"),
                backend_http_settings=ref("backendHttpSettingsCollection", f"settings-{key}"),
            )

        for cell in cells:
            inst = cell.instance
            # An isolated CELL's pool is emptied: the gateway stops sending it traffic at once.
            backend(inst.name, [] if inst.isolated else [cell.fqdn], ready_path(cell))
            rules.append(rule(inst.name, f"/cells/{inst.name}/*"))
        # One health path per primary region this gateway serves for: its pool holds exactly the CELL
        # instances that serve that region's tenants from here, so a Traffic Manager probe on it fails when
        # they all fail, and never lands in the empty default pool.
        for primary in env.primaries_backed_by(region):
            members = [c for c in cells if c.instance.cell.region == primary and not c.instance.isolated]
            if not members:
                continue
            key = f"health-{primary}"
            # The probe path is rewritten to the apps' readiness path: the health path returns no tenant data.
            backend(key, [c.fqdn for c in members], ready_path(members[0]), path_override=ready_path(members[0]))
            rules.append(rule(key, health_path(primary)))
        settings.append(azure.network.ApplicationGatewayBackendHttpSettingsArgs(
            name="settings-unrouted", port=443, protocol="Https", cookie_based_affinity="Disabled", request_timeout=30,
        ))
        tls = env.config.tls
        cert = tls.certificate_name
        # Versionless: the gateway follows rotations (a new PFX, or a new version in the central vault).
        secret_id = (pulumi.Output.from_input(net.key_vault_uri).apply(lambda uri: tls.secret_id(uri))
                     if tls.key_vault_id is None else tls.secret_id())
        # It reads the certificate at creation: it waits for the secret and for its own role assignment
        # (ApplicationGatewayKeyVaultSecretException / LinkedAccessCheckFailed otherwise).
        waits_for = self.edge_waits
        return azure.network.ApplicationGateway(
            self.child("agw"),
            application_gateway_name=agw_name,
            resource_group_name=rg,
            location=region,
            zones=list(ZONES) if zones_for(region, env.regions[region].zone_redundant) else None,
            sku=azure.network.ApplicationGatewaySkuArgs(name="WAF_v2", tier="WAF_v2"),
            autoscale_configuration=azure.network.ApplicationGatewayAutoscaleConfigurationArgs(
                min_capacity=2, max_capacity=10
            ),
            identity=azure.network.ManagedServiceIdentityArgs(
                type=azure.network.ResourceIdentityType.USER_ASSIGNED,
                user_assigned_identities=[net.identity_id],
            ),
            firewall_policy=azure.network.SubResourceArgs(id=self.waf_policy.id),
            ssl_policy=azure.network.ApplicationGatewaySslPolicyArgs(
                policy_type="Predefined", policy_name="AppGwSslPolicy20220101S"
            ),
            gateway_ip_configurations=[azure.network.ApplicationGatewayIPConfigurationArgs(
                name="gateway-ip", subnet=azure.network.SubResourceArgs(id=pick(net.subnet_ids, "snet-appgw")),
            )],
            frontend_ip_configurations=[azure.network.ApplicationGatewayFrontendIPConfigurationArgs(
                name="frontend-public", public_ip_address=azure.network.SubResourceArgs(id=net.public_ip_id),
            )],
            frontend_ports=[azure.network.ApplicationGatewayFrontendPortArgs(name="https", port=443)],
            ssl_certificates=[azure.network.ApplicationGatewaySslCertificateArgs(
                name=cert,
                key_vault_secret_id=secret_id,
            )],
            http_listeners=[azure.network.ApplicationGatewayHttpListenerArgs(
                name="listener-https", protocol="Https",
                frontend_ip_configuration=ref("frontendIPConfigurations", "frontend-public"),
                frontend_port=ref("frontendPorts", "https"),
                ssl_certificate=ref("sslCertificates", cert),
            )],
            backend_address_pools=pools,
            backend_http_settings_collection=settings,
            probes=probes,
            url_path_maps=[azure.network.ApplicationGatewayUrlPathMapArgs(
                name="cells",
                default_backend_address_pool=ref("backendAddressPools", "pool-unrouted"),
                default_backend_http_settings=ref("backendHttpSettingsCollection", "settings-unrouted"),
                path_rules=rules,
            )],
            request_routing_rules=[azure.network.ApplicationGatewayRequestRoutingRuleArgs(
                name="route-cells", rule_type="PathBasedRouting", priority=100,
                http_listener=ref("httpListeners", "listener-https"),
                url_path_map=ref("urlPathMaps", "cells"),
            )],
            tags=tags,
            opts=self.opts(depends_on=waits_for, custom_timeouts=APP_GATEWAY_TIMEOUTS),
        )


EDGE_PFX_KEY = "stamps:edgeCertificatePfx"
_SET_PFX = (f"set the gateways' certificate with `pulumi config set --secret {EDGE_PFX_KEY} "
            "\"$(base64 -w0 edge.pfx)\"`, or name an existing vault holding it in stamps:tls.keyVaultId")


def _edge_pfx() -> pulumi.Output[str]:
    """The edge certificate as a secret Output. Missing, empty or given in plain text is a config error naming the
    key: the gateway would otherwise fail on Azure after minutes (ApplicationGatewayKeyVaultSecretException), or the
    private key would sit unencrypted in the stack file and the state."""
    from pulumi.runtime.config import get_config, get_config_secret_keys_env, is_config_secret

    raw = get_config(EDGE_PFX_KEY)
    if raw is None:
        raise ConfigError([f"{EDGE_PFX_KEY}: missing; {_SET_PFX}"])
    if not raw.strip():
        raise ConfigError([f"{EDGE_PFX_KEY}: empty; {_SET_PFX}"])
    # The CLI lists secret keys in PULUMI_CONFIG_SECRET_KEYS; set_all_config (the offline plan) marks them in-process.
    if EDGE_PFX_KEY not in get_config_secret_keys_env() and not is_config_secret(EDGE_PFX_KEY):
        raise ConfigError([f"{EDGE_PFX_KEY}: set in plain text (a private key in the stack file); {_SET_PFX}"])
    return pulumi.Config("stamps").require_secret("edgeCertificatePfx")
