"""`stamps stacks`: a fleet's unit stacks in deployment order, for an engine other than a laptop.

`--github-workflow` writes the GitHub Actions workflow that deploys them (one job per wave, one matrix entry per
stack, waves chained by `needs:`); `--json` lists stack, layer, wave and the stacks each reads, for any other CI
system. Without either, one line per stack.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stamps.atomicfile import write_atomic
from stamps.config.stackfile import bare_stack, stack_config_path, stack_file, stacks_in
from stamps.errors import UsageError


def run(args: argparse.Namespace) -> int:
    from stamps.offline.engine import read_project
    from stamps.stacks.fleet import load_fleet
    from stamps.stacks.workflow import listing, render

    project_dir = Path(args.project_dir)
    fleet = bare_stack(args.fleet, "--fleet")
    if "." in fleet:
        raise UsageError(f"--fleet: {fleet!r} is a unit stack; give the fleet's name (the part before the first '.')")
    if args.github_workflow and args.json:
        raise UsageError("--github-workflow, --json: give one of them")
    if args.parallel < 1:
        raise UsageError(f"--parallel: {args.parallel} must be 1 or more")
    if not args.config_file and not stack_file(project_dir, fleet).is_file():
        raise UsageError(f"--fleet: no fleet {fleet!r} in {project_dir.resolve()} (no Pulumi.{fleet}.yaml); "
                         f"stacks there: {', '.join(stacks_in(project_dir)) or '(none)'}")
    path = stack_config_path(project_dir, fleet, args.config_file)
    env = load_fleet(read_project(project_dir), fleet, path, arg="--config-file" if args.config_file else "--fleet")
    if args.github_workflow:
        text = render(env, fleet, branch=args.branch, parallel=args.parallel)
    elif args.json:
        text = json.dumps(listing(env, fleet), indent=2) + "\n"
    else:
        text = "".join(f"wave {s['wave']}  {s['stack']}  (reads: {', '.join(s['needs']) or 'nothing'})\n"
                       for s in listing(env, fleet))
    if args.out:
        write_atomic(Path(args.out), text)
        print(args.out)
    else:
        print(text, end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("stacks", help="a fleet's unit stacks in deployment order; a GitHub Actions workflow or "
                       "JSON that deploys them", description=__doc__)
    p.add_argument("--fleet", default="prod", help="the fleet (default: prod)")
    p.add_argument("--config-file", help="the fleet file (default: Pulumi.<fleet>.yaml)")
    p.add_argument("--project-dir", default=".", help="directory with Pulumi.yaml (default: .)")
    p.add_argument("--github-workflow", action="store_true", help="write the GitHub Actions workflow that deploys "
                   "the fleet (commit it as .github/workflows/deploy-<fleet>.yml)")
    p.add_argument("--json", action="store_true", help="list stack, layer, wave and needs as JSON")
    p.add_argument("--branch", default="main", help="with --github-workflow: a push to this branch deploys "
                   "(default: main)")
    p.add_argument("--parallel", type=int, default=4, help="with --github-workflow: stacks of one wave updated at "
                   "once (default: 4)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=run)
