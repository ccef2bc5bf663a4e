"""A playbook's change to a fleet deployed as unit stacks: only the stacks it changes are updated.

The change is an edit of the fleet file. Both versions are planned offline as stack sets; the stacks whose
plans differ are the ones the change touches (onboarding: the CELL's tenant shard and the api stack; a region
failover: routing and that region's standby CELLs). Those stacks, and only those, are locked (each stack has
its own lock, so a migration in one CELL never blocks a failover elsewhere), checked by the policy pack,
updated in dependency order from a temporary copy of the edited fleet file, and the fleet file is replaced
once every one of them succeeded: re-applying the edit to the file as it is then, under a short file lock,
so two playbooks changing different stacks never lose each other's edit.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ops.fleetrun import run_stacks
from ops.runner import ChangeSet, RunResult
from ops.stackconfig import ConfigEditError, StackConfigFile, apply_changes, stack_lock
from stamps.errors import OperationFailed
from stamps.offline.plan import Plan, diff_plans, type_chain
from stamps.stacks.fleet import plan_fleet
from stamps.stacks.planset import print_set_diff
from stamps.stacks.units import Unit, split_stack

if TYPE_CHECKING:
    from ops.playbooks.base import Context

FILE_LOCK_SUFFIX = ".fleet-file"


def changed_stacks(before: list[Plan], after: list[Plan]) -> list[Plan]:
    """The plans of `after` whose stack differs from `before` (new stacks included), in `after`'s order."""
    old = {p.stack: p for p in before}
    return [p for p in after if not diff_plans(old.get(p.stack, Plan(p.project, p.stack, [])), p).is_empty]


def state_moves(before: list[Plan], after: list[Plan]) -> dict[tuple[str, str], list[str]]:
    """Resources a change moves from one stack to another (a tenant's APIM user and subscription when it
    changes CELL): (source, destination) → their URNs in the source. Moved with `pulumi state move` before
    any update, they keep their identity (a subscription keeps its keys) instead of being deleted and created."""
    where_before = {type_chain(r["urn"]): (p.stack, r["urn"]) for p in before for r in p.custom()}
    moves: dict[tuple[str, str], list[str]] = {}
    for plan in after:
        for r in plan.custom():
            src = where_before.get(type_chain(r["urn"]))
            if src is not None and src[0] != plan.stack:
                moves.setdefault((src[0], plan.stack), []).append(src[1])
    return moves


def fleet_outputs(ctx: Context) -> dict[str, Any]:
    """Every unit stack's outputs in one map (the single stack's outputs, spread over the set)."""
    fleet = split_stack(ctx.stack)[0]
    if ctx.dry_run or ctx.runner_kind == "offline" or ctx.stack_runner is None:
        plans = plan_fleet(ctx.project_dir, fleet, ctx.config_file().path)
        return {k: v for p in plans for k, v in p.outputs.items()}
    env = ctx.environment()
    from stamps.stacks.units import units

    merged: dict[str, Any] = {}
    for unit in units(env):
        for key, value in ctx.stack_runner(unit.stack(fleet)).outputs().items():
            if key == "cells" and isinstance(value, dict):
                merged.setdefault("cells", {}).update(value)  # each CELL stack exports its own entry
            elif key == "tenantAccess" and isinstance(value, dict):
                merged.setdefault("tenantAccess", {}).update(value)  # each shard its tenants
            else:
                merged[key] = value
    return merged


@contextlib.contextmanager
def _locks(project_dir: Path, stacks: list[str], holder: str) -> Iterator[None]:
    # Sorted: two playbooks locking overlapping sets take them in one order, so neither waits on the other.
    with contextlib.ExitStack() as held:
        for stack in sorted(stacks):
            held.enter_context(stack_lock(project_dir, stack, holder=holder))
        yield


