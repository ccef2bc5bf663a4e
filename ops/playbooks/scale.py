"""Scaling triggers (runbook: "Performance & Scaling" → "Scaling Triggers") as stack updates.

For every CELL's serving instance (its primary; its standby instead while its primary region is failed over
or drilled out) the playbook reads the Container App's
CpuPercentage, MemoryPercentage, Requests and Replicas and the SQL database's cpu_percent (and
dtu_consumption_percent on DTU service objectives) from Azure Monitor at a 5-minute grain, and compares
them with `stamps:scaling`:

* scale up when the newest reading is above a trigger: CPU > cpuPercent, memory > memoryPercent or
  requests per replica per minute > requestsPerReplica raise `replicas.min`/`max` by `step` (max capped at
  Container Apps' 300); SQL CPU/DTU > cpuPercent (the runbook's SQL DTU alert, 80) moves `sql.sku` one rung
  up `sqlLadder`. A reading whose interval began before the CELL's last change is ignored ("settling"): the
  new capacity must show in the metrics before the playbook reacts again, so a re-run changes nothing.
* scale down only when the CELL is quiet: every metric of every serving instance stayed below
  scaleDownBelowPercent (for requests: that percentage of requestsPerReplica) for the whole last
  quietMinutes, with data covering the window, and the last change is at least quietMinutes old. Then
  replicas go down by `step` and the SKU one rung, never below the CELL's baseline.

Hysteresis (decided): quietness is derived from the metric series over the quiet window, not from a
counter kept between runs, so a restarted `--watch` (or a cron `--once`) decides exactly like a long-running
one and needs no warm-up. What the metrics cannot tell is what the CELL looked like before the playbook
scaled it, and when it last changed; that small record lives in `.stamps/scale/<stack>.json` (atomic
writes): the baseline (the CELL's replicas and SKU as configured before the first automatic scale-up),
the values last applied, and the time of the last change. The floor is that baseline: the playbook only
ever undoes its own scale-ups and never goes below what a human configured. If the stack file no longer
holds the values the playbook applied (someone edited the CELL), the record is dropped and the new values
become the baseline. Dry runs read and print but record nothing.

All decisions of one pass are one `ctx.apply` (one stack update). A CELL whose metrics cannot be read is
skipped with the reason; the others proceed; the exit code is then 1.

Where things are: the readings and triggers in `ops.scaling.readings`, the decisions in `ops.scaling.decisions`,
the SQL service-objective rules (families, editions, ladder steps) in `stamps.config.sql_skus`; this module is
the record, the stack updates and the CLI.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from rich.markup import escape
from rich.table import Table

from ops.azure_monitor import (
    CONTAINER_APP_CPU_PERCENT,
    CONTAINER_APP_MEMORY_PERCENT,
    CONTAINER_APP_REPLICAS,
    CONTAINER_APP_REQUESTS,
    SQL_DB_CPU_PERCENT,
    SQL_DB_DTU_CONSUMPTION_PERCENT,
    MetricPoint,
    MetricSeries,
)
from ops.playbooks.base import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    PlaybookError,
    audit,
    cell_path,
    find_cell,
)
from ops.reports import iso, read_json
from ops.runner import RunnerError
from ops.scaling.decisions import Decision, decide
from ops.scaling.readings import APP_KEYS, GRAIN, INTERVAL, SQL_KEYS, InstanceReading, Trigger, read_instance, triggers
from ops.stackconfig import StackConfigFile, StackLockedError
from stamps.atomicfile import PRIVATE, write_json_atomic
from stamps.config.errors import ConfigError
from stamps.config.model import CellConfig, ScalingConfig
from stamps.config.sql_skus import edition
from stamps.environment import CellInstance, Environment

STATE_VERSION: Final = 1


# ------------------------------------------------------------------------------------------ state


def state_path(ctx: Context) -> Path:
    return ctx.state_dir / "scale" / f"{ctx.stack}.json"


def _load_state(ctx: Context) -> dict[str, Any]:
    data = read_json(state_path(ctx), {})  # unreadable or not an object: exit 2 naming the file
    if data.get("version", STATE_VERSION) != STATE_VERSION:
        raise PlaybookError(f"scaling record {state_path(ctx)} has an unknown format; move it aside to start over")
    data.setdefault("version", STATE_VERSION)
    data.setdefault("cells", {})
    return data


def _current_record(ctx: Context, state: dict[str, Any], cell: CellConfig) -> dict[str, Any] | None:
    """The CELL's record if the stack file still holds what the playbook applied; else drop it."""
    rec = state["cells"].get(cell.name)
    if not rec:
        return None
    applied = rec.get("applied") or {}
    now_values = {"replicas": {"min": cell.replicas.min, "max": cell.replicas.max}, "sqlSku": cell.sql.sku}
    if applied != now_values:
        ctx.console.print(f"  note: CELL {cell.name}'s replicas/SKU were changed outside this playbook; its "
                          f"current size {cell.replicas.min}-{cell.replicas.max} / {cell.sql.sku} is the new baseline")
        del state["cells"][cell.name]
        return None
    return rec


