"""The global layer: what every region and CELL shares, and the front doors traffic arrives through.

Runbook: "Global Monitoring - cross-region performance, global routing health, DNS resolution, Front Door,
APIM gateway health, API usage per tenant".
- `Global`: Log Analytics + Application Insights (where every diagnostic setting sends), the Cosmos DB
  tenant directory (`globaldb/tenants`, partitioned on `/tenantId`, replicated to every region) and
  API Management (Premium with a gateway in every other region in prod).
- `TrafficRouting`: Front Door (origin group over the regional App Gateways, `/health` probe) and Traffic
  Manager (priority routing, HTTPS `/health` monitor). Both derive their priorities from the active
  region, so a failover is one config value and a small, reviewable diff.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_azure_native as azure

from stamps.apim_policy import APIM_STATUS_PATH
from stamps.components.base import COSMOS_ROLE_IDS, StampsComponent
from stamps.components.cell import Directory
from stamps.components.regional import health_path
from stamps.config.capabilities import (
    environment_quota_warnings,
    service_warnings,
    storage_pair_warnings,
    zones_for,
)
from stamps.environment import Environment
from stamps.placement import unpinned_warnings

# The tenants container, as a Cosmos DB data-plane role scope.
DIRECTORY_DB, DIRECTORY_CONTAINER = "globaldb", "tenants"
DIRECTORY_SCOPE = f"/dbs/{DIRECTORY_DB}/colls/{DIRECTORY_CONTAINER}"
# API Management Premium with a second region takes 45-90+ minutes to create; each extra region adds as long again
# ("expect longer times for an instance with ... multi-region configuration",
# https://learn.microsoft.com/azure/api-management/api-management-howto-deploy-multi-region). The provider's
# default timeout would abandon a create Azure is still running.
APIM_TIMEOUTS = pulumi.CustomTimeouts(create="180m", update="180m", delete="120m")
APIM_MINUTES_PER_REGION = 60


def apim_timeouts(regions: int) -> pulumi.CustomTimeouts:
    """APIM_TIMEOUTS, longer for a fleet with more than three gateway regions (an hour per region)."""
    if regions <= 3:
        return APIM_TIMEOUTS
    minutes = f"{APIM_MINUTES_PER_REGION * regions}m"
    return pulumi.CustomTimeouts(create=minutes, update=minutes, delete=APIM_TIMEOUTS.delete)


class Global(StampsComponent):
    def __init__(self, name: str, env: Environment, tenant_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:global:Global", name, opts)
        n = env.naming
        home = env.primary_regions[0]
        tags = env.tags("global", region="global")

        self.resource_group = azure.resources.ResourceGroup(
            self.child("rg"), resource_group_name=n.global_group(), location=home, tags=tags, opts=self.opts()
        )
        rg = self.resource_group.name

        # --- Observability: the sink of every diagnostic setting -------------------------------------------
        self.workspace = azure.operationalinsights.Workspace(
            self.child("log"),
            workspace_name=n.workspace(),
            resource_group_name=rg,
            location=home,
            sku=azure.operationalinsights.WorkspaceSkuArgs(name="PerGB2018"),
            retention_in_days=90,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.workspace, self.workspace.id)
        self.app_insights = azure.applicationinsights.Component(
            self.child("appi"),
            resource_name_=n.app_insights(),
            resource_group_name=rg,
            location=home,
            kind="web",
            application_type="web",
            ingestion_mode="LogAnalytics",
            workspace_resource_id=self.workspace.id,
            disable_local_auth=True,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.app_insights, self.workspace.id)

        # --- Tenant directory ---------------------------------------------------------------------------
        regions = [home] + [r for r in env.deployed_regions if r != home]
        directory = env.config.directory
        self.cosmos = azure.cosmosdb.DatabaseAccount(
            self.child("cosmos"),
            account_name=n.cosmos(),
            resource_group_name=rg,
            location=home,
            kind="GlobalDocumentDB",
            database_account_offer_type=azure.cosmosdb.DatabaseAccountOfferType.STANDARD,
            # Zone redundancy follows each region's choice (on where offered); fixed once the account exists.
            locations=[
                azure.cosmosdb.LocationArgs(location_name=r, failover_priority=i,
                                            is_zone_redundant=zones_for(r, env.regions[r].zone_redundant))
                for i, r in enumerate(regions)
            ],
            consistency_policy=azure.cosmosdb.ConsistencyPolicyArgs(default_consistency_level=azure.cosmosdb.DefaultConsistencyLevel.SESSION),
            enable_automatic_failover=True,
            disable_local_auth=True,
            disable_key_based_metadata_write_access=True,
            minimal_tls_version="Tls12",
            # Restricted networks: only the operators' egress ranges over the public endpoint (none: public
            # access off), CELLs over the regional private endpoints.
            public_network_access="Enabled" if env.config.operator_ip_ranges else "Disabled",
            is_virtual_network_filter_enabled=True,
            ip_rules=[azure.cosmosdb.IpAddressOrRangeArgs(ip_address_or_range=r)
                      for r in env.config.operator_ip_ranges],
            # Continuous backup: point-in-time restore of the directory ("Data Recovery"), which periodic backup
            # only offers through a support ticket (https://learn.microsoft.com/azure/cosmos-db/continuous-backup-restore-introduction).
            backup_policy=azure.cosmosdb.ContinuousModeBackupPolicyArgs(
                type="Continuous",
                continuous_mode_properties=azure.cosmosdb.ContinuousModePropertiesArgs(tier=directory.backup_tier),
            ),
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.cosmos, self.workspace.id)
        db = azure.cosmosdb.SqlResourceSqlDatabase(
            self.child("globaldb"),
            account_name=self.cosmos.name,
            database_name=DIRECTORY_DB,
            resource_group_name=rg,
            resource=azure.cosmosdb.SqlDatabaseResourceArgs(id=DIRECTORY_DB),
            tags=tags,
            opts=self.opts(),
        )
        self.tenants_container = azure.cosmosdb.SqlResourceSqlContainer(
            self.child("tenants"),
            account_name=self.cosmos.name,
            database_name=db.name,
            container_name=DIRECTORY_CONTAINER,
            resource_group_name=rg,
            resource=azure.cosmosdb.SqlContainerResourceArgs(
                id=DIRECTORY_CONTAINER,
                partition_key=azure.cosmosdb.ContainerPartitionKeyArgs(paths=["/tenantId"], kind="Hash", version=2),
            ),
            tags=tags,
            opts=self.opts(),
        )

        # The principals that run stamps-ops write tenant records (onboard, migrate): key auth is off, and Azure
        # RBAC roles (Owner, Contributor) grant no item access, so they need the data-plane role.
        for i, op in enumerate(env.config.operators):
            azure.cosmosdb.SqlResourceSqlRoleAssignment(
                self.child(f"directory-writer-{i}"),
                account_name=self.cosmos.name,
                resource_group_name=rg,
                role_assignment_id=self.cosmos.id.apply(
                    lambda aid, oid=op.object_id: str(uuid.uuid5(uuid.NAMESPACE_URL,  # type: ignore[misc]  # oid binds this operator
                                                                 f"{aid}{DIRECTORY_SCOPE}/{oid}/contributor"))),
                principal_id=op.object_id,
                role_definition_id=pulumi.Output.concat(
                    self.cosmos.id, "/sqlRoleDefinitions/", COSMOS_ROLE_IDS["Cosmos DB Built-in Data Contributor"]),
                scope=pulumi.Output.concat(self.cosmos.id, DIRECTORY_SCOPE),
                opts=self.opts(depends_on=[self.tenants_container]),
            )

        # --- API Management --------------------------------------------------------------------------------
        apim = env.config.api_management
        apim_sku = azure.apimanagement.ApiManagementServiceSkuPropertiesArgs(name=apim.sku, capacity=apim.capacity)
        self.apim = azure.apimanagement.ApiManagementService(
            self.child("apim"),
            service_name=n.apim(),
            resource_group_name=rg,
            location=home,
            publisher_email=apim.publisher_email,
            publisher_name=apim.publisher_name,
            sku=apim_sku,
            # Premium serves a gateway in every other region, so API traffic survives a regional outage.
            additional_locations=[
                azure.apimanagement.AdditionalLocationArgs(location=r, sku=apim_sku)
                for r in regions[1:]
            ] if apim.sku == "Premium" else None,
            identity=azure.apimanagement.ApiManagementServiceIdentityArgs(type="SystemAssigned"),
            custom_properties={
                # Only TLS 1.2+ on the gateway and towards backends.
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10": "false",
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11": "false",
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10": "false",
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11": "false",
                "Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30": "false",
            },
            # A destroyed instance stays soft-deleted for 48 h and reserves its name; `restore` undeletes it
            # (https://learn.microsoft.com/azure/api-management/soft-delete).
            restore=apim.restore,
            tags=tags,
            opts=self.opts(custom_timeouts=apim_timeouts(len(regions) if apim.sku == "Premium" else 1)),
        )
        self.diagnose(self.apim, self.workspace.id)
        _warn_reserved_names(env)
        # What CELL apps need to read the directory (a data-plane reader role on the tenants container).
        self.directory = Directory(resource_group_name=rg, account_name=self.cosmos.name, account_id=self.cosmos.id,
                                   endpoint=self.cosmos.document_endpoint, container_scope=DIRECTORY_SCOPE)
        self.register_outputs(
            {
                "workspaceId": self.workspace.id,
                "appInsightsId": self.app_insights.id,
                "cosmosAccountId": self.cosmos.id,
                "apimId": self.apim.id,
            }
        )


def _warn_reserved_names(env: Environment) -> None:
    """At preview: Container Apps environment quotas the plan exceeds, the deterministic names that Azure keeps
    reserved after a destroy, and the way out.

    A soft-deleted Key Vault with purge protection keeps its name for its retention (90 days here), API
    Management for 48 hours (https://learn.microsoft.com/azure/api-management/soft-delete); an `up` after a
    `destroy` then fails on the name. The plan cannot see deleted resources, so it says which names are at risk.
    """
    if not pulumi.runtime.is_dry_run():
        return
    # Each CELL instance has its own Container Apps environment; past the default quota the create fails.
    per_region = Counter(i.region for i in env.instances)
    for warning in (environment_quota_warnings(dict(per_region)) + service_warnings(env.config)
                    + storage_pair_warnings(env.config) + unpinned_warnings(env.config, env.tenant_cells)):
        pulumi.log.warn(warning)
    n = env.naming
    vaults = ", ".join(n.key_vault(r) for r in env.deployed_regions)
    pulumi.log.warn(
        f"names reserved after a destroy: Key Vaults {vaults} (purge protection, 90 days) and API Management "
        f"{n.apim()} (48 hours). If this stack was destroyed recently, `up` fails on them: set a new "
        "stamps:nameSuffix, or stamps:apiManagement.restore: true within 48 hours (README: Rebuilding a stack)")




@dataclass(frozen=True)
class DnsRecord:
    """A record the user creates in their public zone: the program cannot own a zone it does not host."""

    name: str
    type: str
    value: pulumi.Input[str]
    why: str


def apim_gateways(apim: azure.apimanagement.ApiManagementService) -> pulumi.Output[dict[str, str]]:
    """Region → regional gateway host of every API Management location (the primary and the additional ones)."""
    def hosts(location: str, url: str | None, extra: list[Any] | None) -> dict[str, str]:
        out = {_region(location): _host(url)}
        for loc in extra or []:
            out[_region(_field(loc, "location"))] = _host(_field(loc, "gateway_regional_url"))
        return out

    return pulumi.Output.all(apim.location, apim.gateway_regional_url, apim.additional_locations).apply(
        lambda a: hosts(*a))


def apim_addresses(apim: azure.apimanagement.ApiManagementService) -> pulumi.Output[list[str]]:
    """Every public address API Management calls backends from (each location's gateway)."""
    def ips(main: list[str] | None, extra: list[Any] | None) -> list[str]:
        out = list(main or [])
        for loc in extra or []:
            out += list(_field(loc, "public_ip_addresses") or [])
        return sorted(set(out))

    return pulumi.Output.all(apim.public_ip_addresses, apim.additional_locations).apply(lambda a: ips(*a))


def _field(obj: Any, attr: str) -> Any:
    # Nested outputs arrive as typed output objects (dicts keyed by the Python name) or as plain wire dicts.
    if not isinstance(obj, dict):
        return getattr(obj, attr, None)
    camel = "".join(w.capitalize() if i else w for i, w in enumerate(attr.split("_")))
    for key in (attr, camel.replace("Ip", "IP"), camel):
        if key in obj:
            return obj[key]
    return None


def _region(location: str) -> str:
    # ARM answers with display names ("East US") in some API versions; the program uses location names.
    return location.replace(" ", "").lower()


def _host(url: str | None) -> str:
    return (url or "").removeprefix("https://").split("/", 1)[0]


class TrafficRouting(StampsComponent):
    """The public entry (Front Door → API Management) and one Traffic Manager profile per primary region.

    - Front Door serves `tls.hostName` (custom domain, managed certificate) and sends every request to the
      nearest healthy API Management regional gateway; its probe is API Management's own status endpoint.
      API Management is the only origin: tenant identity, quotas and freezes are enforced before any CELL.
    - API Management calls a CELL at `<primary>.<cellsHostName>/cells/<cell>/`: a CNAME to that primary's
      Traffic Manager profile, whose endpoints are the primary's App Gateway and its DR region's. Priority
      follows the region's `servingFrom`, and the probe (`/health/<primary>` on each gateway) reaches exactly
      the CELL instances serving that primary's tenants there, so a region whose CELLs all fail is taken out
      by the probe alone. A failover changes one profile; other primaries are untouched.
    """

    def __init__(self, name: str, env: Environment, resource_group_name: pulumi.Input[str],
                 apim_gateways: pulumi.Input[dict[str, str]], entry_ip_ids: dict[str, pulumi.Input[str]],
                 workspace_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("stamps:global:TrafficRouting", name, opts)
        n = env.naming
        tags = env.tags("global", region="global")
        tm = env.config.traffic_manager
        api_host = env.config.tls.host_name

        # --- Front Door: the public API host --------------------------------------------------------------
        self.front_door = azure.cdn.Profile(
            self.child("afd"),
            profile_name=n.front_door(),
            resource_group_name=resource_group_name,
            location="global",
            sku=azure.cdn.SkuArgs(name=env.config.front_door.sku),
            origin_response_timeout_seconds=60,
            tags=tags,
            opts=self.opts(),
        )
        self.diagnose(self.front_door, workspace_id)
        endpoint = azure.cdn.AFDEndpoint(
            self.child("afd-endpoint"),
            endpoint_name=n.front_door_endpoint(),
            profile_name=self.front_door.name,
            resource_group_name=resource_group_name,
            location="global",
            enabled_state="Enabled",
            tags=tags,
            opts=self.opts(),
        )
        self.custom_domain = azure.cdn.AFDCustomDomain(
            self.child("afd-domain"),
            custom_domain_name=api_host.replace(".", "-"),
            profile_name=self.front_door.name,
            resource_group_name=resource_group_name,
            host_name=api_host,
            tls_settings=azure.cdn.AFDDomainHttpsParametersArgs(
                certificate_type="ManagedCertificate", minimum_tls_version=azure.cdn.AfdMinimumTlsVersion.TLS12),
            opts=self.opts(),
        )
        group = azure.cdn.AFDOriginGroup(
            self.child("afd-origins"),
            origin_group_name="api-management",
            profile_name=self.front_door.name,
            resource_group_name=resource_group_name,
            # API Management's status endpoint answers 200 while that regional gateway is healthy.
            health_probe_settings=azure.cdn.HealthProbeParametersArgs(
                probe_path=APIM_STATUS_PATH, probe_protocol=azure.cdn.ProbeProtocol.HTTPS,
                probe_request_type=azure.cdn.HealthProbeRequestType.GET,
                probe_interval_in_seconds=tm.probe_interval,
            ),
            load_balancing_settings=azure.cdn.LoadBalancingSettingsParametersArgs(
                sample_size=4, successful_samples_required=3, additional_latency_in_milliseconds=50
            ),
            session_affinity_state="Disabled",
            opts=self.opts(),
        )
        gateways = pulumi.Output.from_input(apim_gateways)
        self.origins = [
            azure.cdn.AFDOrigin(
                self.child(f"afd-origin-{region}"),
                origin_name=f"apim-{region}",
                origin_group_name=group.name,
                profile_name=self.front_door.name,
                resource_group_name=resource_group_name,
                host_name=gateways.apply(lambda g, r=region: g[r]),  # type: ignore[misc]  # the defaults bind this loop's values
                origin_host_header=gateways.apply(lambda g, r=region: g[r]),  # type: ignore[misc]  # the defaults bind this loop's values
                https_port=443,
                http_port=80,
                enforce_certificate_name_check=True,
                # Every gateway serves every tenant: latency decides, the probe removes a failed one.
                priority=1,
                weight=1000,
                enabled_state="Enabled",
                opts=self.opts(),
            )
            for region in self._apim_regions(env)
        ]
        self.route = azure.cdn.Route(
            self.child("afd-route"),
            route_name="api",
            endpoint_name=endpoint.name,
            profile_name=self.front_door.name,
            resource_group_name=resource_group_name,
            origin_group=azure.cdn.ResourceReferenceArgs(id=group.id),
            custom_domains=[azure.cdn.ActivatedResourceReferenceArgs(id=self.custom_domain.id)],
            # HTTP is accepted only to be redirected: plain-HTTP callers get a 301 to HTTPS.
            supported_protocols=["Http", "Https"],
            https_redirect="Enabled",
            forwarding_protocol="HttpsOnly",
            link_to_default_domain="Enabled",
            patterns_to_match=["/*"],
            opts=self.opts(depends_on=[*self.origins, self.custom_domain]),
        )

        # --- Traffic Manager: one profile per primary region ------------------------------------------------
        # Endpoints are inline: Traffic Manager rejects two endpoints with one priority, so a failover's
        # priority swap must be a single PUT of the profile, not two endpoint updates racing each other.
        self.profiles: dict[str, azure.trafficmanager.Profile] = {}
        for primary in env.primary_regions:
            dr = env.regions[primary].dr_region
            regions = [primary] + ([dr] if dr and any(i.cell.region == primary and i.role == "standby"
                                                      for i in env.instances) else [])
            profile = azure.trafficmanager.Profile(
                self.child(f"tm-{primary}"),
                profile_name=n.traffic_manager(primary),
                resource_group_name=resource_group_name,
                location="global",
                profile_status="Enabled",
                traffic_routing_method="Priority",
                dns_config=azure.trafficmanager.DnsConfigArgs(relative_name=n.traffic_manager_dns(primary),
                                                              ttl=env.dns_ttl(primary)),
                monitor_config=azure.trafficmanager.MonitorConfigArgs(
                    protocol="HTTPS", port=443, path=health_path(primary), interval_in_seconds=tm.probe_interval,
                    timeout_in_seconds=5 if tm.probe_interval == 10 else 10,
                    tolerated_number_of_failures=tm.tolerated_failures,
                    custom_headers=[azure.trafficmanager.MonitorConfigCustomHeadersItemArgs(
                        name="host", value=env.cell_host(primary))],
                    expected_status_code_ranges=[azure.trafficmanager.MonitorConfigExpectedStatusCodeRangesItemArgs(
                        min=200, max=299)],
                ),
                endpoints=[
                    azure.trafficmanager.EndpointArgs(
                        name=f"endpoint-{region}",
                        type="Microsoft.Network/trafficManagerProfiles/azureEndpoints",
                        target_resource_id=entry_ip_ids[region],
                        endpoint_status="Enabled" if region != primary or env.regions[primary].traffic_enabled
                        else "Disabled",
                        priority=env.endpoint_priority(primary, region),
                    )
                    for region in regions
                ],
                traffic_view_enrollment_status="Enabled",
                tags=tags | {"serves": primary},
                opts=self.opts(),
            )
            self.diagnose(profile, workspace_id)
            self.profiles[primary] = profile

        self.endpoint_host: pulumi.Output[str] = endpoint.host_name
        token = self.custom_domain.validation_properties.apply(lambda v: (v.validation_token if v else None) or "")
        self.dns_records: list[DnsRecord] = [
            DnsRecord(api_host, "CNAME", endpoint.host_name, "the public API host → Front Door"),
            DnsRecord(f"_dnsauth.{api_host}", "TXT", token, "proves the domain to Front Door (managed certificate)"),
        ] + [
            DnsRecord(env.cell_host(p), "CNAME",
                      profile.dns_config.apply(lambda d: (d.fqdn if d else None) or ""),
                      f"API Management → {p}'s CELLs (Traffic Manager picks {p} or its DR region)")
            for p, profile in self.profiles.items()
        ]
        self.register_outputs(
            {
                "frontDoorHost": self.endpoint_host,
                "trafficManagerProfiles": {p: prof.id for p, prof in self.profiles.items()},
            }
        )

    @staticmethod
    def _apim_regions(env: Environment) -> list[str]:
        # API Management runs a gateway in its home region and, on Premium, in every other deployed region.
        home = env.primary_regions[0]
        if env.config.api_management.sku != "Premium":
            return [home]
        return [home] + [r for r in env.deployed_regions if r != home]
