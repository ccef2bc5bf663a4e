"""Stack policies over the CELL topology, read from tags and the dependency graph.

A CELL instance is a Container App tagged `cell` and `region` (plus `role`: primary|standby and
`tenancy`: shared|dedicated); its database and storage account carry the same `cell`/`region` tags.

What links a rule or setting to the resource it watches is the dependency graph, which the engine sends
with every resource in AnalyzeStack (`dependencies`, and `propertyDependencies` per input): ARM ids such as
`resourceUri` or `scopes` are unknown during a preview of new resources, dependencies never are. When the
engine records property dependencies, the precise one is used (`resourceUri` for a diagnostic setting,
`scopes` for an alert rule).

Tenant placement is read from every source the plan has, so a second tenant routed into a dedicated CELL
shows up whichever way it got there:
- the API Management routing map: named values labelled `tenant-routing` (APIM named-value `tags`) whose
  value is `tenant=cell[:frozen]` entries separated by `;` (what the gateway routes by),
- any resource tagged `tenant` and `cell`,
- a Container App's `tenants` tag (tenant ids separated by commas or spaces).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._common import (
    CONTAINER_APP,
    DIAGNOSTIC_SETTING,
    MANDATORY,
    METRIC_ALERT,
    SQL_DATABASE,
    STORAGE_ACCOUNT,
    config,
    known,
    safe_tags,
    same,
    short_type,
    spans_fleet,
)

RESTORE_MODES = ("PointInTimeRestore", "Restore", "Recovery", "RestoreExternalBackup",
                 "RestoreExternalBackupSecondary", "RestoreLongTermRetentionBackup")
GEO_SECONDARY_TYPES = ("Geo", "Standby")
WATCHED = [CONTAINER_APP, SQL_DATABASE, STORAGE_ACCOUNT]


@dataclass(frozen=True)
class Node:
    """A stack resource reduced to what the topology rules read."""

    urn: str
    type: str
    name: str
    props: Mapping[str, Any]
    tags: dict[str, str]
    deps: frozenset[str]
    prop_deps: Mapping[str, frozenset[str]]

    def watches(self, urn: str, prop: str) -> bool:
        """Whether this resource's `prop` refers to `urn`: its property dependency, else any dependency."""
        if prop in self.prop_deps:
            return urn in self.prop_deps[prop]
        return urn in self.deps

    def get(self, key: str) -> Any:
        return known(lambda: self.props.get(key))


@dataclass(frozen=True)
class Instance:
    """One CELL instance: its Container App and where it runs."""

    app: Node
    cell: str
    region: str
    role: str
    tenancy: str

    def label(self) -> str:
        return f"CELL {self.cell} ({self.region}, {self.role})"


class Topology:
    def __init__(self, resources: Iterable[PolicyResource]) -> None:
        self.nodes: list[Node] = []
        for r in resources:
            tags = safe_tags(r.props)
            self.nodes.append(Node(
                urn=r.urn, type=r.resource_type, name=r.name, props=r.props, tags=tags or {},
                deps=frozenset(d.urn for d in r.dependencies),
                prop_deps={k: frozenset(d.urn for d in v) for k, v in r.property_dependencies.items()},
            ))
        self.instances = [
            Instance(app=n, cell=n.tags["cell"], region=n.tags["region"], role=n.tags.get("role", "primary"),
                     tenancy=n.tags.get("tenancy", "shared"))
            for n in self.nodes if n.type == CONTAINER_APP and n.tags.get("cell") and n.tags.get("region")
        ]

    def of_type(self, *types: str) -> list[Node]:
        return [n for n in self.nodes if n.type in types]

    def members(self, inst: Instance, *types: str) -> list[Node]:
        """The instance's resources of these types: same `cell` and `region` tags."""
        return [n for n in self.of_type(*types)
                if n.tags.get("cell") == inst.cell and n.tags.get("region") == inst.region]

    def watched(self, inst: Instance, types: Iterable[str]) -> list[Node]:
        """The instance's resources that must be monitored; restored copies of a database are not."""
        return [n for n in self.members(inst, *types)
                if not (n.type == SQL_DATABASE and is_restore(n))]


