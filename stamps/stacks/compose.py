"""Declaring units: the same components for one unit's stack or for the whole fleet in one stack.

Each `declare_*` function is one unit's content. It takes its upstream units' contracts
(stamps/stacks/contracts.py) and returns its own. In the single-stack layout `build_fleet` calls them
all in order and passes contracts in-process; in a unit stack `build_unit` reads the upstream contracts
through StackReferences. Components are created once per program (`Parts`), so a unit's resources keep
the type chain and name they have in the single stack: only the stack part of their URNs differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_azure_native as azure

from stamps.components.cell import Directory, Shared
from stamps.components.global_layer import DIRECTORY_SCOPE, Global, TrafficRouting, apim_addresses, apim_gateways
from stamps.components.monitoring import Monitoring
from stamps.components.regional import CellEndpoint, Region
from stamps.components.tenants import API_PATH, TenantAccess
from stamps.environment import CellInstance, Environment
from stamps.stacks.contracts import (
    ApiOutputs,
    CellOutputs,
    Contract,
    EdgeOutputs,
    GlobalOutputs,
    RegionOutputs,
    RoutingOutputs,
)
from stamps.stacks.units import Unit, needs


@dataclass
class Parts:
    """The components one program declares, each created on first use and finished (registered) once."""

    env: Environment
    regions: dict[str, Region] = field(default_factory=dict)
    _monitoring: Monitoring | None = None
    _tenants: TenantAccess | None = None

    def region(self, region: str) -> Region:
        if region not in self.regions:
            self.regions[region] = Region(f"region-{region}", self.env, region)
        return self.regions[region]

    def monitoring(self) -> Monitoring:
        if self._monitoring is None:
            self._monitoring = Monitoring("monitoring", self.env)
        return self._monitoring

    def tenant_access(self, glob: GlobalOutputs) -> TenantAccess:
        if self._tenants is None:
            self._tenants = TenantAccess("tenants", self.env, glob.resource_group_name, glob.apim_name)
        return self._tenants

    @property
    def access(self) -> TenantAccess:
        """The tenant access component this program declared (after a tenants or api unit)."""
        if self._tenants is None:
            raise LookupError("this program declared no tenant access")
        return self._tenants

    def finish(self) -> None:
        for region in self.regions.values():
            region.done()
        if self._monitoring is not None:
            self._monitoring.done()
        if self._tenants is not None:
            self._tenants.done()


def shared_inputs(glob: GlobalOutputs, client: Any) -> Shared:
    """What every region and CELL reads of the global layer, plus the deploying identity's tenant."""
    return Shared(
        workspace_id=glob.workspace_id,
        workspace_customer_id=glob.workspace_customer_id,
        subscription_id=client.subscription_id,
        tenant_id=client.tenant_id,
        app_insights_id=glob.app_insights_id,
        app_insights_connection_string=glob.app_insights_connection_string,
        directory=Directory(resource_group_name=glob.resource_group_name, account_name=glob.directory_account_name,
                            account_id=glob.directory_account_id, endpoint=glob.directory_endpoint,
                            container_scope=DIRECTORY_SCOPE),
    )


# --- the units ---------------------------------------------------------------------------------------------

def declare_global(parts: Parts, client: Any) -> GlobalOutputs:
    glob = Global("global", parts.env, tenant_id=client.tenant_id)
    groups = parts.monitoring().action_groups(glob.resource_group.name)
    return GlobalOutputs(
        resource_group_name=glob.resource_group.name,
        workspace_id=glob.workspace.id,
        workspace_customer_id=glob.workspace.customer_id,
        app_insights_id=glob.app_insights.id,
        app_insights_connection_string=glob.app_insights.connection_string,
        directory_account_name=glob.cosmos.name,
        directory_account_id=glob.cosmos.id,
        directory_endpoint=glob.cosmos.document_endpoint,
        apim_id=glob.apim.id,
        apim_name=glob.apim.name,
        apim_gateway_url=glob.apim.gateway_url,
        apim_gateways=apim_gateways(glob.apim),
        apim_addresses=apim_addresses(glob.apim),
        action_groups=groups,
    )


def declare_region(parts: Parts, region: str, shared: Shared) -> RegionOutputs:
    return parts.region(region).network(shared)


