"""Azure SQL service objectives: the one place that knows their names, families and editions, and how a CELL's
SKU steps along `stamps:scaling.sqlLadder` (config validation, alert variants and the scale playbook use it).

DTU objectives (Basic, S*, P*) publish `dtu_consumption_percent`; vCore ones (GP_/BC_/HS_...) publish only
`cpu_percent`. A step up that crosses editions on a geo-replicated database upgrades the secondary first
(`sku_up` says so; the scale playbook runs that as its own update).
"""

from __future__ import annotations

from collections.abc import Sequence

# Azure SQL service objectives accepted for CELL databases (DTU and vCore families).
SQL_SKUS: tuple[str, ...] = (
    "Basic", "S0", "S1", "S2", "S3", "S4", "S6", "S7", "S9", "S12",
    "P1", "P2", "P4", "P6", "P11", "P15",
    "GP_Gen5_2", "GP_Gen5_4", "GP_Gen5_8", "GP_Gen5_16", "GP_Gen5_32",
    "BC_Gen5_2", "BC_Gen5_4", "BC_Gen5_8", "BC_Gen5_16",
    "HS_Gen5_2", "HS_Gen5_4", "HS_Gen5_8",
)


def dtu_model(sku: str) -> bool:
    """DTU service objectives (Basic, S*, P*) publish dtu_consumption_percent; vCore ones do not."""
    return sku == "Basic" or (sku[:1] in ("S", "P") and sku[1:].isdigit())


def edition(sku: str) -> str:
    """Basic, Standard, Premium, or the vCore tier prefix (GP, BC, HS)."""
    if sku == "Basic":
        return "Basic"
    if dtu_model(sku):
        return {"S": "Standard", "P": "Premium"}[sku[0]]
    return sku.split("_", 1)[0]  # GP / BC / HS


def sku_up(sku: str, ladder: Sequence[str], has_standby: bool) -> tuple[str, str]:
    """The next rung up the ladder, and a note when there is none or the step crosses editions."""
    if sku not in ladder:
        return sku, f"SQL SKU {sku} is not on scaling.sqlLadder; not changed"
    idx = ladder.index(sku)
    if idx == len(ladder) - 1:
        return sku, f"SQL SKU {sku} is the top of scaling.sqlLadder"
    nxt = ladder[idx + 1]
    if has_standby and edition(nxt) != edition(sku):
        # Azure wants the geo-secondary upgraded first across editions, but one stack update changes the
        # primary first (the secondary depends on it): the apply step runs two updates, standby first.
        return nxt, (f"SQL {sku} → {nxt} crosses editions ({edition(sku)} → {edition(nxt)}): "
                     "the geo-secondary is upgraded first, in its own update")
    return nxt, ""


def sku_down(sku: str, floor: str, ladder: Sequence[str]) -> str:
    """One rung down, never below `floor` (the CELL's baseline)."""
    if sku not in ladder or floor not in ladder or ladder.index(sku) <= ladder.index(floor):
        return sku
    return ladder[ladder.index(sku) - 1]  # downgrades go primary first: the stack's own order
