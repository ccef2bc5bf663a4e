"""`stamps plan`: what `pulumi up -s <stack>` would deploy, computed offline under the SDK's mocks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stamps.config.stackfile import bare_stack, stack_config_path
from stamps.errors import UsageError
from stamps.offline import diff_plans, plan_stack
from stamps.offline.planfile import load_plan
from stamps.offline.progress import progress_line
from stamps.offline.render import print_diff, summary, tree
from stamps.speedup import exit_fast
from stamps.terminal import make_console

if TYPE_CHECKING:
    from rich.console import Console


def _targets(args: argparse.Namespace) -> list[tuple[str, Path | None]]:
    stacks = [bare_stack(s) for s in (args.stack or ["prod"])]
    files = args.config_file or []
    if files and len(files) != len(stacks) and len(stacks) != 1:
        raise UsageError("--config-file: give one per --stack, or one --stack for several config files")
    if files:
        return [(stacks[0] if len(stacks) == 1 else stacks[i], Path(f)) for i, f in enumerate(files)]
    return [(s, None) for s in stacks]


def run(args: argparse.Namespace) -> int:
    console = make_console()
    project_dir = Path(args.project_dir)
    if not (project_dir / "Pulumi.yaml").is_file():
        raise UsageError(f"--project-dir: {project_dir} has no Pulumi.yaml")
    if args.fleet:
        return exit_fast(run_fleet(args, console, project_dir))
    if args.only:
        raise UsageError("--only: selects units of a fleet; use it with --fleet")
    targets = _targets(args)
    paths = [stack_config_path(project_dir, stack, cfg) for stack, cfg in targets]
    earlier = load_plan(args.against, "--against") if args.against else None  # before --out may overwrite it
    # Plan everything first: a config error in any target must leave no output file behind.
    with progress_line(sys.stdout, len(targets), enabled=not args.quiet) as progress:
        plans = [plan_stack(project_dir, stack, path, on_register=progress.stack(cfg.name if cfg else stack),
                            require_secrets=args.require_secrets)
                 for (stack, cfg), path in zip(targets, paths, strict=True)]
    # Written before anything is printed: a closed pipe (`| head`) must not cost the plan file.
    if args.out:
        out = Path(args.out)
        if len(plans) == 1 and out.suffix == ".json":
            plans[0].write(out)
        else:
            for plan, (_, cfg) in zip(plans, targets, strict=True):
                plan.write(out / f"{cfg.stem if cfg else 'Pulumi.' + plan.stack}.plan.json")
    for plan in plans:
        if not args.quiet:
            if args.tree:
                console.print(tree(plan))
            console.print(summary(plan))
        if earlier is not None:
            print_diff(diff_plans(earlier, plan), console, earlier=earlier, plan=plan, against=str(args.against))
    if args.out and not args.quiet:
        console.print(f"plan written to {args.out}")
    if args.policy:
        from stamps.policycheck import check_plans

        return exit_fast(check_plans(plans, console, progress=None if args.quiet else sys.stdout))
    return exit_fast(0)


def run_fleet(args: argparse.Namespace, console: Console, project_dir: Path) -> int:
    """Plan a fleet as its stack set, in dependency order in one process: a table per stack and in total."""
    from stamps.stacks.fleet import fleet_plan_units, plan_fleet
    from stamps.stacks.planset import load_set, print_set_diff, stack_table, write_set

    fleet = bare_stack(args.fleet, "--fleet")
    if "." in fleet:
        raise UsageError(f"--fleet: {fleet!r} is a unit stack; give the fleet's name (the part before the first '.')")
    if args.stack or (args.config_file and len(args.config_file) > 1):
        raise UsageError("--fleet: plans one fleet; give either --fleet or --stack, and at most one --config-file")
    fleet_file = stack_config_path(project_dir, fleet, args.config_file[0] if args.config_file else None)
    earlier = load_set(args.against, "--against") if args.against else None
    count = len(fleet_plan_units(project_dir, fleet, fleet_file, args.only or []))
    with progress_line(sys.stdout, count, enabled=not args.quiet) as progress:
        plans = plan_fleet(project_dir, fleet, fleet_file, only=args.only or [], on_stack=progress.stack,
                           require_secrets=args.require_secrets)
    if args.out:
        write_set(plans, Path(args.out))
    if not args.quiet:
        if args.tree:
            for plan in plans:
                console.print(tree(plan))
        console.print(stack_table(plans, f"{fleet}: stacks in deployment order"))
    if earlier is not None:
        print_set_diff(earlier, plans, console, str(args.against))
    if args.out and not args.quiet:
        console.print(f"plans written to {args.out}/ (one <stack>.plan.json per stack)")
    if args.policy:
        from stamps.policycheck import check_fleet

        return check_fleet(plans, fleet, console, progress=None if args.quiet else sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="offline plan of a stack: the resource graph `pulumi preview` would show")
    p.add_argument("--stack", action="append", help="stack name (repeatable; default: prod); a unit stack such "
                   "as prod.cell.banking.eastus is planned after the stacks it reads")
    p.add_argument("--fleet", help="plan a fleet as its stack set (one stack per layer, region, CELL instance "
                   "and tenant shard), in dependency order; --config-file names its fleet file")
    p.add_argument("--only", action="append", help="with --fleet: a layer (region, cell, edge, tenants) or unit "
                   "(global, cell.banking.eastus, ...) to plan, after the units it reads (repeatable)")
    p.add_argument("--config-file", action="append", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--out", help="write the plan as JSON (a directory when planning several stacks)")
    p.add_argument("--against", help="an earlier plan JSON: print creates, updates and deletes against it")
    p.add_argument("--policy", action="store_true", help="run the policy pack on the plan (exit 3 on violation)")
    p.add_argument("--require-secrets", action="store_true",
                   help="a secret the stack config does not set (stamps:edgeCertificatePfx, the webhook URLs) is an "
                        "error naming it, as under `pulumi preview`; by default the offline plan puts a [secret] "
                        "placeholder where it goes")
    p.add_argument("--no-tree", dest="tree", action="store_false", help="print only the summary")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)
