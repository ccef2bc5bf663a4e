"""The resolved environment: validated config plus everything derived from it once.

Components read only this object, so a rule such as "a standby CELL runs at its active size while its
region serves traffic" is decided in one place and every layer agrees on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from stamps.config.model import CellConfig, RegionConfig, Replicas, StampsConfig, TenantConfig, TierConfig
from stamps.naming import Naming


@dataclass(frozen=True)
class CellInstance:
    """One deployed CELL: the primary in its region, or its standby in the DR region."""

    cell: CellConfig
    region: str
    role: Literal["primary", "standby"]
    key: str
    replicas: Replicas
    tenants: tuple[TenantConfig, ...]
    isolated: bool
    alerts_enabled: bool

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def model(self) -> str:
        return self.cell.model


@dataclass(frozen=True)
class Environment:
    project: str
    stack: str
    config: StampsConfig
    naming: Naming
    tenant_cells: dict[str, str]
    cells: tuple[CellConfig, ...] = field(default=())

    @cached_property
    def regions(self) -> dict[str, RegionConfig]:
        return {r.name: r for r in self.config.regions}

    @cached_property
    def primary_regions(self) -> list[str]:
        return [r.name for r in self.config.regions if r.role == "primary"]

    @cached_property
    def tiers(self) -> dict[str, TierConfig]:
        return {t.name: t for t in self.config.tiers}

    def serving_region(self, primary: str) -> str:
        """Where a primary region's CELLs serve from now: itself, or its DR region after a failover."""
        r = self.regions[primary]
        return r.dr_region if r.serving_from == "dr" and r.dr_region else primary

    def failed_over(self, primary: str) -> bool:
        return self.serving_region(primary) != primary

    @cached_property
    def failed_over_regions(self) -> list[str]:
        return [p for p in self.primary_regions if self.failed_over(p)]

    def dns_ttl(self, primary: str) -> int:
        """A failed-over region's Traffic Manager answers live shorter, so failback propagates fast."""
        tm = self.config.traffic_manager
        return tm.failover_ttl if self.failed_over(primary) else tm.ttl

    def endpoint_priority(self, primary: str, region: str) -> int:
        """Priority of `region`'s endpoint in `primary`'s Traffic Manager profile (1 serves)."""
        return 1 if region == self.serving_region(primary) else 2

    def cell_host(self, primary: str) -> str:
        """The name API Management calls a primary region's CELLs by; its profile decides which gateway answers."""
        return f"{primary}.{self.config.tls.cells_host_name}"

    def primaries_backed_by(self, region: str) -> list[str]:
        """The primary regions whose CELLs a region can serve: itself if primary, those it is DR for."""
        return [p for p in self.primary_regions if p == region or self.regions[p].dr_region == region]

    @cached_property
    def instances(self) -> tuple[CellInstance, ...]:
        out: list[CellInstance] = []
        for cell in self.cells:
            tenants = tuple(t for t in self.config.tenants if self.tenant_cells.get(t.id) == cell.name)
            isolated = cell.isolation is not None
            out.append(
                CellInstance(
                    cell=cell, region=cell.region, role="primary", key=Naming.cell_key(cell.name, cell.region),
                    replicas=cell.replicas, tenants=tenants, isolated=isolated,
                    alerts_enabled=cell.alerts_enabled and not isolated and self.config.alerts.enabled,
                )
            )
            if cell.standby is not None:
                # A standby serves while its primary region is failed over or takes no traffic (drill).
                serving = self.failed_over(cell.region) or not self.regions[cell.region].traffic_enabled
                out.append(
                    CellInstance(
                        cell=cell, region=cell.standby.region, role="standby",
                        key=Naming.cell_key(cell.name, cell.standby.region),
                        # A standby runs at its active size while its region serves traffic.
                        replicas=cell.replicas if serving else cell.standby.replicas,
                        tenants=tenants, isolated=False,
                        alerts_enabled=cell.alerts_enabled and self.config.alerts.enabled,
                    )
                )
        return tuple(out)

    def instances_in(self, region: str) -> list[CellInstance]:
        return [i for i in self.instances if i.region == region]

    def instance(self, cell: str, role: str = "primary") -> CellInstance:
        return next(i for i in self.instances if i.name == cell and i.role == role)

    @property
    def deployed_regions(self) -> list[str]:
        """Regions with infrastructure: every configured region, in config order."""
        return [r.name for r in self.config.regions]

    def tags(self, layer: str, **extra: str) -> dict[str, str]:
        """The required tags: environment, layer, cost center (+ region, CELL, tenancy where they apply)."""
        base = {
            **self.config.tags,
            "environment": self.config.environment,
            "layer": layer,
            "cost-center": self.config.cost_center,
            "owner": self.config.owner,
            "managed-by": "pulumi-stamps",
        }
        base.update({k: v for k, v in extra.items() if v})
        return base
