"""Roll an infrastructure change out to the CELL stacks: the canary CELL first, then waves, each gated.

The change is already in the fleet file (merged through review); this applies it CELL by CELL instead of
fleet-wide. Order: `stamps:rollout.canary` (or `--canary`), then waves of `stamps:rollout.waveSizes` CELLs
(the last size repeats); a CELL's primary and standby stacks update together, primary first. After each wave
it waits `bakeMinutes`, then the health gate reads Azure for every instance of the wave:
- alerts: no alert fired in the instance's resource group in the last hour and still open (Alerts
  Management, the CELL's own alert rules live there);
- probes: the app's active revisions are healthy as Azure judges them from the liveness/readiness probes
  (Container Apps `healthState`/`runningState`).
A failed gate stops the rollout: the remaining CELLs keep the old configuration until it is fixed; a re-run
resumes after the done stacks and re-checks every wave's gate before going on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from ops.arm import API_VERSIONS, ArmReadError, subscription_of
from ops.fleetrun import Journal, run_stacks
from ops.playbooks.base import Context
from ops.playbooks.deploy import fleet_of
from stamps.environment import Environment
from stamps.errors import OperationFailed, UsageError
from stamps.stacks.units import Unit

BAD_RUNNING_STATES = ("Failed", "Degraded")


@dataclass
class Gate:
    stack: str
    ok: bool
    detail: str


def plan_waves(env: Environment, canary: str, sizes: list[int]) -> list[list[str]]:
    """CELL names per wave: the canary alone, then chunks of the given sizes (the last size repeats)."""
    rest = [c.name for c in env.cells if c.name != canary]
    waves, i, k = [[canary]], 0, 0
    while i < len(rest):
        size = sizes[min(k, len(sizes) - 1)]
        waves.append(rest[i:i + size])
        i, k = i + size, k + 1
    return waves


def cell_units(env: Environment, cells: list[str]) -> list[Unit]:
    return [Unit("cell", cell=i.name, region=i.region) for i in env.instances if i.name in cells]


def _resource_group(arm_id: str) -> str:
    parts = arm_id.strip("/").split("/")
    return parts[parts.index("resourceGroups") + 1] if "resourceGroups" in parts else ""


def gate(arm: Any, stack: str, outputs: dict[str, Any]) -> Gate:
    """The health gate of one CELL instance stack, from its `cells` output (the app's ARM id)."""
    entries = list((outputs.get("cells") or {}).values())
    app_id = str(entries[0].get("appId") or "") if entries else ""
    if not app_id.startswith("/subscriptions/"):
        return Gate(stack, False, "the stack has no cells output with the app's id: is it deployed?")
    try:
        alerts = arm.list(f"/subscriptions/{subscription_of(app_id)}/providers/Microsoft.AlertsManagement/alerts",
                          API_VERSIONS["alertsManagement"],
                          params={"targetResourceGroup": _resource_group(app_id), "monitorCondition": "Fired",
                                  "timeRange": "1h"})
        revisions = arm.list(f"{app_id}/revisions", API_VERSIONS["containerApps"])
    except ArmReadError as err:
        return Gate(stack, False, f"cannot read its health: {err}")
    fired = [a for a in alerts
             if (a.get("properties") or {}).get("essentials", {}).get("alertState") != "Closed"]
    if fired:
        names = sorted({str((a.get("properties") or {}).get("essentials", {}).get("alertRule", "")).rsplit("/", 1)[-1]
                        or a.get("name", "?") for a in fired})
        return Gate(stack, False, f"{len(fired)} alert(s) fired: {', '.join(names)[:200]}")
    active = [r.get("properties") or {} for r in revisions if (r.get("properties") or {}).get("active")]
    if not active:
        return Gate(stack, False, "no active revision")
    bad = [p for p in active if p.get("healthState") == "Unhealthy" or p.get("runningState") in BAD_RUNNING_STATES]
    if bad:
        return Gate(stack, False, "revision " + ", ".join(
            f"{p.get('template', {}).get('revisionSuffix', '?')}: {p.get('healthState')}/{p.get('runningState')}"
            for p in bad))
    return Gate(stack, True, f"no open alerts; {len(active)} active revision(s) healthy")


def run(ctx: Context, args: argparse.Namespace) -> int:
    fleet = fleet_of(ctx)
    if args.parallel < 1:
        raise UsageError(f"--parallel: {args.parallel} must be 1 or more")
    env = ctx.environment()
    rollout = env.config.rollout
    canary = args.canary or rollout.canary or env.cells[0].name
    if canary not in {c.name for c in env.cells}:
        raise UsageError(f"--canary: {canary!r} is not a CELL; valid: {', '.join(c.name for c in env.cells)}")
    sizes = rollout.wave_sizes
    if args.waves:
        try:
            sizes = [int(x) for x in args.waves.split(",")]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 1:
            raise UsageError(f"--waves: {args.waves!r} must be comma-separated wave sizes of 1 or more (e.g. 1,2,4)")
    bake = rollout.bake_minutes if args.bake_minutes is None else args.bake_minutes
    waves = plan_waves(env, canary, sizes)
    for i, cells in enumerate(waves):
        ctx.console.print(f"  wave {i} ({'canary' if i == 0 else f'{len(cells)} CELLs'}): {', '.join(cells)}")
    if ctx.dry_run or ctx.runner_kind == "offline":
        ctx.console.print(f"dry run: {len(waves)} waves over {len(env.cells)} CELLs, {bake} min bake and a health "
                          "gate after each; nothing deployed")
        return 0
    if ctx.stack_runner is None:
        raise UsageError("rollout: no runner for the unit stacks")
    journal, resumed = Journal.open(ctx.state_dir / f"fleetrun-{fleet}-rollout.json", ctx.config_file().path,
                                    restart=args.restart)
    if resumed:
        ctx.console.print(f"resuming: {len(journal.done)} CELL stacks were updated by an earlier run")
    runner_for = ctx.stack_runner
    arm = ctx.arm()
    try:
        for i, cells in enumerate(waves):
            units = cell_units(env, cells)
            runs = run_stacks(env, fleet, units, lambda s: runner_for(s).up().summary_line(),
                              parallel=args.parallel, console=ctx.console, journal=journal,
                              verb=f"rollout wave {i}", finish=False)
            ctx.deployed += [r.stack for r in runs if r.status == "done"]
            if bake:
                ctx.console.print(f"  baking {bake} min before the gate of wave {i}")
                ctx.sleep(bake * 60)
            gates = [gate(arm, u.stack(fleet), runner_for(u.stack(fleet)).outputs()) for u in units]
            table = Table(title=f"health gate, wave {i}")
            for col in ("stack", "gate", "detail"):
                table.add_column(col)
            for g in gates:
                table.add_row(g.stack, "[green]pass[/]" if g.ok else "[red]fail[/]", g.detail)
            ctx.console.print(table)
            failed = [g for g in gates if not g.ok]
            if failed:
                left = [c for w in waves[i + 1:] for c in w]
                raise OperationFailed(f"rollout stopped at wave {i}: the health gate failed for "
                              f"{', '.join(g.stack for g in failed)}; {len(left)} CELLs not updated "
                              f"({', '.join(left) or 'none'}). Fix or revert the change, then re-run")
    finally:
        close = getattr(arm, "close", None)
        if callable(close):
            close()
    journal.finish()
    ctx.console.print(f"rolled out to {len(env.cells)} CELLs in {len(waves)} waves")
    return 0


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("rollout", help="apply the fleet file's change to the CELL stacks: canary, then gated waves",
                       description=__doc__)
    p.add_argument("--canary", help="the CELL updated first (default: stamps:rollout.canary, else the first CELL)")
    p.add_argument("--waves", help="wave sizes after the canary, e.g. 1,2,4 (default: stamps:rollout.waveSizes)")
    p.add_argument("--bake-minutes", type=int, default=None,
                   help="wait after each wave before its gate (default: stamps:rollout.bakeMinutes)")
    p.add_argument("--parallel", type=int, default=4, help="stacks updated at once within a wave (default: 4)")
    p.add_argument("--restart", action="store_true", help="ignore an earlier stopped rollout")
    common(p)
    p.set_defaults(func=run, lock_stack=False)
