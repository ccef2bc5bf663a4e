"""Cost guards (advisory): premium capacity belongs to production.

- API Management Premium (multi-region gateways, several thousand USD a month per unit) only where the
  resource's `environment` tag is one of `premiumEnvironments`.
- Azure SQL databases stay at or below their environment's SKU ceiling. SKUs are ordered by approximate
  monthly list price (USD, single database, for ordering only); vCore names (`GP_Gen5_8`, `GP_S_Gen5_2`,
  `BC_Gen5_4`, `HS_Gen5_2`) are priced per vCore. Environments without a ceiling are not limited.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy

from ._common import ADVISORY, APIM_SERVICE, SQL_DATABASE, lookup, resource_policy, same

DTU_MONTHLY_USD: dict[str, float] = {
    "Basic": 5, "S0": 15, "S1": 30, "S2": 75, "S3": 150, "S4": 300, "S6": 600, "S7": 1200, "S9": 2400,
    "S12": 4500, "P1": 465, "P2": 930, "P4": 1860, "P6": 3720, "P11": 7000, "P15": 15000,
}
VCORE_MONTHLY_USD: dict[str, float] = {"GP": 185, "GP_S": 150, "BC": 500, "HS": 230}
_VCORE = re.compile(r"^(GP_S|GP|BC|HS)_Gen\d+_(\d+)$", re.IGNORECASE)


def sku_cost(sku: str) -> float | None:
    """Approximate monthly list price of an Azure SQL SKU name; None for names the table does not know."""
    for name, price in DTU_MONTHLY_USD.items():
        if name.lower() == sku.lower():
            return price
    match = _VCORE.match(sku)
    if match:
        return VCORE_MONTHLY_USD[match.group(1).upper()] * int(match.group(2))
    return None


APIM_SCHEMA = PolicyConfigSchema(
    properties={
        "premiumEnvironments": {
            "type": "array", "items": {"type": "string"}, "default": ["prod"],
            "description": "environment tag values allowed to run API Management Premium",
        },
    },
)

SQL_SCHEMA = PolicyConfigSchema(
    properties={
        "ceilings": {
            "type": "object", "additionalProperties": {"type": "string"},
            "default": {"dev": "S1", "test": "S2", "staging": "S3"},
            "description": "environment tag value -> most expensive SQL SKU allowed there",
        },
    },
)


def _environment(args: ResourceValidationArgs) -> str | None:
    env = lookup(args.props, "tags", "environment")
    return env if isinstance(env, str) else None


def _apim(args: ResourceValidationArgs, cfg: dict[str, Any]) -> Iterator[str]:
    sku = lookup(args.props, "sku", "name")
    env = _environment(args)
    if same(sku, "Premium") and env not in cfg["premiumEnvironments"]:
        yield (f"API Management Premium in environment {env!r}: Premium is for "
               f"{', '.join(cfg['premiumEnvironments'])}; use Developer or Standard here")


def _sql(args: ResourceValidationArgs, cfg: dict[str, Any]) -> Iterator[str]:
    env = _environment(args)
    ceiling = cfg["ceilings"].get(env) if env else None
    sku = lookup(args.props, "sku", "name")
    if ceiling is None or not isinstance(sku, str):
        return
    cost, limit = sku_cost(sku), sku_cost(ceiling)
    if cost is None or limit is None:
        unknown = sku if cost is None else ceiling
        yield f"SKU {unknown!r} is not in the pack's price table; cannot compare {sku!r} with the ceiling {ceiling!r}"
    elif cost > limit:
        yield (f"SKU {sku!r} (~{cost:,.0f} USD/month) is above the {env} ceiling {ceiling!r} "
               f"(~{limit:,.0f} USD/month)")


def policies() -> list[ResourceValidationPolicy]:
    return [
        resource_policy(
            "cost-apim-premium-prod-only",
            "API Management Premium runs only in production environments.",
            [APIM_SERVICE], _apim, level=ADVISORY, schema=APIM_SCHEMA),
        resource_policy(
            "cost-sql-sku-ceiling",
            "Azure SQL databases stay within their environment's SKU ceiling.",
            [SQL_DATABASE], _sql, level=ADVISORY, schema=SQL_SCHEMA),
    ]
