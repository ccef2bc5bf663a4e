"""The Pulumi program: config → components → stack outputs. `__main__.py` calls `run()`."""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure

from stamps.components.cell import Shared
from stamps.components.global_layer import Global, TrafficRouting, apim_addresses
from stamps.components.monitoring import Monitoring
from stamps.components.regional import Region
from stamps.components.tenants import API_PATH, TenantAccess
from stamps.config.loader import load_environment, read_pulumi_config
from stamps.environment import Environment


def build(env: Environment) -> dict[str, object]:
    """Declare the whole environment; returns the component objects for callers that compose further."""
    client = azure.authorization.get_client_config_output()
    glob = Global("global", env, tenant_id=client.tenant_id)
    shared = Shared(
        workspace_id=glob.workspace.id,
        workspace_customer_id=glob.workspace.customer_id,
        subscription_id=client.subscription_id,
        tenant_id=client.tenant_id,
        app_insights_id=glob.app_insights.id,
        app_insights_connection_string=glob.app_insights.connection_string,
        directory=glob.directory,
    )
    # Primaries first: a standby's geo-secondary database is created from its primary's database.
    order = sorted(env.deployed_regions, key=lambda r: env.regions[r].role != "primary")
    regions: dict[str, Region] = {}
    primary_dbs: dict[str, pulumi.Input[str]] = {}
    # The regional gateways admit API Management's addresses only (plus probes on the health paths).
    apim_ips = apim_addresses(glob.apim)
    for region in order:
        regions[region] = Region(f"region-{region}", env, region, shared, api_management_ips=apim_ips,
                                 primary_databases=primary_dbs)
        primary_dbs.update({c.instance.name: c.database.id for c in regions[region].cells
                            if c.instance.role == "primary"})
    routing = TrafficRouting(
        "routing", env, glob.resource_group.name, glob.apim,
        entry_ip_ids={r: regions[r].public_ip.id for r in env.deployed_regions},
        workspace_id=glob.workspace.id,
    )
    # API Management reaches a CELL by its primary region's cells host, a CNAME to that region's Traffic
    # Manager profile: a failover needs no API Management change, and the gateway certificate covers the name.
    tenants = TenantAccess("tenants", env, glob.resource_group.name, glob.apim.name,
                           front_door_id=routing.front_door.front_door_id)
    # Alerts (global, per region, per CELL instance) and dashboards over the resources declared above.
    Monitoring("monitoring", env, glob, routing, regions)
    pulumi.export("servingFrom", {p: env.serving_region(p) for p in env.primary_regions})
    pulumi.export("apiHost", env.config.tls.host_name)
    pulumi.export("frontDoorHost", routing.endpoint_host)
    # API Management's outbound addresses: the only callers the regional gateways admit beyond probes.
    pulumi.export("apiManagementAddresses", apim_ips)
    pulumi.export("trafficManagerProfiles", {p: prof.id for p, prof in routing.profiles.items()})
    # The records to create in the public zone(s); nothing in the path depends on any other manual record.
    pulumi.export("dnsRecords", [{"name": r.name, "type": r.type, "value": r.value, "why": r.why}
                                 for r in routing.dns_records])
    pulumi.export("apimGatewayUrl", glob.apim.gateway_url)
    pulumi.export("workspaceId", glob.workspace.id)
    pulumi.export("tenantCells", dict(env.tenant_cells))
    pulumi.export("tenantDirectory", {"endpoint": glob.cosmos.document_endpoint, "database": "globaldb",
                                      "container": "tenants"})
    # What ops needs to find a tenant's APIM objects; subscription keys are never exported.
    pulumi.export("apimServiceName", glob.apim.name)
    pulumi.export("tenantApiUrl", pulumi.Output.concat(glob.apim.gateway_url, "/", API_PATH))
    pulumi.export("tenantRoutingNamedValues", tenants.routing_names)
    pulumi.export("tenantAccess", tenants.tenant_index)
    pulumi.export("cells", {
        c.instance.key: {"cell": c.instance.name, "region": c.instance.region, "role": c.instance.role,
                         "appId": c.app.id, "databaseId": c.database.id, "fqdn": c.fqdn}
        for r in regions.values() for c in r.cells
    })
    return {"global": glob, "regions": regions, "routing": routing, "tenants": tenants}


def run() -> None:
    from stamps import speedup

    # Before any resource exists: registration of azure-native resources is ~10x cheaper with it, and the
    # engine receives the same requests (tests/test_speedup.py); it switches itself off on unchecked SDKs.
    speedup.enable()
    env = load_environment(pulumi.get_project(), pulumi.get_stack(), read_pulumi_config())
    build(env)
