"""Rules that relate config sections to each other: references, DR pairing, tenancy and capacity.

Every rule appends a problem naming the key path and what would be valid; the caller raises them all at
once, so a user fixes a config in one pass instead of one error per run.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable

from stamps.config.model import StampsConfig
from stamps.config.sql_skus import SQL_SKUS
from stamps.monitoring.catalog import check_overrides

Problems = list[str]


def _dupes(items: Iterable[str]) -> set[str]:
    return {k for k, n in Counter(items).items() if n > 1}


def _one_of(values: Iterable[str]) -> str:
    return ", ".join(sorted(values)) or "(none defined)"


def check_unique(cfg: StampsConfig, out: Problems) -> None:
    for key, values in (
        ("regions", [r.name for r in cfg.regions]),
        ("tiers", [t.name for t in cfg.tiers]),
        ("cells", [c.name for c in cfg.cells]),
        ("tenants", [t.id for t in cfg.tenants]),
    ):
        for dup in sorted(_dupes(values)):
            idx = [i for i, v in enumerate(values) if v == dup][1]
            field = "id" if key == "tenants" else "name"
            out.append(f"stamps:{key}[{idx}].{field}: duplicate {field} {dup!r}; each must be unique")


def check_regions(cfg: StampsConfig, out: Problems) -> None:
    dr_names = {r.name for r in cfg.regions if r.role == "dr"}
    if not any(r.role == "primary" for r in cfg.regions):
        out.append("stamps:regions: at least one region needs role: primary")
    for i, r in enumerate(cfg.regions):
        if r.dr_region is not None and r.dr_region not in dr_names:
            out.append(
                f"stamps:regions[{i}].drRegion: {r.dr_region!r} is not a configured region with role: dr; "
                f"valid: {_one_of(dr_names)}"
            )
    nets = [(i, r.address_space) for i, r in enumerate(cfg.regions)]
    for a in range(len(nets)):
        for b in range(a + 1, len(nets)):
            if ipaddress.ip_network(nets[a][1]).overlaps(ipaddress.ip_network(nets[b][1])):
                out.append(
                    f"stamps:regions[{nets[b][0]}].addressSpace: {nets[b][1]} overlaps "
                    f"stamps:regions[{nets[a][0]}] ({nets[a][1]}); regional networks are peered, use disjoint ranges"
                )


def check_cells(cfg: StampsConfig, out: Problems) -> None:
    regions = {r.name: r for r in cfg.regions}
    for i, c in enumerate(cfg.cells):
        region = regions.get(c.region)
        if region is None:
            out.append(f"stamps:cells[{i}].region: {c.region!r} is not a configured region; valid: {_one_of(regions)}")
        elif region.role != "primary":
            out.append(
                f"stamps:cells[{i}].region: {c.region!r} is a DR region; CELLs run in a primary region "
                f"and get a standby in its DR region (valid: "
                f"{_one_of(r.name for r in cfg.regions if r.role == 'primary')})"
            )
        if (c.standby is not None and region is not None and region.role == "primary"
                and c.standby.region != region.dr_region):
            out.append(
                f"stamps:cells[{i}].standby.region: {c.standby.region!r} is not the DR region of "
                f"{c.region!r}; valid: {region.dr_region}"
            )
        if c.model == "dedicated" and c.capacity != 1:
            out.append(f"stamps:cells[{i}].capacity: a dedicated CELL holds exactly one tenant; use 1 or omit it")
        for j, r in enumerate(c.restores):
            if sum(1 for x in c.restores if x.name == r.name) > 1:
                out.append(f"stamps:cells[{i}].restores[{j}].name: duplicate restore name {r.name!r}")
        if c.canary is not None and c.canary.version == c.version:
            out.append(f"stamps:cells[{i}].canary.version: equals the current version {c.version!r}; nothing to shift")


def check_tenants(cfg: StampsConfig, out: Problems) -> None:
    tiers = {t.name: t for t in cfg.tiers}
    cells = {c.name: c for c in cfg.cells}
    for i, t in enumerate(cfg.tenants):
        tier = tiers.get(t.tier)
        if tier is None:
            out.append(f"stamps:tenants[{i}].tier: unknown tier {t.tier!r}; valid: {_one_of(tiers)}")
        if t.region is not None and t.region not in {r.name for r in cfg.regions if r.role == "primary"}:
            out.append(
                f"stamps:tenants[{i}].region: {t.region!r} is not a primary region; valid: "
                f"{_one_of(r.name for r in cfg.regions if r.role == 'primary')}"
            )
        if t.cell is None:
            continue
        cell = cells.get(t.cell)
        if cell is None:
            out.append(f"stamps:tenants[{i}].cell: unknown CELL {t.cell!r}; valid: {_one_of(cells)}")
            continue
        if tier is not None and tier.model != cell.model:
            out.append(
                f"stamps:tenants[{i}].cell: tier {tier.name!r} needs a {tier.model} CELL but {cell.name!r} is "
                f"{cell.model}; valid: {_one_of(c.name for c in cfg.cells if c.model == tier.model)}"
            )
        missing = set(t.compliance) - set(cell.compliance)
        if missing:
            out.append(
                f"stamps:tenants[{i}].cell: CELL {cell.name!r} lacks compliance {sorted(missing)} the tenant needs; "
                f"valid: {_one_of(c.name for c in cfg.cells if set(t.compliance) <= set(c.compliance))}"
            )


def check_tenant_emails(cfg: StampsConfig, out: Problems) -> None:
    # Each tenant becomes an API Management user, and APIM wants user emails unique (case-insensitively).
    emails = Counter(t.email.lower() for t in cfg.tenants)
    for i, t in enumerate(cfg.tenants):
        if emails[t.email.lower()] > 1:
            out.append(f"stamps:tenants[{i}].email: {t.email!r} is used by another tenant; "
                       "API Management users need distinct emails")


def check_capacity(cfg: StampsConfig, out: Problems) -> None:
    load = Counter(t.cell for t in cfg.tenants if t.cell is not None)
    for i, c in enumerate(cfg.cells):
        n = load.get(c.name, 0)
        if c.model == "dedicated" and n > 1:
            ids = [t.id for t in cfg.tenants if t.cell == c.name]
            out.append(f"stamps:cells[{i}]: dedicated CELL {c.name!r} has {n} tenants {ids}; it may hold one")
        elif c.model == "shared" and n > c.capacity:
            out.append(
                f"stamps:cells[{i}].capacity: shared CELL {c.name!r} holds {n} tenants but capacity is "
                f"{c.capacity}; raise capacity or move tenants"
            )


def check_kpis(cfg: StampsConfig, out: Problems) -> None:
    # Direction matters: for "higher is better" KPIs the alert fires below target, otherwise above it.
    higher_is_better = {"availability_percent", "api_throughput_per_minute", "storage_iops"}
    percent = {"availability_percent", "error_rate_percent", "container_cpu_percent"}
    for scope, section in (("global", cfg.kpis.global_), ("cell", cfg.kpis.cell)):
        for field, info in type(section).model_fields.items():
            kpi = getattr(section, field)
            key = f"stamps:kpis.{scope}.{info.alias or field}"
            if field in percent and not (0 <= kpi.alert <= 100 and 0 <= kpi.target <= 100):
                out.append(f"{key}: percentages must be within 0-100 (target {kpi.target}, alert {kpi.alert})")
            elif kpi.alert < 0 or kpi.target < 0:
                out.append(f"{key}: values must not be negative")
            elif field in higher_is_better and kpi.alert > kpi.target:
                out.append(f"{key}.alert: must be at or below the target {kpi.target} (alerts fire below it)")
            elif field not in higher_is_better and kpi.alert < kpi.target:
                out.append(f"{key}.alert: must be at or above the target {kpi.target} (alerts fire above it)")


def check_misc(cfg: StampsConfig, out: Problems) -> None:
    for j, sku in enumerate(cfg.scaling.sql_ladder):
        if sku not in SQL_SKUS:
            out.append(f"stamps:scaling.sqlLadder[{j}]: {sku!r} is not an Azure SQL service objective")
    bad = set('<>%&\\?/')
    for k, v in cfg.tags.items():
        if not k or len(k) > 512 or bad & set(k):
            out.append(f"stamps:tags.{k}: tag names are 1-512 characters without < > % & \\ ? /")
        if len(v) > 256:
            out.append(f"stamps:tags.{k}: tag values are at most 256 characters")


def check_alert_rules(cfg: StampsConfig, out: Problems) -> None:
    # Override ids, windows and frequencies are checked against the alert catalog (`stamps alerts`).
    out.extend(check_overrides(cfg))


def check_slots(cfg: StampsConfig, out: Problems) -> None:
    from stamps.config.slots import capacity, cell_slots

    seen: dict[int, int] = {}
    for i, c in enumerate(cfg.cells):
        if c.slot is None:
            continue
        if c.slot in seen:
            out.append(f"stamps:cells[{i}].slot: {c.slot} is also the slot of stamps:cells[{seen[c.slot]}]; "
                       "each CELL keeps its own subnet")
        seen.setdefault(c.slot, i)
    slots = cell_slots(cfg.cells)
    spaces = {r.name: r.address_space for r in cfg.regions}
    for i, c in enumerate(cfg.cells):
        for region in (c.region, c.standby.region if c.standby else None):
            if region in spaces and slots[c.name] >= capacity(spaces[region]):
                out.append(f"stamps:cells[{i}].slot: slot {slots[c.name]} does not fit {region}'s addressSpace "
                           f"{spaces[region]} ({capacity(spaces[region])} CELL subnets); use a larger range")


def check_rollout(cfg: StampsConfig, out: Problems) -> None:
    cells = [c.name for c in cfg.cells]
    if cfg.rollout.canary is not None and cfg.rollout.canary not in cells:
        out.append(f"stamps:rollout.canary: {cfg.rollout.canary!r} is not a CELL; valid: {', '.join(cells)}")


RULES: tuple[Callable[[StampsConfig, Problems], None], ...] = (
    check_unique, check_regions, check_cells, check_tenants, check_tenant_emails, check_capacity, check_kpis,
    check_misc,
    check_alert_rules, check_slots, check_rollout,
)


def cross_check(cfg: StampsConfig) -> Problems:
    problems: Problems = []
    for rule in RULES:
        rule(cfg, problems)
    return problems
