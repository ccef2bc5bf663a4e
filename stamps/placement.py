"""Tenant placement: which CELL serves a tenant the config leaves unplaced.

Shared tiers go to the least-loaded shared CELL of the tenant's region that has room and covers the
tenant's compliance needs; dedicated tiers get a CELL of their own, named after the tenant.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from stamps.config.model import CellConfig, Replicas, SqlConfig, StampsConfig, StandbyConfig, TenantConfig


class PlacementError(ValueError):
    """No CELL can take the tenant; the message names the tenant's key and why each candidate failed."""


@dataclass(frozen=True)
class Placement:
    tenant_cells: dict[str, str]
    new_cells: tuple[CellConfig, ...]


def default_region(cfg: StampsConfig) -> str:
    return next(r.name for r in cfg.regions if r.role == "primary")


def dedicated_cell_for(cfg: StampsConfig, tenant: TenantConfig, region: str) -> CellConfig:
    """The CELL an enterprise tenant gets: sized like the runbook's dedicated CELLs, with a DR standby."""
    dr = next(r.dr_region for r in cfg.regions if r.name == region)
    return CellConfig(
        name=tenant.id,
        region=region,
        model="dedicated",
        capacity=1,
        compliance=list(tenant.compliance),
        replicas=Replicas(min=3, max=10),
        sql=SqlConfig(sku="P1"),
        standby=StandbyConfig(region=dr, replicas=Replicas(min=1, max=10)) if dr else None,
    )


def choose_shared_cell(
    cfg: StampsConfig, tenant: TenantConfig, region: str, load: Counter[str], key: str
) -> CellConfig:
    reasons = []
    candidates = []
    for cell in cfg.cells:
        if cell.model != "shared" or cell.region != region:
            continue
        if not set(tenant.compliance) <= set(cell.compliance):
            reasons.append(f"{cell.name} lacks {sorted(set(tenant.compliance) - set(cell.compliance))}")
        elif load[cell.name] >= cell.capacity:
            reasons.append(f"{cell.name} is full ({load[cell.name]}/{cell.capacity})")
        elif cell.isolation is not None:
            reasons.append(f"{cell.name} is isolated")
        else:
            candidates.append(cell)
    if not candidates:
        why = "; ".join(reasons) or f"no shared CELL in {region}"
        raise PlacementError(
            f"{key}: no shared CELL in {region} can take tenant {tenant.id!r} ({why}); "
            "add a shared CELL or raise a CELL's capacity"
        )
    # Least loaded by fill ratio, then by name so placement is deterministic.
    return min(candidates, key=lambda c: (load[c.name] / c.capacity, c.name))


def place(cfg: StampsConfig) -> Placement:
    """Resolve every tenant to a CELL, creating dedicated CELLs for unplaced dedicated-tier tenants."""
    tiers = {t.name: t for t in cfg.tiers}
    load: Counter[str] = Counter(t.cell for t in cfg.tenants if t.cell)
    tenant_cells: dict[str, str] = {}
    new_cells: list[CellConfig] = []
    taken = {c.name for c in cfg.cells}
    for i, tenant in enumerate(cfg.tenants):
        key = f"stamps:tenants[{i}]"
        if tenant.cell is not None:
            tenant_cells[tenant.id] = tenant.cell
            continue
        region = tenant.region or default_region(cfg)
        if tiers[tenant.tier].model == "dedicated":
            if tenant.id in taken:
                raise PlacementError(
                    f"{key}.cell: a dedicated CELL named {tenant.id!r} would clash with an existing CELL; "
                    "set cell: explicitly"
                )
            cell = dedicated_cell_for(cfg, tenant, region)
            new_cells.append(cell)
            taken.add(cell.name)
        else:
            cell = choose_shared_cell(cfg, tenant, region, load, key)
        load[cell.name] += 1
        tenant_cells[tenant.id] = cell.name
    return Placement(tenant_cells=tenant_cells, new_cells=tuple(new_cells))