def apply_units(ctx: Context, title: str, cfg: StackConfigFile) -> RunResult | None:
    from ops.playbooks.base import Refused

    fleet = split_stack(ctx.stack)[0]
    with tempfile.TemporaryDirectory(prefix="stamps-fleet-") as tmp:
        edited = Path(tmp) / cfg.path.name
        edited.write_text(cfg.render(), encoding="utf-8")
        before = plan_fleet(ctx.project_dir, fleet, cfg.path)
        after = plan_fleet(ctx.project_dir, fleet, edited)
        gone = sorted({p.stack for p in before} - {p.stack for p in after})
        if gone:
            raise Refused(f"{title}: the change removes unit stacks ({', '.join(gone)}); remove a CELL or region "
                          "on purpose: `pulumi destroy` then `pulumi stack rm` on each, after its tenants moved")
        changed = changed_stacks(before, after)
        moves = state_moves(before, after)
        ctx.console.print(f"[bold]{title}[/] — stacks changed: "
                          f"{', '.join(p.stack for p in changed) or 'none'} ({len(changed)} of {len(after)})")
        for (src, dst), urns in moves.items():
            ctx.console.print(f"  state move {src} → {dst}: {len(urns)} resources keep their identity "
                              f"({', '.join(u.rsplit('::', 1)[-1] for u in urns)})")
        print_set_diff(before, after, ctx.console, str(cfg.path.name))
        if ctx.policy_pack is not None and changed:
            _policy(ctx, changed, after, fleet)
        summary = {"update": sum(diff_plans({p.stack: p for p in before}.get(c.stack, Plan(c.project, c.stack, [])),
                                            c).changed for c in changed)}
        result = RunResult("preview" if ctx.dry_run else "up", fleet, ChangeSet(cfg.changes), summary, [])
        if ctx.dry_run:
            return result
        if ctx.runner_kind == "offline" or ctx.stack_runner is None:
            # GitOps: the pipeline deploys the merged file; here the file is the change.
            _save(ctx, cfg, fleet)
            return result
        units = [split_stack(p.stack)[1] for p in changed]
        runner_for = ctx.stack_runner
        env = ctx.environment(cfg)

        def up(stack: str) -> str:
            edited_cfg = StackConfigFile(edited)
            return runner_for(stack).up(edited_cfg).summary_line()

        with _locks(ctx.project_dir, [p.stack for p in changed], ctx.playbook):
            for (src, dst), urns in moves.items():
                runner_for(src).move_resources(dst, urns)
            try:
                runs = run_stacks(env, fleet, [u for u in units if isinstance(u, Unit)], up, parallel=4,
                                  console=ctx.console, verb=title)
            except OperationFailed as err:
                raise OperationFailed(f"{err}. {cfg.path.name} is unchanged (it records the fleet as it was); the "
                                      "stacks marked done already run the change: re-run the playbook to finish "
                                      "(re-applying a done stack changes nothing)") from None
        ctx.deployed += [r.stack for r in runs if r.status == "done"]
        _save(ctx, cfg, fleet)
        return result


def _policy(ctx: Context, changed: list[Plan], after: list[Plan], fleet: str) -> None:
    """The pack on each changed stack (as `pulumi up --policy-pack` will run it) and its fleet-wide policies on
    the fleet view; a mandatory violation refuses the change before any stack is touched."""
    from ops.runner import PolicyRefused
    from stamps.offline.plan import merge_plans
    from stamps.policycheck import check_plan, check_plans, render
    from stamps.stacks.units import FLEET_WIDE_POLICIES

    code = check_plans(changed, ctx.console, pack_dir=ctx.policy_pack)
    view = check_plan(merge_plans(after, f"{fleet} (fleet view)"), ctx.policy_pack, only=FLEET_WIDE_POLICIES)
    render(view, ctx.console)
    if max(code, view.exit_code) >= 3:
        raise PolicyRefused("the policy pack refused the change (mandatory violation above); no stack was touched")


def _save(ctx: Context, cfg: StackConfigFile, fleet: str) -> None:
    """Replay this change set onto the fleet file as it is now, under the file's own short lock."""
    from ops.playbooks.base import Failed

    with stack_lock(ctx.project_dir, fleet + FILE_LOCK_SUFFIX, holder=ctx.playbook):
        try:
            current = StackConfigFile(cfg.path)
            apply_changes(current, cfg.changes)
            current.save()
        except (ConfigEditError, OSError) as err:
            raise Failed(f"deployed, but {cfg.path.name} could not be updated ({err}); the stacks are ahead of "
                         "the file: re-run the playbook to record it") from None