def declare_cell(parts: Parts, inst: CellInstance, glob: GlobalOutputs, net: RegionOutputs, shared: Shared,
                 primary: CellOutputs | None) -> CellOutputs:
    cell = parts.region(inst.region).cell(inst, net, shared,
                                          primary_database_id=primary.database_id if primary else None)
    out = CellOutputs(
        resource_group_name=cell.resource_group.name,
        app_id=cell.app.id,
        fqdn=pulumi.Output.from_input(cell.fqdn),
        database_id=cell.database.id,
        storage_id=cell.storage.id,
    )
    parts.monitoring().cell(inst, glob, out)
    return out


def declare_edge(parts: Parts, region: str, glob: GlobalOutputs, net: RegionOutputs, shared: Shared,
                 cells: list[tuple[CellInstance, CellOutputs]]) -> EdgeOutputs:
    gateway = parts.region(region).edge(net, [CellEndpoint(inst, out.fqdn) for inst, out in cells], shared,
                                        glob.apim_addresses)
    parts.monitoring().region_alerts(region, glob, net, gateway.id)
    return EdgeOutputs(app_gateway_id=gateway.id)


def declare_routing(parts: Parts, glob: GlobalOutputs, nets: dict[str, RegionOutputs],
                    edges: dict[str, EdgeOutputs]) -> RoutingOutputs:
    env = parts.env
    routing = TrafficRouting("routing", env, glob.resource_group_name, glob.apim_gateways,
                             entry_ip_ids={r: nets[r].public_ip_id for r in env.deployed_regions},
                             workspace_id=glob.workspace_id)
    profiles = {p: prof.id for p, prof in routing.profiles.items()}
    mon = parts.monitoring()
    mon.global_alerts(glob, routing.front_door.id, profiles)
    mon.global_dashboard(glob, {r: edges[r].app_gateway_id for r in env.deployed_regions})
    _export_routing(env, routing)
    return RoutingOutputs(
        front_door_id=routing.front_door.front_door_id,
        front_door_profile_id=routing.front_door.id,
        front_door_host=routing.endpoint_host,
        traffic_manager_profiles=pulumi.Output.all(**profiles),
    )


def declare_api(parts: Parts, glob: GlobalOutputs, routing: RoutingOutputs) -> ApiOutputs:
    return parts.tenant_access(glob).api(routing.front_door_id)


def declare_tenants(parts: Parts, cell: str, glob: GlobalOutputs, api: ApiOutputs) -> None:
    env = parts.env
    access = parts.tenant_access(glob)
    access.tenants([t for t in env.config.tenants if env.tenant_cells[t.id] == cell], api.product_ids)


# --- user-facing outputs (ops and people read these; contracts are for stacks) --------------------------------

def _export_global(env: Environment, glob: GlobalOutputs) -> None:
    # API Management's outbound addresses: the only callers the regional gateways admit beyond probes.
    pulumi.export("apiManagementAddresses", glob.apim_addresses)
    pulumi.export("apimGatewayUrl", glob.apim_gateway_url)
    pulumi.export("workspaceId", glob.workspace_id)
    pulumi.export("tenantDirectory", {"endpoint": glob.directory_endpoint, "database": "globaldb",
                                      "container": "tenants"})
    # What ops needs to find a tenant's APIM objects; subscription keys are never exported.
    pulumi.export("apimServiceName", glob.apim_name)
    pulumi.export("tenantApiUrl", pulumi.Output.concat(glob.apim_gateway_url, "/", API_PATH))


def _export_routing(env: Environment, routing: TrafficRouting) -> None:
    pulumi.export("servingFrom", {p: env.serving_region(p) for p in env.primary_regions})
    pulumi.export("apiHost", env.config.tls.host_name)
    pulumi.export("frontDoorHost", routing.endpoint_host)
    pulumi.export("trafficManagerProfiles", {p: prof.id for p, prof in routing.profiles.items()})
    # The records to create in the public zone(s); nothing in the path depends on any other manual record.
    pulumi.export("dnsRecords", [{"name": r.name, "type": r.type, "value": r.value, "why": r.why}
                                 for r in routing.dns_records])


def _cell_entry(inst: CellInstance, out: CellOutputs) -> dict[str, Any]:
    return {"cell": inst.name, "region": inst.region, "role": inst.role, "appId": out.app_id,
            "databaseId": out.database_id, "fqdn": out.fqdn}


