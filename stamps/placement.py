"""Tenant placement: which CELL serves a tenant the config leaves unplaced.

Shared tiers go to the least-loaded shared CELL of the tenant's region that has room, is not isolated and
covers the tenant's compliance needs. Least loaded is the lowest fill ratio; ties go to the CELL with the
fewest compliance regimes beyond what the tenant needs (compliant capacity is scarce), then by name, so
placement is deterministic. Dedicated tiers get a CELL of their own, named after the tenant (an existing,
unused dedicated CELL of that name in the right region is reused).

Placement is recomputed on every run, so an unpinned tenant may move when other tenants are added: the
onboarding playbook calls `placement_for` once and writes the chosen `cell:` into the stack config.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from stamps.config.model import CellConfig, Replicas, SqlConfig, StampsConfig, StandbyConfig, TenantConfig
from stamps.errors import UsageError


class PlacementError(UsageError, ValueError):
    """No CELL can take the tenant; the message names the tenant's key and why each candidate failed."""


@dataclass(frozen=True)
class Placement:
    tenant_cells: dict[str, str]
    new_cells: tuple[CellConfig, ...]


@dataclass(frozen=True)
class TenantPlacement:
    """Where one tenant goes, and what to write into the stack config to pin it there."""

    tenant: str
    key: str  # `stamps:tenants[i]`
    cell: str
    pinned: bool  # the config already names the CELL
    new_cell: CellConfig | None  # a dedicated CELL to add under `stamps:cells` before pinning `cell:`


def default_region(cfg: StampsConfig) -> str:
    return next(r.name for r in cfg.regions if r.role == "primary")


def dedicated_cell_for(cfg: StampsConfig, tenant: TenantConfig, region: str,
                       also: Sequence[CellConfig] = ()) -> CellConfig:
    """The CELL an enterprise tenant gets: sized like the runbook's dedicated CELLs, with a DR standby."""
    dr = next(r.dr_region for r in cfg.regions if r.name == region)
    from stamps.config.slots import next_free_slot

    return CellConfig(
        name=tenant.id,
        region=region,
        model="dedicated",
        # A slot of its own for life: removing or reordering CELLs later never moves this CELL's subnet.
        slot=next_free_slot([*cfg.cells, *also]),
        capacity=1,
        compliance=list(tenant.compliance),
        replicas=Replicas(min=3, max=10),
        sql=SqlConfig(sku="P1"),
        standby=StandbyConfig(region=dr, replicas=Replicas(min=1, max=10)) if dr else None,
    )


def _needs(tenant: TenantConfig) -> str:
    return f"needs compliance {sorted(tenant.compliance)}" if tenant.compliance else "no compliance needs"


def choose_shared_cell(
    cfg: StampsConfig, tenant: TenantConfig, region: str, load: Counter[str], key: str
) -> CellConfig:
    reasons = []
    candidates = []
    for cell in cfg.cells:
        if cell.model != "shared" or cell.region != region:
            continue
        missing = sorted(set(tenant.compliance) - set(cell.compliance))
        if missing:
            reasons.append(f"{cell.name} lacks {missing}")
        elif cell.isolation is not None:
            reasons.append(f"{cell.name} is isolated ({cell.isolation.reason})")
        elif load[cell.name] >= cell.capacity:
            reasons.append(f"{cell.name} is full ({load[cell.name]}/{cell.capacity})")
        else:
            candidates.append(cell)
    if not candidates:
        why = "; ".join(reasons) or "there is none"
        raise PlacementError(
            f"{key}: no shared CELL in {region} can take tenant {tenant.id!r} (tier {tenant.tier!r}, "
            f"{_needs(tenant)}): {why}. Add a shared CELL in {region}"
            f"{' with ' + str(sorted(tenant.compliance)) if tenant.compliance else ''}, raise a CELL's "
            "capacity, or set this tenant's region/cell"
        )
    # Exact fill ratios (1/3 == 2/6), then the tie-breaks: fewest surplus compliance regimes, then name.
    return min(candidates, key=lambda c: (
        Fraction(load[c.name], c.capacity), len(set(c.compliance) - set(tenant.compliance)), c.name
    ))


