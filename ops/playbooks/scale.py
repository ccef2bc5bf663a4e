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
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    Aggregation,
    AzureReadError,
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
from ops.reports import iso, parse_iso, read_json
from ops.runner import RunnerError
from ops.stackconfig import StackConfigFile, StackLockedError
from stamps.atomicfile import PRIVATE, write_json_atomic
from stamps.config.errors import ConfigError
from stamps.config.model import CellConfig, ScalingConfig
from stamps.environment import CellInstance, Environment

GRAIN: Final = dt.timedelta(minutes=5)
INTERVAL: Final = "PT5M"  # the runbook's `--interval PT5M`
MAX_REPLICAS: Final = 300  # Container Apps' maximum replicas per app (also the config schema's bound)
STATE_VERSION: Final = 1

Point = tuple[dt.datetime, float]


# ------------------------------------------------------------------------------------------ readings


@dataclass(frozen=True)
class Trigger:
    key: str
    label: str
    unit: str
    up: float  # scale up above this
    quiet: float  # quiet below this
    needs_coverage: bool  # must have data across the quiet window to call it quiet


def triggers(sc: ScalingConfig) -> dict[str, Trigger]:
    below = sc.scale_down_below_percent
    return {t.key: t for t in (
        Trigger("cpu", "CPU", "%", sc.cpu_percent, below, True),
        Trigger("memory", "memory", "%", sc.memory_percent, below, True),
        Trigger("requests", "requests/replica/min", "", float(sc.requests_per_replica),
                sc.requests_per_replica * below / 100, False),  # no data = no requests
        Trigger("sqlCpu", "SQL CPU", "%", sc.cpu_percent, below, True),
        Trigger("sqlDtu", "SQL DTU", "%", sc.cpu_percent, below, True),
    )}


APP_KEYS: Final = ("cpu", "memory", "requests")
SQL_KEYS: Final = ("sqlCpu", "sqlDtu")


def dtu_model(sku: str) -> bool:
    """DTU service objectives (Basic, S*, P*) publish dtu_consumption_percent; vCore ones do not."""
    return sku == "Basic" or (sku[:1] in ("S", "P") and sku[1:].isdigit())


def edition(sku: str) -> str:
    if sku == "Basic":
        return "Basic"
    if dtu_model(sku):
        return {"S": "Standard", "P": "Premium"}[sku[0]]
    return sku.split("_", 1)[0]  # GP / BC / HS


def _points(series: Sequence[MetricSeries], start: dt.datetime, end: dt.datetime, *,
            none_as_zero: bool = False) -> list[Point]:
    """Points inside [start, end], oldest first; several series (dimension splits) merge by maximum."""
    merged: dict[dt.datetime, float] = {}
    for s in series:
        for p in s.points:
            if not start <= p.timestamp <= end:
                continue
            value = p.value if p.value is not None else (0.0 if none_as_zero else None)
            if value is not None:
                merged[p.timestamp] = max(value, merged.get(p.timestamp, value))
    return sorted(merged.items())


@dataclass
class InstanceReading:
    inst: CellInstance
    points: dict[str, list[Point]] = field(default_factory=dict)
    error: str | None = None
    missing: str | None = None  # why there is nothing to read (no stack output yet)

    def latest(self, key: str) -> Point | None:
        pts = self.points.get(key) or []
        return pts[-1] if pts else None


