"""The Pulumi program: config → components → stack outputs. `__main__.py` calls `run()`."""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure

from stamps.components.cell import Shared
from stamps.components.global_layer import Global, TrafficRouting
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
    for region in order:
        regions[region] = Region(f"region-{region}", env, region, shared, primary_databases=primary_dbs)
        primary_dbs.update({c.instance.name: c.database.id for c in regions[region].cells
                            if c.instance.role == "primary"})
    routing = TrafficRouting(
        "routing", env, glob.resource_group.name,
        entry_points={r: regions[r].entry_fqdn for r in env.deployed_regions},
        entry_ip_ids={r: regions[r].public_ip.id for r in env.deployed_regions},
        workspace_id=glob.workspace.id,
    )
    # APIM reaches CELLs by the cells host name, a CNAME to Traffic Manager: a failover needs no APIM change,
    # and the App Gateway certificate covers the name APIM validates.
    tenants = TenantAccess("tenants", env, glob.resource_group.name, glob.apim.name,
                           cells_host=env.config.tls.cells_host_name)
    # Alerts (global, per region, per CELL instance) and dashboards over the resources declared above.
    Monitoring("monitoring", env, glob, routing, regions)
    pulumi.export("activeRegion", env.active_region)
    pulumi.export("frontDoorHost", routing.endpoint_host)
    pulumi.export("trafficManagerProfileId", routing.traffic_manager.id)
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
