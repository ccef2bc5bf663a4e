"""Data residency: resources deploy only to the regions the pack's config allows.

Locations are compared the way Azure does ("East US" is "eastus"). `global` is not a region (Front Door,
Traffic Manager, private DNS, alert rules) and is always allowed. Besides `location`, the secondary
regions of multi-region services are checked: API Management gateways (`additionalLocations`) and Cosmos
DB replicas (`locations`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy

from ._common import resource_policy

SCHEMA = PolicyConfigSchema(
    properties={
        "allowedRegions": {
            "type": "array", "items": {"type": "string"}, "minItems": 1,
            "default": ["eastus", "westus"],
            "description": "Azure regions resources may be deployed to (any spelling Azure accepts)",
        },
    },
)


def normalize(location: str) -> str:
    return location.replace(" ", "").lower()


def _locations(props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    yield "location", props.get("location")
    for i, loc in enumerate(props.get("additionalLocations") or []):
        if isinstance(loc, Mapping):
            yield f"additionalLocations[{i}].location", loc.get("location")
    for i, loc in enumerate(props.get("locations") or []):
        if isinstance(loc, Mapping):
            yield f"locations[{i}].locationName", loc.get("locationName")


def _check(args: ResourceValidationArgs, cfg: dict[str, Any]) -> Iterator[str]:
    if not args.resource_type.startswith("azure-native:"):
        return
    allowed = {normalize(r) for r in cfg["allowedRegions"]} | {"global"}
    for path, value in _locations(args.props):
        if isinstance(value, str) and normalize(value) not in allowed:
            yield f"{path} is {value!r}, outside the allowed regions ({', '.join(sorted(allowed - {'global'}))})"


def policies() -> list[ResourceValidationPolicy]:
    return [
        resource_policy(
            "allowed-regions",
            "Resources deploy only to the allowed Azure regions.",
            None, _check, schema=SCHEMA),
    ]