def _record(ctx: Context, state: dict[str, Any], done: Sequence[Decision], now: dt.datetime) -> None:
    """Record the changes the stack file now holds (after a successful or failed update alike)."""
    try:
        env = ctx.environment()
    except (PlaybookError, ConfigError):  # unreadable after a failed update: keep the old record, don't guess
        return
    on_disk = {c.name: c for c in env.cells}
    changed = False
    for d in done:
        cell = on_disk.get(d.cell.name)
        if cell is None or (cell.replicas.min, cell.replicas.max) != d.replicas_to or cell.sql.sku != d.sku_to:
            continue
        prev = state["cells"].get(d.cell.name) or {}
        baseline = prev.get("baseline") or {"replicas": {"min": d.replicas[0], "max": d.replicas[1]},
                                            "sqlSku": d.sku}
        state["cells"][d.cell.name] = {
            "baseline": baseline,
            "applied": {"replicas": {"min": d.replicas_to[0], "max": d.replicas_to[1]}, "sqlSku": d.sku_to},
            "lastChange": iso(now),
            "lastAction": d.action,
            "reason": d.reason,
        }
        changed = True
    if changed:
        state["updatedAt"] = iso(now)
        write_json_atomic(state_path(ctx), state, mode=PRIVATE)


# ------------------------------------------------------------------------------------------ one pass


def serving_instances(env: Environment, cell: CellConfig) -> list[CellInstance]:
    """The instances carrying the CELL's traffic: the primary, or its standby while the stack is failed over
    to the standby's region or the primary's region is drilled out. Only those drive decisions, so a dead
    primary region's unreadable metrics never stop the live standby from scaling."""
    standby = next((i for i in env.instances if i.name == cell.name and i.role == "standby"), None)
    if standby is not None and (env.failed_over(cell.region) or not env.regions[cell.region].traffic_enabled):
        return [standby]  # it runs at the CELL's replicas while serving (stamps.environment)
    return [i for i in env.instances if i.name == cell.name and i.role == "primary"]


def one_pass(ctx: Context, only: str | None, runner_kind: str = "offline") -> int:
    env = ctx.environment()
    sc = env.config.scaling
    cells = [c for c in env.cells if only in (None, c.name)]
    state = _load_state(ctx)
    recorded = set(state["cells"])
    now = ctx.now()
    start = now - dt.timedelta(minutes=sc.quiet_minutes)
    outputs = ctx.outputs().get("cells") or {}
    reader = ctx.metrics()
    decisions: list[Decision] = []
    try:
        for cell in cells:
            insts = serving_instances(env, cell)
            readings = [] if cell.isolation is not None else [
                read_instance(reader, i, outputs.get(i.key) or {}, start, now) for i in insts]
            record = _current_record(ctx, state, cell)
            decisions.append(decide(cell, readings, sc, record, cell.standby is not None, now))
    finally:
        close = getattr(reader, "close", None)
        if callable(close):
            close()
    if set(state["cells"]) != recorded and not ctx.dry_run:
        write_json_atomic(state_path(ctx), state, mode=PRIVATE)  # records dropped after a manual edit stay dropped
    show_decisions(ctx, sc, decisions, now)
    todo = [d for d in decisions if d.changes]
    if todo:
        _apply(ctx, todo, now, state)
    unread = sum(d.action == "error" for d in decisions)
    if not todo:
        ctx.console.print("[green]✓[/] no CELL needs a change" if not unread else
                          f"[yellow]![/] no change for the CELLs that could be read; {unread} could not be")
    return EXIT_FAILED if unread else EXIT_OK