def is_restore(db: Node) -> bool:
    # createMode is an input only (gone from outputs after an update); restored copies also carry the
    # `restored-from` tag the CELL component gives them.
    return same(db.get("createMode"), *RESTORE_MODES) or "restored-from" in db.tags


def is_geo_secondary(db: Node) -> bool:
    # createMode is an input only; after an update the engine sends outputs, where secondaryType remains.
    return same(db.get("createMode"), "Secondary") or same(db.get("secondaryType"), *GEO_SECONDARY_TYPES)


# --- alerts ---------------------------------------------------------------------------------------------
ALERT_SCHEMA = PolicyConfigSchema(
    properties={
        "alertTypes": {
            "type": "array", "items": {"type": "string"}, "minItems": 1, "default": [METRIC_ALERT],
            "description": "resource types that count as a CELL's alert rules",
        },
        "watchedTypes": {
            "type": "array", "items": {"type": "string"}, "default": WATCHED,
            "description": "resource types of a CELL that need at least one alert rule each",
        },
    },
)


def _alerts(args: StackValidationArgs, report: ReportViolation) -> None:
    cfg = config(args, ALERT_SCHEMA)
    topo = Topology(args.resources)
    for inst in topo.instances:
        rules = topo.members(inst, *cfg["alertTypes"])
        if not rules:
            report(f"{inst.label()} has no alert rules: expected {', '.join(map(short_type, cfg['alertTypes']))} "
                   f"tagged cell={inst.cell}, region={inst.region}", inst.app.urn)
            continue
        for target in topo.watched(inst, cfg["watchedTypes"]):
            if not any(rule.watches(target.urn, "scopes") for rule in rules):
                report(f"{inst.label()}: no alert rule watches its {short_type(target.type)} {target.name}",
                       target.urn)


# --- diagnostics ----------------------------------------------------------------------------------------
DIAG_SCHEMA = PolicyConfigSchema(
    properties={
        "watchedTypes": {
            "type": "array", "items": {"type": "string"}, "default": WATCHED,
            "description": "resource types of a CELL that need a diagnostic setting each",
        },
    },
)


def _diagnostics(args: StackValidationArgs, report: ReportViolation) -> None:
    cfg = config(args, DIAG_SCHEMA)
    topo = Topology(args.resources)
    settings = topo.of_type(DIAGNOSTIC_SETTING)
    for inst in topo.instances:
        for target in topo.watched(inst, cfg["watchedTypes"]):
            if not any(s.watches(target.urn, "resourceUri") for s in settings):
                report(f"{inst.label()}: {short_type(target.type)} {target.name} has no diagnostic setting "
                       "(its logs and metrics reach no workspace)", target.urn)


