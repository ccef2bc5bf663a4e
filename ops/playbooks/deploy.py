"""Deploy a fleet's stack set: `pulumi up` on each unit stack in dependency order (stamps/stacks/units.py).

Layers go in order (global; regions; primary CELLs, then standbys; edges; routing; api; tenant shards), the
stacks of one step in parallel (`--parallel`, each its own `pulumi` process and lock), the policy pack on every
stack. One line per stack as it starts and ends; the first failure stops the run and the report says which
stacks are done, failed or not started; the same command then resumes after the done stacks. `--only` deploys
a layer or units (their upstream stacks must be deployed). `--dry-run` plans the stacks offline, in order.
Without stamps-ops: `pulumi up -s <stack>` in the order `stamps plan --fleet <fleet>` prints.
"""

from __future__ import annotations

import argparse
from typing import Any

from ops.fleetrun import Journal, run_stacks
from ops.playbooks.base import Context
from stamps.errors import UsageError
from stamps.stacks.fleet import plan_fleet
from stamps.stacks.planset import stack_table
from stamps.stacks.units import select, split_stack, waves


def fleet_of(ctx: Context) -> str:
    fleet, unit = split_stack(ctx.stack)
    if unit is not None:
        raise UsageError(f"--stack: {ctx.stack!r} is one unit stack; give the fleet (e.g. --stack {fleet})")
    return fleet


def run(ctx: Context, args: argparse.Namespace) -> int:
    fleet = fleet_of(ctx)
    if args.parallel < 1:
        raise UsageError(f"--parallel: {args.parallel} must be 1 or more")
    env = ctx.environment()
    chosen = select(env, args.only or [])
    steps = waves(env, chosen)
    ctx.console.print(f"{fleet}: {len(chosen)} stacks in {len(steps)} steps, up to {args.parallel} at a time")
    if ctx.dry_run or ctx.runner_kind == "offline":
        plans = plan_fleet(ctx.project_dir, fleet, only=args.only or [])
        for i, step in enumerate(steps, 1):
            ctx.console.print(f"  step {i}: {', '.join(u.stack(fleet) for u in step)}")
        ctx.console.print(stack_table(plans, f"{fleet}: what each stack declares (offline plan; nothing deployed)"))
        return 0
    if ctx.stack_runner is None:
        raise UsageError("deploy: no runner for the unit stacks")
    journal, resumed = Journal.open(ctx.state_dir / f"fleetrun-{fleet}-deploy.json", ctx.config_file().path,
                                    restart=args.restart)
    if resumed:
        ctx.console.print(f"resuming: {len(journal.done)} stacks were deployed by an earlier run of this fleet file "
                          "(--restart deploys them again)")
    runner_for = ctx.stack_runner

    def up(stack: str) -> str:
        return runner_for(stack).up().summary_line()

    runs = run_stacks(env, fleet, chosen, up, parallel=args.parallel, console=ctx.console, journal=journal,
                      verb="deploy")
    ctx.deployed += [r.stack for r in runs if r.status == "done"]
    return 0


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("deploy", help="pulumi up on every unit stack of the fleet, in dependency order",
                       description=__doc__)
    p.add_argument("--only", action="append", help="a layer (region, cell, edge, tenants) or a unit "
                   "(global, cell.banking.eastus, ...); repeatable")
    p.add_argument("--parallel", type=int, default=4, help="stacks updated at once within a step (default: 4)")
    p.add_argument("--restart", action="store_true", help="ignore an earlier stopped run; deploy every stack")
    common(p)
    p.set_defaults(func=run, lock_stack=False)
