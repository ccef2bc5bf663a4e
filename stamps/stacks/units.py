"""Which stacks a fleet is made of, what each depends on, and the order they deploy in.

A stamp is a unit of deployment and of failure, so the fleet `prod` is a set of stacks named
`<fleet>.<unit>` in one project:

| layer     | stack                     | holds                                                            |
|-----------|---------------------------|------------------------------------------------------------------|
| global    | `prod.global`             | workspace, App Insights, tenant directory, API Management, action groups |
| region    | `prod.region.<region>`    | network, Key Vault, Automation, the gateway's IP, identity and certificate |
| cell      | `prod.cell.<cell>.<region>` | one CELL instance (primary or standby) with its alerts and dashboard |
| edge      | `prod.edge.<region>`      | the App Gateway WAF and its policy (it routes to the region's CELLs) |
| routing   | `prod.routing`            | Front Door, one Traffic Manager profile per primary, global alerts |
| api       | `prod.api`                | the tenant API, its policy, routing map, products, CELL backends  |
| tenants   | `prod.tenants.<cell>`     | the APIM user and subscription of each tenant placed in the CELL |

A stack named without a dot (`prod`) is the whole fleet in one stack: the layout every deployment had
before the split, kept so an existing stack can be planned and moved (`stamps-ops split-state`).
Every resource has the same URN type chain and name in both layouts; only the stack part differs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from stamps.errors import UsageError, clip

if TYPE_CHECKING:
    from stamps.environment import Environment

Layer = Literal["global", "region", "cell", "edge", "routing", "api", "tenants"]
LAYERS: tuple[Layer, ...] = ("global", "region", "cell", "edge", "routing", "api", "tenants")
# Policies that need several unit stacks' resources at once: in a unit stack they check nothing (see the
# pack's `spans_fleet`), and `stamps plan --fleet --policy` runs them on the fleet view (every stack merged).
# keyvault-data-plane-roles: a gateway (edge stack) reads with an identity granted in the region stack.
FLEET_WIDE_POLICIES = ("dr-standby-region", "cells-without-standby", "traffic-through-api-management",
                       "keyvault-data-plane-roles")
_PART = re.compile(r"^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Unit:
    """One deployment unit of a fleet: a layer, and the region and/or CELL it covers."""

    layer: Layer
    region: str = ""
    cell: str = ""

    @property
    def name(self) -> str:
        """The part of the stack name after the fleet: `global`, `region.eastus`, `cell.banking.eastus`..."""
        return ".".join(p for p in (self.layer, self.cell, self.region) if p)

    def stack(self, fleet: str) -> str:
        return f"{fleet}.{self.name}"

    @property
    def rank(self) -> int:
        return LAYERS.index(self.layer)

    @classmethod
    def parse(cls, text: str, arg: str = "--only") -> Unit:
        parts = text.split(".")
        layer, rest = parts[0], parts[1:]
        shapes = {"global": 0, "routing": 0, "api": 0, "region": 1, "edge": 1, "tenants": 1, "cell": 2}
        if layer not in shapes or len(rest) != shapes[layer] or not all(_PART.match(p) for p in rest):
            raise UsageError(f"{arg}: {clip(text, 80)!r} is not a stack unit; valid: global, region.<region>, "
                             "cell.<cell>.<region>, edge.<region>, routing, api, tenants.<cell>")
        if layer in ("region", "edge"):
            return cls(layer, region=rest[0])  # type: ignore[arg-type]
        if layer == "tenants":
            return cls("tenants", cell=rest[0])
        if layer == "cell":
            return cls("cell", cell=rest[0], region=rest[1])
        return cls(layer)  # type: ignore[arg-type]


def split_stack(stack: str) -> tuple[str, Unit | None]:
    """`prod.cell.banking.eastus` → ("prod", Unit(cell)); `prod` → ("prod", None), the whole fleet."""
    fleet, dot, rest = stack.partition(".")
    if not dot:
        return fleet, None
    return fleet, Unit.parse(rest, arg=f"stack {stack}")


def units(env: Environment) -> list[Unit]:
    """Every unit of the fleet in deployment order: layer by layer, a CELL's primary before its standby."""
    out: list[Unit] = [Unit("global")]
    out += [Unit("region", region=r) for r in env.deployed_regions]
    out += [Unit("cell", cell=i.name, region=i.region) for i in env.instances if i.role == "primary"]
    out += [Unit("cell", cell=i.name, region=i.region) for i in env.instances if i.role == "standby"]
    out += [Unit("edge", region=r) for r in env.deployed_regions]
    out += [Unit("routing"), Unit("api")]
    out += [Unit("tenants", cell=c.name) for c in env.cells]
    return out


