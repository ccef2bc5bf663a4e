"""Deploy a fleet's stack set: `pulumi up` on each unit stack in dependency order (stamps/stacks/units.py).

Layers go in order (global; regions; primary CELLs, then standbys; edges; routing; api; tenant shards), the
stacks of one step in parallel (`--parallel`, each its own `pulumi` process and lock), the policy pack on every
stack. One line per stack as it starts and ends; the first failure stops the run and the report says which
stacks are done, failed or not started; the same command then resumes after the done stacks. `--only` deploys
a layer or units (their upstream stacks must be deployed). `--dry-run` plans the stacks offline, in order.
Without stamps-ops: `pulumi up -s <stack>` in the order `stamps plan --fleet <fleet>` prints.

`--engine deployments` runs each stack's update on Pulumi Deployments from a git commit (ops/deployments.py), in
the same steps, with the same stop and journal; the policy pack runs offline on the plans before any stack is
queued, since a remote update cannot take one. `stamps stacks --github-workflow` hands the same order to GitHub
Actions instead.
"""

from __future__ import annotations

import argparse
from typing import Any

from ops.deployments import DeploymentsRunner, GitSource, org_and_project, qualify, uncommitted
from ops.fleetrun import Journal, run_stacks
from ops.playbooks.base import Context
from ops.runner import PolicyRefused
from stamps.errors import UsageError
from stamps.offline.engine import read_project
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
    source = remote_source(ctx, args)
    env = ctx.environment()
    chosen = select(env, args.only or [])
    steps = waves(env, chosen)
    where = f" on Pulumi Deployments from {source[0].describe()}" if source else ""
    ctx.console.print(f"{fleet}: {len(chosen)} stacks in {len(steps)} steps, up to {args.parallel} at a time{where}")
    if ctx.dry_run or ctx.runner_kind == "offline":
        plans = plan_fleet(ctx.project_dir, fleet, only=args.only or [])
        for i, step in enumerate(steps, 1):
            ctx.console.print(f"  step {i}: {', '.join(u.stack(fleet) for u in step)}")
        ctx.console.print(stack_table(plans, f"{fleet}: what each stack declares (offline plan; nothing deployed)"))
        return 0
    if source is not None:
        policy_gate(ctx, fleet, args.only or [])
        git, org, project = source

        def up(stack: str) -> str:
            return DeploymentsRunner(ctx.project_dir, qualify(stack, org, project), git,
                                     show_progress=False).up().summary_line()
    else:
        if ctx.stack_runner is None:
            raise UsageError("deploy: no runner for the unit stacks")
        runner_for = ctx.stack_runner

        def up(stack: str) -> str:
            return runner_for(stack).up().summary_line()

    journal, resumed = Journal.open(ctx.state_dir / f"fleetrun-{fleet}-deploy.json", ctx.config_file().path,
                                    restart=args.restart)
    if resumed:
        ctx.console.print(f"resuming: {len(journal.done)} stacks were deployed by an earlier run of this fleet file "
                          "(--restart deploys them again)")
    runs = run_stacks(env, fleet, chosen, up, parallel=args.parallel, console=ctx.console, journal=journal,
                      verb="deploy")
    ctx.deployed += [r.stack for r in runs if r.status == "done"]
    return 0


def remote_source(ctx: Context, args: argparse.Namespace) -> tuple[GitSource, str, str] | None:
    """(git source, org, project) for `--engine deployments`; None for the local engine."""
    git_args = {"--git-url": args.git_url, "--git-branch": args.git_branch, "--git-commit": args.git_commit,
                "--git-repo-dir": args.git_repo_dir}
    if args.engine != "deployments":
        given = [k for k, v in git_args.items() if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only with --engine deployments (the local engine deploys this "
                             "checkout)")
        return None
    org, project = org_and_project(ctx.qualified_stack or ctx.stack, read_project(ctx.project_dir))
    git = GitSource.from_args(ctx.project_dir, args.git_url, args.git_branch, args.git_commit, args.git_repo_dir)
    if git.commit and not args.git_commit and uncommitted(ctx.project_dir):
        ctx.console.print(f"[yellow]![/] uncommitted changes here are not deployed: Pulumi Deployments deploys "
                          f"commit {git.commit[:12]} (the policy gate plans this checkout)")
    return git, org, project


def policy_gate(ctx: Context, fleet: str, only: list[str]) -> None:
    """The policy pack on every chosen stack's offline plan (and on the fleet view when all are chosen), before
    any update is queued: a remote update cannot take `--policy-pack`."""
    from stamps.policycheck import check_fleet, check_plans

    if ctx.policy_pack is None:
        ctx.console.print("[yellow]![/] no policy pack checked before queueing (--no-policy, or no policy/ here); "
                          "Pulumi Cloud enforces only the packs published to the organization")
        return
    plans = plan_fleet(ctx.project_dir, fleet, only=only)
    code = (check_plans(plans, ctx.console, pack_dir=ctx.policy_pack) if only
            else check_fleet(plans, fleet, ctx.console, pack_dir=ctx.policy_pack))
    if code:
        raise PolicyRefused("the policy pack refused the offline plan (mandatory violations above); no stack was "
                            "queued on Pulumi Deployments")


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("deploy", help="pulumi up on every unit stack of the fleet, in dependency order",
                       description=__doc__)
    p.add_argument("--only", action="append", help="a layer (region, cell, edge, tenants) or a unit "
                   "(global, cell.banking.eastus, ...); repeatable")
    p.add_argument("--parallel", type=int, default=4, help="stacks updated at once within a step (default: 4)")
    p.add_argument("--restart", action="store_true", help="ignore an earlier stopped run; deploy every stack")
    p.add_argument("--engine", choices=("local", "deployments"), default="local",
                   help="local: each stack's `pulumi up` runs here; deployments: on Pulumi Deployments, from git "
                        "(--stack ORG/<fleet>, --git-url)")
    p.add_argument("--git-url", help="with --engine deployments: the repository Pulumi Deployments clones")
    p.add_argument("--git-branch", help="with --engine deployments: deploy this branch's head (default: the commit "
                   "checked out here)")
    p.add_argument("--git-commit", help="with --engine deployments: deploy this commit (40 hex)")
    p.add_argument("--git-repo-dir", help="with --engine deployments: the directory of Pulumi.yaml in the repository "
                   "(default: this project's place in its checkout)")
    common(p)
    p.set_defaults(func=run, lock_stack=False)