def _apply(ctx: Context, todo: Sequence[Decision], now: dt.datetime, state: dict[str, Any]) -> None:
    applied: list[Decision] = []

    def edit(cfg: StackConfigFile) -> None:
        fresh = {c.name: c for c in ctx.environment(cfg).cells}
        for d in todo:
            cell = fresh.get(d.cell.name)
            # Another playbook may have changed the CELL since it was read: decide again next pass.
            if cell is None or (cell.replicas.min, cell.replicas.max) != d.replicas or cell.sql.sku != d.sku:
                ctx.console.print(f"  CELL {d.cell.name} changed while deciding; skipped this pass")
                continue
            base = cell_path(d.cell.name)
            if d.replicas_to != d.replicas:
                if cfg.exists(f"{base}.replicas"):
                    cfg.set(f"{base}.replicas.min", d.replicas_to[0])
                    cfg.set(f"{base}.replicas.max", d.replicas_to[1])
                else:
                    cfg.set(f"{base}.replicas", {"min": d.replicas_to[0], "max": d.replicas_to[1]})
            if d.sku_to != d.sku:
                if cfg.exists(f"{base}.sql"):
                    cfg.set(f"{base}.sql.sku", d.sku_to)
                else:
                    cfg.set(f"{base}.sql", {"sku": d.sku_to})
                if cell.standby is not None:
                    # The primary caught up with its geo-secondary: the override has done its job.
                    cfg.delete(f"{base}.standby.sqlSku", missing_ok=True)
            applied.append(d)

    leads = [d for d in todo if d.cell.standby is not None and d.sku_to != d.sku
             and edition(d.sku_to) != edition(d.sku) and d.action == "scale-up"]
    if leads:
        def standby_first(cfg: StackConfigFile) -> None:
            for d in leads:
                cfg.set(f"{cell_path(d.cell.name)}.standby.sqlSku", d.sku_to)

        ctx.apply("scale: upgrade the geo-secondaries first (cross-edition) — "
                  + ", ".join(f"{d.cell.name} {d.sku} → {d.sku_to}" for d in leads), standby_first)
    title = "scale " + ", ".join(f"{d.cell.name} {d.action.removeprefix('scale-')}" for d in todo)
    try:
        result = ctx.apply(title, edit)
    finally:
        if not ctx.dry_run:
            _record(ctx, state, applied, now)
    if result is not None and not ctx.dry_run:
        for d in applied:
            audit(ctx, "scale", d.action, cell=d.cell.name, replicas=f"{d.replicas[0]}-{d.replicas[1]}",
                  replicas_to=f"{d.replicas_to[0]}-{d.replicas_to[1]}", sku=d.sku, sku_to=d.sku_to, reason=d.reason)


def _cell_value(reading: InstanceReading, key: str, trig: Trigger) -> str:
    latest = reading.latest(key)
    if latest is None:
        return "—"
    text = f"{latest[1]:.0f}"
    return f"[red]{text}[/]" if latest[1] > trig.up else (f"[green]{text}[/]" if latest[1] < trig.quiet else text)


