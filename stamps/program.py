"""The Pulumi program: config → components → stack outputs. `__main__.py` calls `run()`.

The stack name says what to declare (stamps/stacks/units.py): `prod` is the whole fleet in one stack,
`prod.<unit>` one unit of it, reading the fleet definition from `Pulumi.prod.yaml` (or `$STAMPS_FLEET_FILE`)
with the unit stack's own config (its secrets, or an ESC environment) on top.
"""

from __future__ import annotations

import os
from pathlib import Path

import pulumi

from stamps.config.errors import ConfigError
from stamps.config.loader import load_environment, read_pulumi_config
from stamps.stacks.compose import Parts, build_fleet, build_unit
from stamps.stacks.fleet import fleet_values, load_fleet_environment
from stamps.stacks.units import Unit, check, split_stack

FLEET_FILE_ENV = "STAMPS_FLEET_FILE"


def run() -> Parts:
    from stamps import speedup

    # Before any resource exists: registration of azure-native resources is ~10x cheaper with it, and the
    # engine receives the same requests (tests/test_speedup.py); it switches itself off on unchecked SDKs.
    speedup.enable()
    fleet, unit = split_stack(pulumi.get_stack())
    if unit is None:
        env = load_environment(pulumi.get_project(), fleet, read_pulumi_config())
        check_layout(env.config.layout, pulumi.get_stack(), None, pulumi.runtime.is_dry_run())
        return build_fleet(env)
    # The unit stack's own config (secrets set on it, an ESC environment) overrides the fleet file.
    path = Path(os.environ.get(FLEET_FILE_ENV) or f"Pulumi.{fleet}.yaml")
    values = fleet_values(path, arg=FLEET_FILE_ENV if os.environ.get(FLEET_FILE_ENV) else "stack")
    env = load_fleet_environment(pulumi.get_project(), fleet, {**values, **read_pulumi_config()})
    check_layout(env.config.layout, pulumi.get_stack(), unit, pulumi.runtime.is_dry_run())
    return build_unit(env, fleet, check(env, unit, arg=f"stack {pulumi.get_stack()}"))


def check_layout(layout: str, stack: str, unit: Unit | None, preview: bool) -> None:
    """An update in the other layout would declare resources a second time under new URNs (Azure refuses the
    names, or worse, two stacks own one resource). Previews stay allowed: that is how a move is reviewed."""
    if preview:
        return
    fleet = stack.partition(".")[0]
    if unit is None and layout == "units":
        raise ConfigError([f"stamps:layout: {fleet} is deployed as unit stacks; update them (`stamps-ops deploy "
                           f"--stack {fleet}`, or `pulumi up -s {fleet}.<unit>`), not the single stack {stack}"])
    if unit is not None and layout == "single":
        raise ConfigError([f"stamps:layout: {fleet} is deployed as the single stack {fleet}; move it first "
                           f"(`stamps-ops split-state --stack {fleet}`), then update {stack}"])