def read_instance(reader: Any, inst: CellInstance, ids: Mapping[str, Any], start: dt.datetime,
                  end: dt.datetime) -> InstanceReading:
    reading = InstanceReading(inst)
    app_id, db_id = ids.get("appId"), ids.get("databaseId")
    if not app_id or not db_id:
        reading.missing = f"the stack has no appId/databaseId output for {inst.key} (not deployed yet?)"
        return reading
    span = (start, end)
    try:
        avg = reader.series(str(app_id), [CONTAINER_APP_CPU_PERCENT, CONTAINER_APP_MEMORY_PERCENT,
                                          CONTAINER_APP_REPLICAS], Aggregation.AVERAGE, interval=INTERVAL,
                            timespan=span)
        total = reader.series(str(app_id), [CONTAINER_APP_REQUESTS], Aggregation.TOTAL, interval=INTERVAL,
                              timespan=span)
        sql_names = [SQL_DB_CPU_PERCENT] + ([SQL_DB_DTU_CONSUMPTION_PERCENT] if dtu_model(inst.cell.sql.sku) else [])
        sql = reader.series(str(db_id), sql_names, Aggregation.AVERAGE, interval=INTERVAL, timespan=span)
    except AzureReadError as err:
        reading.error = str(err)
        return reading
    replicas = dict(_points(avg[CONTAINER_APP_REPLICAS], start, end))
    # Without a replica count for an interval, the configured minimum is the best estimate (never 0).
    fallback = max(float(inst.replicas.min), 1.0)
    per_minute = GRAIN.total_seconds() / 60
    reading.points = {
        "cpu": _points(avg[CONTAINER_APP_CPU_PERCENT], start, end),
        "memory": _points(avg[CONTAINER_APP_MEMORY_PERCENT], start, end),
        "requests": [(ts, total_ / per_minute / max(replicas.get(ts, fallback), 1.0))
                     for ts, total_ in _points(total[CONTAINER_APP_REQUESTS], start, end, none_as_zero=True)],
        "sqlCpu": _points(sql[SQL_DB_CPU_PERCENT], start, end),
    }
    if SQL_DB_DTU_CONSUMPTION_PERCENT in sql:
        reading.points["sqlDtu"] = _points(sql[SQL_DB_DTU_CONSUMPTION_PERCENT], start, end)
    return reading


# ------------------------------------------------------------------------------------------ decisions


@dataclass
class Decision:
    cell: CellConfig
    readings: list[InstanceReading]
    action: str = "hold"  # scale-up | scale-down | hold | skip | error
    reason: str = ""
    replicas: tuple[int, int] = (0, 0)
    replicas_to: tuple[int, int] = (0, 0)
    sku: str = ""
    sku_to: str = ""

    @property
    def differs(self) -> bool:
        return self.replicas_to != self.replicas or self.sku_to != self.sku

    @property
    def changes(self) -> bool:
        return self.action in ("scale-up", "scale-down") and self.differs


def _evaluate_hot(readings: Sequence[InstanceReading], trig: Mapping[str, Trigger], keys: Sequence[str],
                  settled_after: dt.datetime | None) -> tuple[list[str], list[str]]:
    """(fresh reasons to scale up, reasons ignored because their interval began before the last change)."""
    fresh: list[str] = []
    stale: list[str] = []
    for r in readings:
        for key in keys:
            latest = r.latest(key)
            if latest is None or latest[1] <= trig[key].up:
                continue
            t = trig[key]
            what = f"{r.inst.key} {t.label} {latest[1]:.0f}{t.unit} > {t.up:.0f}{t.unit}"
            (stale if settled_after is not None and latest[0] < settled_after else fresh).append(what)
    return fresh, stale


def _quiet(readings: Sequence[InstanceReading], trig: Mapping[str, Trigger], start: dt.datetime,
           quiet_minutes: int) -> tuple[bool, str]:
    """Whether every metric stayed below its quiet bound over [start, now], with data covering it."""
    for r in readings:
        for key, pts in r.points.items():
            t = trig[key]
            loud = next(((ts, v) for ts, v in pts if v >= t.quiet), None)
            if loud is not None:
                return False, (f"not quiet: {r.inst.key} {t.label} {loud[1]:.0f}{t.unit} ≥ {t.quiet:.0f}{t.unit} "
                               f"at {loud[0]:%H:%M}")
            if t.needs_coverage and (not pts or pts[0][0] > start + GRAIN):
                since = f"since {pts[0][0]:%H:%M}" if pts else "at all"
                return False, f"not quiet yet: {r.inst.key} {t.label} has no data {since} (needs {quiet_minutes} min)"
    return True, f"quiet for {quiet_minutes} min"