# --- the two layouts ------------------------------------------------------------------------------------------

def build_fleet(env: Environment) -> Parts:
    """The whole fleet in one stack: every unit in deployment order, contracts passed in-process."""
    parts = Parts(env)
    client = azure.authorization.get_client_config_output()
    glob = declare_global(parts, client)
    shared = shared_inputs(glob, client)
    nets = {r: declare_region(parts, r, shared) for r in env.deployed_regions}
    cells: dict[str, CellOutputs] = {}
    # Primaries first: a standby's geo-secondary database is created from its primary's database.
    for inst in sorted(env.instances, key=lambda i: i.role != "primary"):
        cells[inst.key] = declare_cell(parts, inst, glob, nets[inst.region], shared,
                                       cells.get(env.instance(inst.name).key) if inst.role == "standby" else None)
    edges = {r: declare_edge(parts, r, glob, nets[r], shared,
                             [(i, cells[i.key]) for i in env.instances_in(r)]) for r in env.deployed_regions}
    routing = declare_routing(parts, glob, nets, edges)
    api = declare_api(parts, glob, routing)
    for cell in env.cells:
        declare_tenants(parts, cell.name, glob, api)
    parts.finish()
    _export_global(env, glob)
    access = parts.tenant_access(glob)
    pulumi.export("tenantCells", dict(env.tenant_cells))
    pulumi.export("tenantRoutingNamedValues", access.routing_names)
    pulumi.export("tenantAccess", access.tenant_index)
    pulumi.export("cells", {i.key: _cell_entry(i, cells[i.key]) for i in env.instances})
    return parts


def reference(fleet: str, unit: Unit) -> pulumi.StackReference:
    """The stack of `unit` in this project and organization (works on Pulumi Cloud and DIY backends alike)."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{unit.stack(fleet)}"
    return pulumi.StackReference(f"ref-{unit.name}", stack_name=name)


def build_unit(env: Environment, fleet: str, unit: Unit) -> Parts:
    """One unit's stack: its upstream contracts read by StackReference, its own contract exported."""
    refs = {u: reference(fleet, u) for u in needs(env, unit)}
    parts = Parts(env)
    client = azure.authorization.get_client_config_output()
    own: Contract | None = None
    if unit.layer == "global":
        own = glob = declare_global(parts, client)
        _export_global(env, glob)
        parts.finish()
        glob.export()
        return parts
    glob = GlobalOutputs.read(refs[Unit("global")])
    shared = shared_inputs(glob, client)
    if unit.layer == "region":
        own = declare_region(parts, unit.region, shared)
    elif unit.layer == "cell":
        inst = next(i for i in env.instances if i.name == unit.cell and i.region == unit.region)
        net = RegionOutputs.read(refs[Unit("region", region=unit.region)])
        primary = (CellOutputs.read(refs[Unit("cell", cell=inst.name, region=inst.cell.region)])
                   if inst.role == "standby" else None)
        own = declare_cell(parts, inst, glob, net, shared, primary)
        pulumi.export("cells", {inst.key: _cell_entry(inst, own)})
    elif unit.layer == "edge":
        net = RegionOutputs.read(refs[Unit("region", region=unit.region)])
        cells = [(i, CellOutputs.read(refs[Unit("cell", cell=i.name, region=i.region)]))
                 for i in env.instances_in(unit.region)]
        own = declare_edge(parts, unit.region, glob, net, shared, cells)
    elif unit.layer == "routing":
        nets = {r: RegionOutputs.read(refs[Unit("region", region=r)]) for r in env.deployed_regions}
        edges = {r: EdgeOutputs.read(refs[Unit("edge", region=r)]) for r in env.deployed_regions}
        own = declare_routing(parts, glob, nets, edges)
    elif unit.layer == "api":
        own = declare_api(parts, glob, RoutingOutputs.read(refs[Unit("routing")]))
        pulumi.export("tenantCells", dict(env.tenant_cells))
        pulumi.export("tenantRoutingNamedValues", parts.tenant_access(glob).routing_names)
    else:
        declare_tenants(parts, unit.cell, glob, ApiOutputs.read(refs[Unit("api")]))
        pulumi.export("tenantAccess", parts.tenant_access(glob).tenant_index)
    parts.finish()
    if own is not None:
        own.export()
    return parts
