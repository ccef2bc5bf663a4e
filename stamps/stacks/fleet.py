"""A fleet's stack set offline: its definition read once, every unit stack planned in dependency order.

The fleet file (`Pulumi.<fleet>.yaml`) is the one source of truth: each unit stack reads it and its own
stack config on top (secrets, ESC). Planning a unit plans its upstream units first, so each StackReference
reads the outputs the upstream stack would have after its `up`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stamps.config.loader import decode_stack_values, load_environment
from stamps.config.stackfile import read_stack_config
from stamps.environment import Environment
from stamps.offline.plan import Plan
from stamps.stacks.units import Unit, needs, select


def fleet_values(path: Path, arg: str = "--stack") -> dict[str, Any]:
    """The `stamps:` values of a fleet file, decoded as the CLI hands them to a program; secrets left out
    (a unit stack holds its own, or reads them from ESC)."""
    values, secret_keys = read_stack_config(path, arg=arg)
    return decode_stack_values(values, skip=secret_keys)


def load_fleet(project: str, fleet: str, path: Path, arg: str = "--stack") -> Environment:
    return load_fleet_environment(project, fleet, fleet_values(path, arg))


def load_fleet_environment(project: str, fleet: str, values: dict[str, Any]) -> Environment:
    """`load_environment`, once per distinct fleet definition in a process: every unit stack of a fleet
    validates the same whole fleet (the Environment is immutable, so sharing it is safe)."""
    return _load(project, fleet, json.dumps(values, sort_keys=True, default=str))


@functools.lru_cache(maxsize=4)
def _load(project: str, fleet: str, values_json: str) -> Environment:
    return load_environment(project, fleet, json.loads(values_json))


def closure(env: Environment, chosen: list[Unit]) -> list[Unit]:
    """`chosen` plus every unit they read, transitively, in deployment order."""
    from stamps.stacks.units import units

    want: set[Unit] = set()
    todo = list(chosen)
    while todo:
        u = todo.pop()
        if u not in want:
            want.add(u)
            todo += needs(env, u)
    return [u for u in units(env) if u in want]


def plan_fleet(project_dir: Path, fleet: str, fleet_file: Path | None = None, only: list[str] | None = None,
               on_stack: Callable[[str], Callable[[int], None] | None] | None = None,
               require_secrets: bool = False) -> list[Plan]:
    """Plan the fleet's unit stacks (all, or `only` with their upstream units) in dependency order.

    Returns the plans of the selected units, in deployment order. `on_stack(label)` may return a
    registration callback for that stack (the progress line).
    """
    from stamps.offline.engine import plan_stack, read_project

    project_dir = Path(project_dir).resolve()
    path = Path(fleet_file) if fleet_file else project_dir / f"Pulumi.{fleet}.yaml"
    env = load_fleet(read_project(project_dir), fleet, path,
                     arg="--config-file" if fleet_file else "--stack")
    chosen = select(env, only or [])
    outputs: dict[str, dict[str, Any]] = {}
    plans: dict[Unit, Plan] = {}
    for unit in closure(env, chosen):
        stack = unit.stack(fleet)
        plan = plan_stack(project_dir, stack, on_register=on_stack(stack) if on_stack else None,
                          fleet_file=path, stack_outputs=outputs, require_secrets=require_secrets)
        outputs[stack] = plan.outputs
        plans[unit] = plan
    return [plans[u] for u in chosen]


def fleet_plan_units(project_dir: Path, fleet: str, fleet_file: Path | None = None,
                     only: list[str] | None = None) -> list[Unit]:
    """The units `plan_fleet` plans for `only` (with the units they read), in order."""
    from stamps.offline.engine import read_project

    project_dir = Path(project_dir).resolve()
    path = Path(fleet_file) if fleet_file else project_dir / f"Pulumi.{fleet}.yaml"
    env = load_fleet(read_project(project_dir), fleet, path, arg="--config-file" if fleet_file else "--stack")
    return closure(env, select(env, only or []))
