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