def _dedicated_cell(cfg: StampsConfig, tenant: TenantConfig, region: str, load: Counter[str],
                    taken: set[str], key: str, created: Sequence[CellConfig]) -> tuple[CellConfig, bool]:
    """The tenant's own CELL: an unused configured one named after it, else a new one (True = new)."""
    existing = next((c for c in cfg.cells if c.name == tenant.id), None)
    if existing is None:
        if tenant.id in taken:
            raise PlacementError(f"{key}.cell: a dedicated CELL named {tenant.id!r} was already created "
                                 "for another tenant; set cell: explicitly")
        return dedicated_cell_for(cfg, tenant, region, created), True
    problems = []
    if existing.model != "dedicated":
        problems.append(f"it is {existing.model}")
    if existing.region != region:
        problems.append(f"it runs in {existing.region}, not {region}")
    if load[existing.name]:
        problems.append("it already serves a tenant")
    missing = sorted(set(tenant.compliance) - set(existing.compliance))
    if missing:
        problems.append(f"it lacks {missing}")
    if existing.isolation is not None:
        problems.append("it is isolated")
    if problems:
        raise PlacementError(
            f"{key}.cell: tenant {tenant.id!r} needs a dedicated CELL named after it, but CELL "
            f"{tenant.id!r} exists and cannot take it ({'; '.join(problems)}); set cell: explicitly"
        )
    return existing, False


def place(cfg: StampsConfig) -> Placement:
    """Resolve every tenant to a CELL, creating dedicated CELLs for unplaced dedicated-tier tenants.

    Pinned tenants (`cell:` set) count first, so an unpinned tenant never takes room a pinned one holds;
    unpinned tenants are then placed in config order.
    """
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
        tier = tiers.get(tenant.tier)
        if tier is None:
            raise PlacementError(f"{key}.tier: unknown tier {tenant.tier!r}; valid: {', '.join(sorted(tiers))}")
        region = tenant.region or default_region(cfg)
        if tier.model == "dedicated":
            cell, new = _dedicated_cell(cfg, tenant, region, load, taken, key, new_cells)
            if new:
                new_cells.append(cell)
                taken.add(cell.name)
        else:
            cell = choose_shared_cell(cfg, tenant, region, load, key)
        load[cell.name] += 1
        tenant_cells[tenant.id] = cell.name
    return Placement(tenant_cells=tenant_cells, new_cells=tuple(new_cells))


def unpinned_warnings(cfg: StampsConfig, tenant_cells: dict[str, str]) -> list[str]:
    """Outside dev: tenants placement chooses a CELL for on every run, and where to pin them.

    Their CELL follows the rest of the config: onboarding, removing or re-pinning another tenant can move
    them, and the plan then routes them to a CELL that holds none of their data (a move needs `stamps-ops
    migrate`). `onboard` pins every tenant it adds; this catches hand-written tenants.
    """
    if cfg.environment == "dev":
        return []
    loose = [(i, t.id) for i, t in enumerate(cfg.tenants) if t.cell is None]
    if not loose:
        return []
    pins = ", ".join(f"stamps:tenants[{i}].cell: {tenant_cells[tid]}" for i, tid in loose[:3])
    more = f" (and {len(loose) - 3} more)" if len(loose) > 3 else ""
    return [f"{len(loose)} tenant(s) have no `cell:`, so adding or removing another tenant can move them to a "
            f"CELL without their data: pin them where they are now: {pins}{more}"]


def placement_for(cfg: StampsConfig, tenant_id: str) -> TenantPlacement:
    """Where `tenant_id` (already listed under `stamps:tenants`) goes: for the onboarding playbook.

    Raises PlacementError naming `stamps:tenants[i]` when no CELL can take it.
    """
    index = next((i for i, t in enumerate(cfg.tenants) if t.id == tenant_id), None)
    if index is None:
        raise PlacementError(f"stamps:tenants: no tenant with id {tenant_id!r}; add it before placing it")
    tenant = cfg.tenants[index]
    result = place(cfg)
    cell = result.tenant_cells[tenant_id]
    return TenantPlacement(
        tenant=tenant_id,
        key=f"stamps:tenants[{index}]",
        cell=cell,
        pinned=tenant.cell is not None,
        new_cell=next((c for c in result.new_cells if c.name == cell), None),
    )
