"""Azure public-cloud regions a stamp may be deployed to (ARM `location` names)."""

from __future__ import annotations

# `az account list-locations --query "[?metadata.regionType=='Physical'].name"`, public cloud.
AZURE_REGIONS: frozenset[str] = frozenset(
    {
        "australiacentral", "australiaeast", "australiasoutheast", "austriaeast", "belgiumcentral",
        "brazilsouth", "brazilsoutheast", "canadacentral", "canadaeast", "centralindia", "centralus",
        "chilecentral", "eastasia", "eastus", "eastus2", "francecentral", "francesouth", "germanynorth",
        "germanywestcentral", "indonesiacentral", "israelcentral", "italynorth", "japaneast", "japanwest",
        "koreacentral", "koreasouth", "malaysiawest", "mexicocentral", "newzealandnorth", "northcentralus",
        "northeurope", "norwayeast", "norwaywest", "polandcentral", "qatarcentral", "southafricanorth",
        "southafricawest", "southcentralus", "southindia", "southeastasia", "spaincentral", "swedencentral",
        "switzerlandnorth", "switzerlandwest", "uaecentral", "uaenorth", "uksouth", "ukwest",
        "westcentralus", "westeurope", "westindia", "westus", "westus2", "westus3",
    }
)

# Short codes keep derived names inside Azure's length limits (storage accounts: 24 characters).
REGION_CODES: dict[str, str] = {
    "eastus": "eus", "eastus2": "eus2", "westus": "wus", "westus2": "wus2", "westus3": "wus3",
    "centralus": "cus", "northcentralus": "ncus", "southcentralus": "scus", "westcentralus": "wcus",
    "northeurope": "neu", "westeurope": "weu", "uksouth": "uks", "ukwest": "ukw",
    "francecentral": "frc", "germanywestcentral": "gwc", "swedencentral": "sdc", "switzerlandnorth": "szn",
    "norwayeast": "nwe", "polandcentral": "plc", "italynorth": "itn", "spaincentral": "spc",
    "japaneast": "jpe", "japanwest": "jpw", "koreacentral": "krc", "southeastasia": "sea", "eastasia": "ea",
    "australiaeast": "aue", "australiasoutheast": "ause", "centralindia": "inc", "southindia": "ins",
    "canadacentral": "cac", "canadaeast": "cae", "brazilsouth": "brs", "uaenorth": "uaen",
    "southafricanorth": "san",
}


def region_code(region: str) -> str:
    """A short, stable code for a region; unknown-but-valid regions fall back to a compacted name."""
    return REGION_CODES.get(region, region.replace("north", "n").replace("south", "s")
                            .replace("east", "e").replace("west", "w").replace("central", "c")[:6])
