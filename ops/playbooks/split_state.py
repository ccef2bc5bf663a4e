"""Move a single-stack fleet (`prod`) into its stack set (`prod.global`, `prod.cell.banking.eastus`, ...).

Plans the single stack and the stack set offline, proves every cloud resource moves to exactly one unit
stack with unchanged inputs (nothing created, replaced or deleted), then prints (`--dry-run`) or runs the
`pulumi stack init` / `pulumi state move` / `pulumi preview` sequence. A run stops at the first failed
step and says how to resume (`--from-step N`); `state move` saves the destination before the source, so
a failed step never loses a resource (pulumi/pkg/cmd/pulumi/state/state_move.go).
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Any

from ops.playbooks.base import Context
from stamps.errors import OperationFailed, SafetyRefusal, UsageError
from stamps.offline import plan_stack
from stamps.stacks.fleet import plan_fleet
from stamps.stacks.split import commands, script, verify
from stamps.stacks.units import split_stack


def run(ctx: Context, args: argparse.Namespace) -> int:
    fleet, unit = split_stack(ctx.stack)
    if unit is not None:
        raise UsageError(f"--stack: {ctx.stack!r} is a unit stack; give the single stack to split (e.g. {fleet})")
    if ctx.units and not ctx.dry_run and args.from_step == 1:
        raise SafetyRefusal(f"stamps:layout is already units: {fleet} was split; nothing to move")
    single = plan_stack(ctx.project_dir, fleet)
    units = plan_fleet(ctx.project_dir, fleet)
    check = verify(single, units)
    ctx.console.print(f"{check.moved} resources of {fleet} move into {len(check.moves)} unit stacks "
                      f"({len(units)} stacks in the fleet)")
    if not check.ok:
        for label, items in (("would be deleted", check.missing), ("would be created", check.extra),
                             ("declared twice", check.duplicated)):
            for item in items[:20]:
                ctx.console.print(f"  [red]{label}[/]: {item}")
        for item, paths in check.changed[:20]:
            ctx.console.print(f"  [red]would be updated[/]: {item} ({', '.join(paths[:4])})")
        raise SafetyRefusal(f"the stack set does not match {fleet} resource for resource; moving state now would "
                            "create, update or delete resources. Plan both (`stamps plan --stack "
                            f"{fleet}` and `stamps plan --fleet {fleet}`) and fix the difference first")
    steps = commands(check, ctx.qualified_stack)
    cfg = ctx.config_file()
    if ctx.dry_run:
        ctx.console.print("verified offline: every resource moves, none is created, updated or deleted. Steps:")
        print(script(steps))
        print(f"# then: set stamps:layout: units in {cfg.path.name} (this command does it after the last step), "
              f"and `pulumi stack rm {ctx.qualified_stack}` once every preview shows no cloud change")
        return 0
    start = args.from_step - 1
    if not 0 <= start < len(steps):
        raise UsageError(f"--from-step: {args.from_step} is not a step of this move (1..{len(steps)})")
    for i, step in enumerate(steps[start:], start=start + 1):
        ctx.console.print(f"[{i}/{len(steps)}] {script([step])[:160]}")
        done = subprocess.run(step, cwd=ctx.project_dir, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise OperationFailed(f"step {i} failed ({done.stderr.strip()[-400:]}); nothing after it ran. "
                                  f"Fix the cause and re-run with --from-step {i}")
    # From now on playbooks and `pulumi up` work on the unit stacks; the single stack refuses updates.
    cfg.set("layout", "units")
    cfg.save()
    ctx.console.print(f"moved {check.moved} resources and set stamps:layout: units in {cfg.path.name}; when every "
                      "preview shows no change to cloud resources, remove the empty single stack: "
                      f"pulumi stack rm {ctx.qualified_stack}")
    return 0


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("split-state", help="move a single-stack fleet into its stack set (pulumi state move)",
                       description=__doc__)
    p.add_argument("--from-step", type=int, default=1, help="resume a stopped move at this step (default: 1)")
    common(p)
    p.set_defaults(func=run, lock_stack=False)
