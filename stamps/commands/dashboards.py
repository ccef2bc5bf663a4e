"""`stamps dashboards`: render every planned Azure dashboard offline as HTML (plus an index page)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stamps.config.stackfile import bare_stack, stack_config_path
from stamps.errors import UsageError
from stamps.monitoring.render import write_dashboards
from stamps.offline import plan_stack
from stamps.offline.planfile import load_plan


def run(args: argparse.Namespace) -> int:
    if args.plan:
        plan = load_plan(args.plan, "--plan")
    else:
        project_dir = Path(args.project_dir)
        if not (project_dir / "Pulumi.yaml").is_file():
            raise UsageError(f"--project-dir: {project_dir} has no Pulumi.yaml")
        stack = bare_stack(args.stack)
        plan = plan_stack(project_dir, stack, stack_config_path(project_dir, stack, args.config_file))
    written = write_dashboards(plan, Path(args.out))
    if len(written) == 1:
        raise UsageError(f"the plan of {plan.project}/{plan.stack} has no dashboards")
    for path in written:
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dashboards", help="render the planned dashboards as HTML pages (tiles, KQL, bindings)")
    p.add_argument("--stack", default="prod", help="stack name (default: prod)")
    p.add_argument("--config-file", help="stack config file (default: Pulumi.<stack>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--plan", help="render from a saved plan JSON (`stamps plan --out`) instead of planning")
    p.add_argument("--out", default="dashboards", help="output directory (default: ./dashboards)")
    p.set_defaults(func=run)
