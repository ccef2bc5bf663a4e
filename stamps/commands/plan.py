"""`stamps plan`: what `pulumi up -s <stack>` would deploy, computed offline under the SDK's mocks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stamps.config.stackfile import bare_stack, stack_config_path
from stamps.errors import UsageError
from stamps.offline import diff_plans, plan_stack
from stamps.offline.planfile import load_plan
from stamps.offline.progress import progress_line
from stamps.offline.render import print_diff, summary, tree
from stamps.speedup import exit_fast
from stamps.terminal import make_console


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
    targets = _targets(args)
    paths = [stack_config_path(project_dir, stack, cfg) for stack, cfg in targets]
    earlier = load_plan(args.against, "--against") if args.against else None  # before --out may overwrite it
    # Plan everything first: a config error in any target must leave no output file behind.
    with progress_line(sys.stdout, len(targets), enabled=not args.quiet) as progress:
        plans = [plan_stack(project_dir, stack, path, on_register=progress.stack(cfg.name if cfg else stack))
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


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("plan", help="offline plan of a stack: the resource graph `pulumi preview` would show")
    p.add_argument("--stack", action="append", help="stack name (repeatable; default: prod)")
    p.add_argument("--config-file", action="append", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--out", help="write the plan as JSON (a directory when planning several stacks)")
    p.add_argument("--against", help="an earlier plan JSON: print creates, updates and deletes against it")
    p.add_argument("--policy", action="store_true", help="run the policy pack on the plan (exit 3 on violation)")
    p.add_argument("--no-tree", dest="tree", action="store_false", help="print only the summary")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)