def show_decisions(ctx: Context, sc: ScalingConfig, decisions: Sequence[Decision], now: dt.datetime) -> None:
    """The decision table (newest readings against their triggers), then one reason line per CELL."""
    trig = triggers(sc)
    table = Table(title=f"scaling decisions for stack {ctx.stack} at {iso(now)} (newest {INTERVAL} readings)")
    table.add_column("CELL")
    table.add_column("instance")
    for key in (*APP_KEYS, *SQL_KEYS):
        table.add_column(f"{trig[key].label}{' %' if trig[key].unit else ''}\n> {trig[key].up:g}", justify="right")
    for col in ("replicas", "SQL SKU", "action"):
        table.add_column(col)
    colour = {"scale-up": "yellow", "scale-down": "cyan", "error": "red", "skip": "dim", "hold": "green"}
    for d in decisions:
        replicas = f"{d.replicas[0]}-{d.replicas[1]}" + (
            f" → {d.replicas_to[0]}-{d.replicas_to[1]}" if d.replicas_to != d.replicas else "")
        sku = d.sku + (f" → {d.sku_to}" if d.sku_to != d.sku else "")
        action = f"[{colour.get(d.action, 'white')}]{d.action}[/]"
        for i, r in enumerate(d.readings or [None]):
            values = ["—"] * 5 if r is None else [_cell_value(r, k, trig[k]) for k in (*APP_KEYS, *SQL_KEYS)]
            first = i == 0
            table.add_row(escape(d.cell.name) if first else "", escape(r.inst.key) if r else "", *values,
                          replicas if first else "", sku if first else "", action if first else "")
    ctx.console.print(table)
    ctx.console.print(
        f"scale down when every metric stays < {sc.scale_down_below_percent:g}% (requests < "
        f"{trig['requests'].quiet:.0f}/replica/min) for {sc.quiet_minutes} min; step {sc.step} replicas, "
        f"SQL ladder {' → '.join(sc.sql_ladder)}", soft_wrap=True)
    shown: set[str] = set()
    for d in decisions:
        style = colour.get(d.action, "white")
        reason = d.reason
        # One cause (typically: no Azure credential) fails every CELL alike: say it in full once.
        cause = reason.partition(" failed: ")[2]
        if cause and cause in shown:
            reason = reason.partition(" failed: ")[0] + " failed: (same cause as above)"
        shown.add(cause)
        ctx.console.print(f"  {escape(d.cell.name)}: [{style}]{d.action}[/] — {escape(reason)}", soft_wrap=True)


# ------------------------------------------------------------------------------------------ CLI


def run(ctx: Context, args: argparse.Namespace) -> int:
    if not args.watch and (args.interval is not None or args.max_iterations is not None):
        raise PlaybookError("--interval/--max-iterations: only with --watch")
    interval = 300.0 if args.interval is None else args.interval
    if interval <= 0:
        raise PlaybookError(f"--interval: must be a positive number of seconds, got {interval:g}")
    if args.max_iterations is not None and args.max_iterations < 1:
        raise PlaybookError(f"--max-iterations: must be at least 1, got {args.max_iterations}")
    if args.cell is not None:
        find_cell(ctx.environment(), args.cell, "--cell")
    if args.simulate:
        if not ctx.dry_run:
            raise PlaybookError("--simulate: what-if readings only go with --dry-run; a real run reads Azure")
        env = ctx.environment()
        spec = parse_simulation(args.simulate, env)
        ctx.metrics_factory = lambda: SimulatedMetrics(env, ctx.outputs().get("cells") or {}, spec)
    if not args.watch:
        return one_pass(ctx, args.cell, args.runner)
    worst = EXIT_OK
    iteration = 0
    while True:
        iteration += 1
        ctx.console.rule(f"scale pass {iteration}" + (f"/{args.max_iterations}" if args.max_iterations else ""))
        try:
            worst = max(worst, one_pass(ctx, args.cell, args.runner))
        except (RunnerError, StackLockedError, PlaybookError) as err:
            # A failed or refused update is reported and retried next pass; the watch keeps running.
            ctx.console.print(f"[red]✗[/] pass {iteration}: {escape(str(err))}", soft_wrap=True)
            worst = max(worst, getattr(err, "exit_code", EXIT_FAILED))
        if args.max_iterations is not None and iteration >= args.max_iterations:
            return worst
        ctx.sleep(interval)


SIMULATED: Final = {"cpu": CONTAINER_APP_CPU_PERCENT, "memory": CONTAINER_APP_MEMORY_PERCENT,
                    "requests": CONTAINER_APP_REQUESTS, "replicas": CONTAINER_APP_REPLICAS,
                    "sql": SQL_DB_CPU_PERCENT}