# --- disaster recovery ------------------------------------------------------------------------------------
def _dr(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    secondaries = {(d.tags.get("cell"), d.tags.get("region")) for d in topo.of_type(SQL_DATABASE)
                   if is_geo_secondary(d)}
    primaries = [i for i in topo.instances if i.role == "primary"]
    standbys = [i for i in topo.instances if i.role == "standby"]
    primary_region = {i.cell: i.region for i in primaries}

    fleet = spans_fleet(args.resources)
    for s in standbys:
        if not fleet:
            pass  # a standby's own stack: its primary deploys in another stack
        elif s.cell not in primary_region:
            report(f"{s.label()} has no primary CELL {s.cell} to stand in for", s.app.urn)
        elif primary_region[s.cell] == s.region:
            report(f"{s.label()} runs in its primary's region: a regional outage takes both", s.app.urn)
        if (s.cell, s.region) not in secondaries:
            report(f"{s.label()} has no geo-secondary SQL database (createMode: Secondary) tagged "
                   f"cell={s.cell}, region={s.region}: failing over would lose its data", s.app.urn)

    if not fleet:
        return
    by_region: dict[str, list[Instance]] = defaultdict(list)
    for p in primaries:
        by_region[p.region].append(p)
    for region, cells in sorted(by_region.items()):
        names = {p.cell for p in cells}
        dr_regions = sorted({s.region for s in standbys
                             if s.cell in names and s.region != region and (s.cell, s.region) in secondaries})
        if not dr_regions:
            report(f"primary region {region} has no DR region: none of its CELLs ({', '.join(sorted(names))}) has "
                   "a standby (Container App tagged role=standby and a geo-secondary SQL database) in another "
                   "region", cells[0].app.urn)


# --- tenant isolation -------------------------------------------------------------------------------------
NAMED_VALUE = "azure-native:apimanagement:NamedValue"
ISOLATION_SCHEMA = PolicyConfigSchema(
    properties={
        "routingLabel": {
            "type": "string", "default": "tenant-routing",
            "description": "label (APIM named-value tag) of the named values holding the tenant=cell map",
        },
    },
)


def routing_entries(value: str) -> Iterator[tuple[str, str]]:
    """(tenant, cell) pairs of a routing map value: `a=cell1;b=cell2:frozen`."""
    for entry in value.split(";"):
        tenant, sep, target = entry.partition("=")
        if sep and tenant.strip() and target.strip():
            yield tenant.strip(), target.split(":", 1)[0].strip()


def tenant_placements(topo: Topology, routing_label: str) -> dict[str, set[str]]:
    """CELL name -> ids of the tenants placed in it, from every source the stack has."""
    placed: dict[str, set[str]] = defaultdict(set)
    for n in topo.of_type(NAMED_VALUE):
        labels = n.get("tags")
        labelled = isinstance(labels, Sequence) and known(lambda labels=labels: routing_label in labels) is True  # type: ignore[misc]  # the default binds the loop value; known() calls the lambda at once
        value = n.get("value")
        if labelled and isinstance(value, str):
            for tenant, cell in routing_entries(value):
                placed[cell].add(tenant)
    for n in topo.nodes:
        tagged_tenant, tagged_cell = n.tags.get("tenant"), n.tags.get("cell")
        if tagged_tenant and tagged_cell:
            placed[tagged_cell].add(tagged_tenant)
    for inst in topo.instances:
        placed[inst.cell].update(t for t in re.split(r"[,\s]+", inst.app.tags.get("tenants", "")) if t)
    return placed


def _isolation(args: StackValidationArgs, report: ReportViolation) -> None:
    topo = Topology(args.resources)
    placed = tenant_placements(topo, config(args, ISOLATION_SCHEMA)["routingLabel"])
    reported: set[str] = set()
    for inst in topo.instances:
        if inst.tenancy != "dedicated" or inst.cell in reported:
            continue
        tenants = sorted(placed.get(inst.cell, set()))
        if len(tenants) > 1:
            reported.add(inst.cell)
            report(f"dedicated CELL {inst.cell} holds {len(tenants)} tenants ({', '.join(tenants)}): a dedicated "
                   "CELL serves exactly one tenant", inst.app.urn)


def policies() -> list[StackValidationPolicy]:
    return [
        StackValidationPolicy(
            name="cell-alerts",
            description="Every CELL instance has its alert rules, one or more on each of its app, database and "
                        "storage.",
            validate=_alerts, enforcement_level=MANDATORY, config_schema=ALERT_SCHEMA),
        StackValidationPolicy(
            name="cell-diagnostics",
            description="Every CELL instance's app, database and storage send diagnostics to Log Analytics.",
            validate=_diagnostics, enforcement_level=MANDATORY, config_schema=DIAG_SCHEMA),
        StackValidationPolicy(
            name="dr-standby-region",
            description="Every primary region has a DR region with standby CELLs on geo-secondary databases.",
            validate=_dr, enforcement_level=MANDATORY),
        StackValidationPolicy(
            name="dedicated-tenant-isolation",
            description="A dedicated CELL holds exactly one tenant.",
            validate=_isolation, enforcement_level=MANDATORY, config_schema=ISOLATION_SCHEMA),
    ]

