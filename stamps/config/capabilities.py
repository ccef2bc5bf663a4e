"""What each Azure region offers the plan: availability zones, zone- and geo-redundant storage, region pairs.

One table per fact, each with the Microsoft Learn page it was read from. Components read these (zones and
redundancy only where offered), config validation reads them (asking for zone redundancy where a region has
none is an error naming the key), and the policy pack reads them (`zone-support`, `storage-geo-redundancy`).
A region missing from a table is treated as not offering the feature: that is always deployable, while a
wrong "yes" is rejected by Azure at `pulumi up` ("zones not supported", "SKU not available in region").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stamps.config.model import StampsConfig

# https://learn.microsoft.com/azure/reliability/availability-zones-service-support ("The following regions
# currently support availability zones"; regions marked * there, with restricted zone access, are left out) and
# https://learn.microsoft.com/azure/reliability/regions-list (column "Availability zones", e.g. Austria East 3).
AZ_SOURCE = "https://learn.microsoft.com/azure/reliability/availability-zones-service-support"
ZONE_REGIONS: frozenset[str] = frozenset({
    # Americas
    "brazilsouth", "canadacentral", "centralus", "eastus", "eastus2", "southcentralus", "westus2", "westus3",
    "mexicocentral",
    # Europe
    "francecentral", "italynorth", "germanywestcentral", "norwayeast", "northeurope", "uksouth", "westeurope",
    "swedencentral", "switzerlandnorth", "polandcentral", "spaincentral", "austriaeast", "belgiumcentral",
    # Middle East, Africa
    "qatarcentral", "uaenorth", "israelcentral", "southafricanorth",
    # Asia Pacific
    "australiaeast", "centralindia", "japaneast", "koreacentral", "southeastasia", "eastasia",
})

# https://learn.microsoft.com/azure/storage/common/redundancy-regions-zrs ("ZRS for standard general-purpose v2
# storage accounts is available for a subset of Azure regions").
ZRS_SOURCE = "https://learn.microsoft.com/azure/storage/common/redundancy-regions-zrs"
ZRS_REGIONS: frozenset[str] = frozenset({
    "southafricanorth", "australiaeast", "centralindia", "eastasia", "japaneast", "koreacentral", "southeastasia",
    "francecentral", "germanywestcentral", "italynorth", "northeurope", "norwayeast", "polandcentral",
    "spaincentral", "swedencentral", "switzerlandnorth", "uksouth", "westeurope", "israelcentral", "qatarcentral",
    "uaenorth", "canadacentral", "centralus", "eastus", "eastus2", "mexicocentral", "southcentralus", "westus2",
    "westus3", "brazilsouth",
})

# https://learn.microsoft.com/azure/storage/common/redundancy-regions-gzrs ("GZRS is available for a subset of
# Azure regions").
GZRS_SOURCE = "https://learn.microsoft.com/azure/storage/common/redundancy-regions-gzrs"
GZRS_REGIONS: frozenset[str] = frozenset({
    "southafricanorth", "australiaeast", "eastasia", "japaneast", "koreacentral", "southeastasia", "centralindia",
    "francecentral", "germanywestcentral", "northeurope", "norwayeast", "swedencentral", "switzerlandnorth",
    "uksouth", "westeurope", "uaenorth", "canadacentral", "centralus", "eastus", "eastus2", "southcentralus",
    "westus2", "westus3", "brazilsouth",
})

# https://learn.microsoft.com/azure/reliability/regions-paired: geo-redundant storage (GRS/GZRS) replicates to the
# region's pair; a region without a pair offers no GRS secondary. Column "Paired region" of regions-list.
PAIRS_SOURCE = "https://learn.microsoft.com/azure/reliability/regions-list"
PAIRED_REGIONS: dict[str, str] = {
    "eastus": "westus", "westus": "eastus", "eastus2": "centralus", "centralus": "eastus2",
    "westus2": "westcentralus", "westcentralus": "westus2", "westus3": "eastus",
    "northcentralus": "southcentralus", "southcentralus": "northcentralus", "canadacentral": "canadaeast",
    "canadaeast": "canadacentral", "brazilsouth": "southcentralus", "northeurope": "westeurope",
    "westeurope": "northeurope", "uksouth": "ukwest", "ukwest": "uksouth", "francecentral": "francesouth",
    "germanywestcentral": "germanynorth", "switzerlandnorth": "switzerlandwest", "norwayeast": "norwaywest",
    "japaneast": "japanwest", "japanwest": "japaneast", "koreacentral": "koreasouth", "eastasia": "southeastasia",
    "southeastasia": "eastasia", "australiaeast": "australiasoutheast", "australiasoutheast": "australiaeast",
    "centralindia": "southindia", "southindia": "centralindia", "uaenorth": "uaecentral",
    "southafricanorth": "southafricawest",
}

# Azure SQL Database zone redundancy by service tier (Premium, Business Critical and Hyperscale in every region
# with zones; General Purpose only in selected ones, not modelled, so never switched on here; Basic/Standard DTU
# never): https://learn.microsoft.com/azure/azure-sql/database/enable-zone-redundancy
SQL_ZONES_SOURCE = "https://learn.microsoft.com/azure/azure-sql/database/enable-zone-redundancy"
SQL_ZONE_REDUNDANT_PREFIXES: tuple[str, ...] = ("P", "BC_", "HS_")

# Services that follow the region's zones when they are zone-redundant (each service's reliability guide):
# App Gateway v2 and its Standard public IP (zones ["1","2","3"]), Container Apps environments (zoneRedundant,
# needs a VNet; set only at creation: learn.microsoft.com/azure/reliability/reliability-azure-container-apps),
# Cosmos DB locations (isZoneRedundant, set only at creation: learn.microsoft.com/azure/reliability/
# reliability-cosmos-db-nosql).
ZONES: tuple[str, ...] = ("1", "2", "3")

StorageSku = Literal["Standard_GZRS", "Standard_GRS", "Standard_ZRS", "Standard_LRS"]


def has_zones(region: str) -> bool:
    return region in ZONE_REGIONS


def zones_for(region: str, wanted: bool | None) -> bool:
    """Zone redundancy for a layer: on by default where offered; `wanted=True` elsewhere is a config error
    (`check_zone_choices`), so here it only ever narrows."""
    return has_zones(region) and wanted is not False


def sql_zone_redundant(sku: str, region: str, wanted: bool | None) -> bool:
    """Zone-redundant SQL only for the tiers that offer it (Premium, Business Critical, Hyperscale)."""
    return zones_for(region, wanted) and sku.startswith(SQL_ZONE_REDUNDANT_PREFIXES)


@dataclass(frozen=True)
class StorageChoice:
    sku: StorageSku
    why: str


def storage_sku(region: str, zone_redundant: bool, geo: bool) -> StorageChoice:
    """The most redundant Standard SKU the region offers for what is asked: geo copies need a region pair."""
    if geo and zone_redundant and region in GZRS_REGIONS:
        return StorageChoice("Standard_GZRS", f"zones and a geo copy in {PAIRED_REGIONS.get(region)} ({GZRS_SOURCE})")
    if geo and region in PAIRED_REGIONS:
        return StorageChoice("Standard_GRS", f"geo copy in the paired region {PAIRED_REGIONS[region]} "
                                             f"({PAIRS_SOURCE})")
    if zone_redundant and region in ZRS_REGIONS:
        return StorageChoice("Standard_ZRS", f"zone-redundant ({ZRS_SOURCE})")
    return StorageChoice("Standard_LRS", "the region offers neither zones nor a pair")


def storage_sku_offered(sku: str, region: str) -> str | None:
    """Why `sku` cannot be created in `region`, or None when it can."""
    base = sku.removeprefix("Standard_").removeprefix("Premium_").removeprefix("RA")
    if base == "GZRS" and region not in GZRS_REGIONS:
        return f"GZRS is not offered in {region} ({GZRS_SOURCE})"
    if base == "ZRS" and region not in ZRS_REGIONS:
        return f"ZRS is not offered in {region} ({ZRS_SOURCE})"
    if base in ("GRS", "GZRS") and region not in PAIRED_REGIONS:
        return f"{region} has no paired region for a geo-redundant copy ({PAIRS_SOURCE})"
    return None


def check_zone_choices(cfg: StampsConfig) -> list[str]:
    """`zoneRedundant: true` where the region has no availability zones is a config error naming the key."""
    out: list[str] = []

    def no_zones(key: str, region: str) -> str:
        near = sorted(r for r in ZONE_REGIONS if r[:4] == region[:4]) or sorted(ZONE_REGIONS)[:6]
        return (f"{key}: {region!r} has no availability zones, so nothing there can be zone-redundant; set it to "
                f"false or omit it (zone redundancy is on by default where offered), or choose a region with "
                f"zones: {', '.join(near)} ({AZ_SOURCE})")

    for i, r in enumerate(cfg.regions):
        if r.zone_redundant and not has_zones(r.name):
            out.append(no_zones(f"stamps:regions[{i}].zoneRedundant", r.name))
    for i, c in enumerate(cfg.cells):
        if c.zone_redundant and not has_zones(c.region):
            out.append(no_zones(f"stamps:cells[{i}].zoneRedundant", c.region))
        if c.standby is not None and c.standby.zone_redundant and not has_zones(c.standby.region):
            out.append(no_zones(f"stamps:cells[{i}].standby.zoneRedundant", c.standby.region))
        if c.zone_redundant and not c.sql.sku.startswith(SQL_ZONE_REDUNDANT_PREFIXES):
            out.append(f"stamps:cells[{i}].sql.sku: {c.sql.sku!r} cannot be zone-redundant, which "
                       f"stamps:cells[{i}].zoneRedundant: true asks for; use a Premium (P*), Business Critical "
                       f"(BC_*) or Hyperscale (HS_*) SKU, or omit zoneRedundant ({SQL_ZONES_SOURCE})")
    return out


# Container Apps environments per subscription: 15 per region and 20 across regions by default (raised through a
# quota request): https://learn.microsoft.com/azure/container-apps/quotas. Each CELL instance has its own.
ENV_QUOTA_SOURCE = "https://learn.microsoft.com/azure/container-apps/quotas"
ENVIRONMENTS_PER_REGION = 15
ENVIRONMENTS_PER_SUBSCRIPTION = 20


def environment_quota_warnings(per_region: dict[str, int]) -> list[str]:
    """Where the plan needs more Container Apps environments than a subscription gets by default."""
    out = [f"{n} Container Apps environments in {region}: the default quota is {ENVIRONMENTS_PER_REGION} per region"
           for region, n in sorted(per_region.items()) if n > ENVIRONMENTS_PER_REGION]
    total = sum(per_region.values())
    if total > ENVIRONMENTS_PER_SUBSCRIPTION:
        out.append(f"{total} Container Apps environments in all: the default quota is "
                   f"{ENVIRONMENTS_PER_SUBSCRIPTION} per subscription")
    return [f"{w}; request an increase (Managed Environment Count) before `up` ({ENV_QUOTA_SOURCE})" for w in out]


# --- Services per region ----------------------------------------------------------------------------------------
# Whether a service can be deployed in a region follows from the region's type and the service's category
# (https://learn.microsoft.com/azure/reliability/availability-service-by-category):
# - foundational services are "available in all recommended and alternate regions";
# - mainstream services are "available in all recommended regions", "demand-driven in alternate regions";
# - strategic services are demand-driven everywhere.
# Recommended regions are the ones that "currently support availability zones" (same page): ZONE_REGIONS above;
# alternate regions the others. An access-restricted region takes no deployment at all until Microsoft grants the
# subscription access (https://learn.microsoft.com/azure/reliability/regions-list, the restricted-region icon;
# https://learn.microsoft.com/troubleshoot/azure/general/region-access-request-process).
CATEGORY_SOURCE = "https://learn.microsoft.com/azure/reliability/availability-service-by-category"
RESTRICTED_SOURCE = "https://learn.microsoft.com/azure/reliability/regions-list"
RESTRICTED_REGIONS: frozenset[str] = frozenset({
    "brazilsoutheast", "francesouth", "germanynorth", "koreasouth", "norwaywest", "southafricawest",
    "switzerlandwest", "uaecentral",
})
Category = Literal["foundational", "mainstream", "strategic", "global"]


@dataclass(frozen=True)
class Service:
    name: str
    category: Category
    source: str = CATEGORY_SOURCE


# The services the program deploys. Front Door and Traffic Manager are non-regional ("global" location).
# Container Apps is not in the category tables (newer than them); it is treated like a mainstream service: its
# reliability guide promises zone redundancy "in all regions that support availability zones"
# (https://learn.microsoft.com/azure/reliability/reliability-azure-container-apps), nothing for the others.
SERVICES: dict[str, Service] = {
    "front-door": Service("Azure Front Door", "global", "https://learn.microsoft.com/azure/frontdoor/front-door-overview"),
    "traffic-manager": Service("Traffic Manager", "global",
                               "https://learn.microsoft.com/azure/traffic-manager/traffic-manager-overview"),
    "app-gateway": Service("Application Gateway v2 (WAF_v2)", "foundational"),
    "public-ip": Service("Public IP (Standard)", "foundational"),
    "virtual-network": Service("Virtual Network", "foundational"),
    "key-vault": Service("Key Vault", "foundational"),
    "sql": Service("Azure SQL Database", "foundational"),
    "storage": Service("Storage accounts (Blob)", "foundational"),
    "cosmos-db": Service("Cosmos DB for NoSQL", "foundational"),
    "api-management": Service("API Management (Premium)", "mainstream"),
    "private-link": Service("Private Link (private endpoints)", "mainstream"),
    "log-analytics": Service("Log Analytics", "mainstream"),
    "application-insights": Service("Application Insights", "mainstream"),
    "container-apps": Service("Container Apps", "mainstream",
                              "https://learn.microsoft.com/azure/reliability/reliability-azure-container-apps"),
    "automation": Service("Automation", "strategic"),
}
# Every region of the stack hosts a regional layer, CELL instances and a location of the global services.
REGION_SERVICES = ("app-gateway", "public-ip", "virtual-network", "key-vault", "automation", "private-link",
                   "container-apps", "sql", "storage", "cosmos-db", "api-management")
# The first primary region also hosts the workspace and Application Insights.
HOME_SERVICES = ("log-analytics", "application-insights")

Availability = Literal["available", "restricted", "demand-driven"]


def availability(service: str, region: str) -> Availability:
    """What Azure promises for `service` in `region` (see the tables above)."""
    category = SERVICES[service].category
    if category == "global":
        return "available"
    if region in RESTRICTED_REGIONS:
        return "restricted"
    if category == "foundational" or (category == "mainstream" and has_zones(region)):
        return "available"
    return "demand-driven"


def _region_services(cfg: StampsConfig) -> list[tuple[int, str, tuple[str, ...]]]:
    home = next((r.name for r in cfg.regions if r.role == "primary"), None)
    return [(i, r.name, REGION_SERVICES + (HOME_SERVICES if r.name == home else ())) for i, r in enumerate(cfg.regions)]


def check_services(cfg: StampsConfig) -> list[str]:
    """A region where a service the plan deploys there cannot be created is a config error naming the key."""
    out = []
    for i, region, services in _region_services(cfg):
        refused = [SERVICES[s].name for s in services if availability(s, region) == "restricted"]
        if refused:
            near = sorted(r for r in ZONE_REGIONS if r[:4] == region[:4]) or sorted(ZONE_REGIONS)[:6]
            out.append(f"stamps:regions[{i}].name: {region!r} is an access-restricted region: {', '.join(refused)} "
                       f"cannot be deployed there until Microsoft grants the subscription access (region access "
                       f"request); choose an open region such as {', '.join(near)} ({RESTRICTED_SOURCE})")
    return out


def service_warnings(cfg: StampsConfig) -> list[str]:
    """Services Azure deploys to a region on demand only: the plan says which to confirm before `up`."""
    out = []
    for i, region, services in _region_services(cfg):
        unsure = [SERVICES[s].name for s in services if availability(s, region) == "demand-driven"]
        if unsure:
            why = "strategic services" if has_zones(region) else "an alternate region: no availability zones"
            out.append(f"stamps:regions[{i}].name: Azure deploys {', '.join(unsure)} to {region} on demand only "
                       f"({why}): confirm {'it is' if len(unsure) == 1 else 'they are'} offered there (Products "
                       f"available by region, or `az provider show`) before `up` ({CATEGORY_SOURCE})")
    return out


def storage_pair_warnings(cfg: StampsConfig) -> list[str]:
    """Where a primary's geo-redundant blobs fail over to a region other than its DR region: the pair is Azure's
    choice (PAIRS_SOURCE), so its standbys then read their blobs across regions after a storage failover."""
    out = []
    for i, r in enumerate(cfg.regions):
        pair = PAIRED_REGIONS.get(r.name)
        if r.role == "primary" and r.dr_region and pair and pair != r.dr_region:
            out.append(f"stamps:regions[{i}].drRegion: {r.dr_region} is not {r.name}'s paired region {pair}: its "
                       f"CELLs' geo-redundant blobs fail over to {pair}, and the standbys in {r.dr_region} reach them "
                       f"there over their private endpoints ({PAIRS_SOURCE})")
    return out