class SimulatedMetrics:
    """What-if readings for `--simulate`: steady values for the named CELLs, no data for the others.

    Lets a dry run show what the triggers would change with no Azure access; never used for a real run.
    """

    def __init__(self, env: Any, outputs: Mapping[str, Any], spec: Mapping[str, Mapping[str, float]]) -> None:
        self.values: dict[str, dict[str, float]] = {}
        for info in outputs.values():
            values = spec.get(str(info.get("cell")))
            if values is None:
                continue
            app = {SIMULATED[k]: v for k, v in values.items() if k != "sql"}
            app.setdefault(CONTAINER_APP_REPLICAS, float(env.instance(info["cell"], info["role"]).replicas.min))
            self.values[str(info.get("appId"))] = app
            sql = values.get("sql")
            if sql is not None:
                self.values[str(info.get("databaseId"))] = {SQL_DB_CPU_PERCENT: sql,
                                                            SQL_DB_DTU_CONSUMPTION_PERCENT: sql}

    def series(self, resource_id: str, names: Sequence[str], aggregation: Any, *, interval: str = "PT5M",
               timespan: tuple[dt.datetime, dt.datetime] | Any = None) -> dict[str, list[MetricSeries]]:
        start, end = timespan
        stamps_: list[dt.datetime] = []
        t = start.replace(second=0, microsecond=0)
        while t <= end:
            stamps_.append(t)
            t += GRAIN
        known = self.values.get(resource_id, {})
        out: dict[str, list[MetricSeries]] = {}
        for name in names:
            value = known.get(name)
            if name == CONTAINER_APP_REQUESTS and value is not None:
                value *= GRAIN.total_seconds() / 60  # given per minute; Azure totals the interval
            points = tuple(MetricPoint(ts, value) for ts in stamps_)
            out[name] = [MetricSeries(resource_id, name, aggregation, "", {}, points)]
        return out

    def close(self) -> None:
        return None


def parse_simulation(items: Sequence[str], env: Any) -> dict[str, dict[str, float]]:
    """`CELL:cpu=95,memory=40,requests=800,sql=70` → {cell: {metric: value}} (requests per minute)."""
    spec: dict[str, dict[str, float]] = {}
    for item in items:
        cell, _, pairs = item.partition(":")
        find_cell(env, cell, "--simulate")
        values: dict[str, float] = {}
        for pair in filter(None, pairs.split(",")):
            name, _, raw = pair.partition("=")
            if name not in SIMULATED:
                raise PlaybookError(f"--simulate: unknown metric {name!r}; valid: {', '.join(SIMULATED)}")
            try:
                values[name] = float(raw)
            except ValueError:
                raise PlaybookError(f"--simulate: {pair!r} needs a number, like cpu=95") from None
            # Percentages stop at 100; a rate (requests per minute) has no ceiling but is never negative.
            top = None if name == "requests" else 100.0
            if not (values[name] >= 0 and (top is None or values[name] <= top)) or values[name] == float("inf"):
                valid = "0 or more" if top is None else "0-100 (a percentage)"
                raise PlaybookError(f"--simulate: {pair!r}: {name} must be {valid}")
        if not values:
            raise PlaybookError(f"--simulate: {item!r} names no metric; e.g. {cell}:cpu=95,sql=85")
        spec[cell] = values
    return spec


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("scale", help="apply the runbook's scaling triggers to every serving CELL",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass (the default)")
    mode.add_argument("--watch", action="store_true", help="repeat every --interval seconds")
    p.add_argument("--interval", type=float, default=None, help="seconds between passes with --watch (default 300)")
    p.add_argument("--max-iterations", type=int, default=None, metavar="N",
                   help="stop --watch after N passes (default: run until interrupted)")
    p.add_argument("--cell", default=None, metavar="NAME", help="only this CELL")
    p.add_argument("--simulate", action="append", default=[], metavar="CELL:METRIC=V,...",
                   help="with --dry-run: what-if readings instead of Azure Monitor, e.g. retail:cpu=95,sql=85 "
                        "(metrics: cpu, memory, requests per minute, replicas, sql)")
    common(p)
    # lock_stack=False: a CLI that honours it leaves the stack lock free between passes; each change
    # takes it (Context.locked), so a watch never blocks a failover.
    p.set_defaults(func=run, lock_stack=False)
