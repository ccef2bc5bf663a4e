"""CELL capacity and headroom, and when each region runs out under the config's growth projection.

Pure functions of the resolved Environment (placement already applied), so `stamps capacity`, tests and
ops playbooks agree. Runbook "Growth Projections": the `stamps:growth` matrix gives a tenant growth
percentage per horizon; per primary region, projected tenants = current x (1 + growth% / 100), rounded up.
A region "runs out" when its projected shared tenants exceed the capacity of its shared CELLs. Dedicated
tenants never run a region out (each gets a new CELL); their projected count is reported as the number
of dedicated CELLs the region will need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from stamps.environment import Environment

HORIZONS: tuple[tuple[str, str], ...] = (("6months", "six_months"), ("12months", "twelve_months"))


@dataclass(frozen=True)
class CellLoad:
    cell: str
    region: str
    model: str
    capacity: int
    tenants: tuple[str, ...]
    compliance: tuple[str, ...]
    isolated: bool
    standby_region: str | None
    configured: bool  # False for a dedicated CELL placement created for an unpinned tenant

    @property
    def used(self) -> int:
        return len(self.tenants)

    @property
    def headroom(self) -> int:
        """Tenants the CELL can still take now (an isolated CELL takes none)."""
        return 0 if self.isolated else max(self.capacity - self.used, 0)

    @property
    def fill_percent(self) -> float:
        return round(100 * self.used / self.capacity, 1)


@dataclass(frozen=True)
class Projection:
    horizon: str
    growth_percent: float
    shared_tenants: int
    dedicated_tenants: int
    shortfall: int  # projected shared tenants beyond the region's shared capacity

    @property
    def runs_out(self) -> bool:
        return self.shortfall > 0


@dataclass(frozen=True)
class RegionOutlook:
    region: str
    shared_tenants: int
    shared_capacity: int
    dedicated_tenants: int
    projections: tuple[Projection, ...]

    @property
    def headroom(self) -> int:
        return max(self.shared_capacity - self.shared_tenants, 0)

    def first_shortfall(self) -> Projection | None:
        return next((p for p in self.projections if p.runs_out), None)


@dataclass(frozen=True)
class CapacityReport:
    stack: str
    cells: tuple[CellLoad, ...]
    regions: tuple[RegionOutlook, ...]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document (camelCase, like the stack config)."""
        return {
            "stack": self.stack,
            "cells": [
                {"cell": c.cell, "region": c.region, "model": c.model, "capacity": c.capacity,
                 "tenants": list(c.tenants), "used": c.used, "headroom": c.headroom,
                 "fillPercent": c.fill_percent, "compliance": list(c.compliance), "isolated": c.isolated,
                 "standbyRegion": c.standby_region, "configured": c.configured}
                for c in self.cells
            ],
            "regions": [
                {"region": r.region, "sharedTenants": r.shared_tenants, "sharedCapacity": r.shared_capacity,
                 "headroom": r.headroom, "dedicatedTenants": r.dedicated_tenants,
                 "projections": [
                     {"horizon": p.horizon, "growthPercent": p.growth_percent,
                      "sharedTenants": p.shared_tenants, "dedicatedTenants": p.dedicated_tenants,
                      "shortfall": p.shortfall, "runsOut": p.runs_out}
                     for p in r.projections
                 ]}
                for r in self.regions
            ],
            "warnings": list(self.warnings),
        }


def projected(current: int, growth_percent: float) -> int:
    """current x (1 + growth%), rounded up; exact arithmetic, so 50 x 110% is 55, not 56."""
    return math.ceil(current * (1 + Fraction(str(growth_percent)) / 100))


def cell_loads(env: Environment) -> tuple[CellLoad, ...]:
    configured = {c.name for c in env.config.cells}
    out = []
    for cell in env.cells:
        inst = env.instance(cell.name)
        out.append(CellLoad(
            cell=cell.name, region=cell.region, model=cell.model, capacity=cell.capacity,
            tenants=tuple(t.id for t in inst.tenants), compliance=tuple(cell.compliance),
            isolated=cell.isolation is not None,
            standby_region=cell.standby.region if cell.standby else None,
            configured=cell.name in configured,
        ))
    return tuple(out)


def region_outlooks(env: Environment, cells: tuple[CellLoad, ...]) -> tuple[RegionOutlook, ...]:
    out = []
    for region in env.primary_regions:
        shared = [c for c in cells if c.region == region and c.model == "shared"]
        dedicated = [c for c in cells if c.region == region and c.model == "dedicated"]
        # Isolation is an incident, not a plan: an isolated CELL's capacity still counts for growth.
        capacity = sum(c.capacity for c in shared)
        now_shared = sum(c.used for c in shared)
        now_dedicated = sum(c.used for c in dedicated)
        projections = []
        for label, attr in HORIZONS:
            growth = getattr(env.config.growth, attr).tenant_growth_percent
            p_shared = projected(now_shared, growth)
            projections.append(Projection(
                horizon=label, growth_percent=growth, shared_tenants=p_shared,
                dedicated_tenants=projected(now_dedicated, growth), shortfall=max(p_shared - capacity, 0),
            ))
        out.append(RegionOutlook(region, now_shared, capacity, now_dedicated, tuple(projections)))
    return tuple(out)


def capacity_warnings(env: Environment, cells: tuple[CellLoad, ...],
                      regions: tuple[RegionOutlook, ...]) -> tuple[str, ...]:
    warnings = []
    for r in regions:
        p = r.first_shortfall()
        if p is not None:
            warnings.append(
                f"{r.region}: shared CELLs run out within {p.horizon}: {r.shared_tenants} shared tenants "
                f"+{p.growth_percent:g}% = {p.shared_tenants} projected > capacity {r.shared_capacity} "
                f"(short by {p.shortfall}); add a shared CELL or raise capacity in {r.region}"
            )
    for c in cells:
        if c.isolated and c.tenants:
            warnings.append(f"CELL {c.cell}: isolated with {c.used} tenants {list(c.tenants)} that nothing serves")
    for i, t in enumerate(env.config.tenants):
        if t.cell is None:
            cell = env.tenant_cells[t.id]
            extra = "" if cell in {c.name for c in env.config.cells} else (
                f" and add its dedicated CELL {cell!r} under stamps:cells")
            # Placement is recomputed every run: an unpinned tenant can move when the config changes.
            warnings.append(
                f"stamps:tenants[{i}] ({t.id}): no cell: pinned; placement chose {cell!r} this run. "
                f"Pin it (cell: {cell}){extra} so a later config change never moves it"
            )
    return tuple(warnings)


def capacity_report(env: Environment) -> CapacityReport:
    cells = cell_loads(env)
    regions = region_outlooks(env, cells)
    return CapacityReport(env.stack, cells, regions, capacity_warnings(env, cells, regions))