def decide(cell: CellConfig, readings: list[InstanceReading], sc: ScalingConfig, record: Mapping[str, Any] | None,
           has_standby: bool, now: dt.datetime) -> Decision:
    d = Decision(cell, readings, replicas=(cell.replicas.min, cell.replicas.max), sku=cell.sql.sku)
    d.replicas_to, d.sku_to = d.replicas, d.sku
    if cell.isolation is not None:
        d.action, d.reason = "skip", "isolated: the program pins it to 0 replicas; not scaled"
        return d
    errors = [f"{r.inst.key}: {r.error}" for r in readings if r.error]
    if errors:
        d.action, d.reason = "error", "metrics unreadable, CELL skipped — " + "; ".join(errors)
        return d
    missing = [r.missing for r in readings if r.missing]
    if missing:
        d.action, d.reason = "skip", "; ".join(m for m in missing if m)
        return d
    if not any(r.points.get(k) for r in readings for k in (*APP_KEYS, *SQL_KEYS) if k != "requests"):
        d.reason = "no metric data in the window; nothing to decide on"
        return d

    trig = triggers(sc)
    last_change = parse_iso(record["lastChange"]) if record and record.get("lastChange") else None
    app_hot, app_stale = _evaluate_hot(readings, trig, APP_KEYS, last_change)
    sql_hot, sql_stale = _evaluate_hot(readings, trig, SQL_KEYS, last_change)
    if app_hot or sql_hot:
        notes: list[str] = []
        if app_hot:
            new_max = min(cell.replicas.max + sc.step, MAX_REPLICAS)
            new_min = min(cell.replicas.min + sc.step, new_max)
            d.replicas_to = (new_min, new_max)
            if d.replicas_to == d.replicas:
                notes.append(f"replicas already at the cap ({MAX_REPLICAS})")
        if sql_hot:
            d.sku_to, note = _sku_up(cell.sql.sku, sc.sql_ladder, has_standby)
            if note:
                notes.append(note)
        d.action = "scale-up" if d.differs else "hold"
        d.reason = "; ".join(app_hot + sql_hot + notes)
        return d
    if app_stale or sql_stale:
        d.reason = (f"settling after the change at {last_change:%H:%M}: ignoring readings from before it "
                    f"({'; '.join(app_stale + sql_stale)})")
        return d

    start = now - dt.timedelta(minutes=sc.quiet_minutes)
    quiet, why = _quiet(readings, trig, start, sc.quiet_minutes)
    if not quiet:
        d.reason = f"within thresholds; {why}"
        return d
    if last_change is not None and last_change > start:
        d.reason = f"quiet, but the last change ({last_change:%H:%M}) is under {sc.quiet_minutes} min old"
        return d
    baseline = (record or {}).get("baseline")
    if not baseline:
        d.reason = f"{why}; at the configured size (the floor: only automatic scale-ups are undone)"
        return d
    floor_min, floor_max = int(baseline["replicas"]["min"]), int(baseline["replicas"]["max"])
    d.replicas_to = (max(cell.replicas.min - sc.step, floor_min), max(cell.replicas.max - sc.step, floor_max))
    d.replicas_to = (min(d.replicas_to[0], d.replicas_to[1]), d.replicas_to[1])
    d.sku_to = _sku_down(cell.sql.sku, str(baseline["sqlSku"]), sc.sql_ladder)
    if d.differs:
        d.action, d.reason = "scale-down", f"{why}; floor {floor_min}-{floor_max} / {baseline['sqlSku']}"
    else:
        d.reason = f"{why}; at the baseline {floor_min}-{floor_max} / {baseline['sqlSku']}"
    return d


def _sku_up(sku: str, ladder: Sequence[str], has_standby: bool) -> tuple[str, str]:
    if sku not in ladder:
        return sku, f"SQL SKU {sku} is not on scaling.sqlLadder; not changed"
    idx = ladder.index(sku)
    if idx == len(ladder) - 1:
        return sku, f"SQL SKU {sku} is the top of scaling.sqlLadder"
    nxt = ladder[idx + 1]
    if has_standby and edition(nxt) != edition(sku):
        # Azure wants the geo-secondary upgraded first across editions, but one stack update changes the
        # primary first (the secondary depends on it): the apply step runs two updates, standby first.
        return nxt, (f"SQL {sku} → {nxt} crosses editions ({edition(sku)} → {edition(nxt)}): "
                     "the geo-secondary is upgraded first, in its own update")
    return nxt, ""


def _sku_down(sku: str, floor: str, ladder: Sequence[str]) -> str:
    if sku not in ladder or floor not in ladder or ladder.index(sku) <= ladder.index(floor):
        return sku
    return ladder[ladder.index(sku) - 1]  # downgrades go primary first: the stack's own order


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
