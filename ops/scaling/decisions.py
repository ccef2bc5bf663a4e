"""Scaling decisions: from the readings of a CELL's serving instances and its small record (baseline, last
change) to scale up, scale down, hold, skip or error, with the reason shown to the operator. Hysteresis comes
from the metric series over the quiet window, never from a counter kept between runs (see ops.playbooks.scale)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ops.reports import parse_iso
from ops.scaling.readings import APP_KEYS, GRAIN, SQL_KEYS, InstanceReading, Trigger, triggers
from stamps.config.model import CellConfig, ScalingConfig
from stamps.config.sql_skus import sku_down, sku_up

MAX_REPLICAS: Final = 300  # Container Apps' maximum replicas per app (also the config schema's bound)


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
            d.sku_to, note = sku_up(cell.sql.sku, sc.sql_ladder, has_standby)
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
    d.sku_to = sku_down(cell.sql.sku, str(baseline["sqlSku"]), sc.sql_ladder)
    if d.differs:
        d.action, d.reason = "scale-down", f"{why}; floor {floor_min}-{floor_max} / {baseline['sqlSku']}"
    else:
        d.reason = f"{why}; at the baseline {floor_min}-{floor_max} / {baseline['sqlSku']}"
    return d