def needs(env: Environment, unit: Unit) -> list[Unit]:
    """The units whose outputs `unit` reads (its StackReferences); they deploy before it."""
    glob = Unit("global")
    if unit.layer == "global":
        return []
    if unit.layer == "region":
        return [glob]
    if unit.layer == "cell":
        inst = _instance(env, unit)
        primary = [Unit("cell", cell=inst.name, region=inst.cell.region)] if inst.role == "standby" else []
        return [glob, Unit("region", region=unit.region), *primary]
    if unit.layer == "edge":
        return [glob, Unit("region", region=unit.region),
                *(Unit("cell", cell=i.name, region=i.region) for i in env.instances_in(unit.region))]
    if unit.layer == "routing":
        return [glob, *(Unit("region", region=r) for r in env.deployed_regions),
                *(Unit("edge", region=r) for r in env.deployed_regions)]
    if unit.layer == "api":
        return [glob, Unit("routing")]
    return [glob, Unit("api")]


def check(env: Environment, unit: Unit, arg: str = "--only") -> Unit:
    """`unit`, if the fleet has it; otherwise a UsageError listing the fleet's units."""
    if unit not in units(env):
        raise UsageError(f"{arg}: the fleet has no unit {unit.name!r}; its units: "
                         f"{', '.join(u.name for u in units(env))}")
    return unit


def _instance(env: Environment, unit: Unit):  # type: ignore[no-untyped-def]
    for inst in env.instances:
        if inst.name == unit.cell and inst.region == unit.region:
            return inst
    raise UsageError(f"stack unit {unit.name!r}: the fleet has no CELL {unit.cell!r} in {unit.region!r}")


def dependents(env: Environment, unit: Unit) -> list[Unit]:
    """Units that read `unit`'s outputs: what may need an update after it changes."""
    return [u for u in units(env) if unit in needs(env, u)]


def waves(env: Environment, chosen: Sequence[Unit]) -> list[list[Unit]]:
    """`chosen` in steps that can each run in parallel: layer by layer (global, regions, CELLs, edges, routing,
    api, tenants), and inside a layer after the chosen units it reads (a standby after its primary). Layer
    order also sequences what no reference does: a failover scales the standby CELLs before routing sends
    them traffic."""
    chosen_set = set(chosen)
    depth: dict[Unit, int] = {}

    def level(u: Unit) -> int:
        if u not in depth:
            same_layer = [d for d in needs(env, u) if d in chosen_set and d.layer == u.layer]
            depth[u] = 1 + max((level(d) for d in same_layer), default=-1)
        return depth[u]

    out: dict[tuple[int, int], list[Unit]] = {}
    for u in chosen:
        out.setdefault((u.rank, level(u)), []).append(u)
    return [out[k] for k in sorted(out)]


def select(env: Environment, only: list[str]) -> list[Unit]:
    """`--only` values (a layer name such as `cell`, or a unit such as `cell.banking.eastus`), in deploy order."""
    every = units(env)
    if not only:
        return every
    chosen: set[Unit] = set()
    for text in only:
        if text in LAYERS and text not in ("global", "routing", "api"):
            chosen |= {u for u in every if u.layer == text}
        else:
            chosen.add(check(env, Unit.parse(text)))
    return [u for u in every if u in chosen]
