"""Scaling readings: the Azure Monitor series of a CELL's serving instance (Container App CPU, memory, requests
per replica per minute, replicas; the database's CPU and, on DTU objectives, DTU) at a 5-minute grain, and the
triggers they are compared with (`stamps:scaling`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ops.azure_monitor import (
    CONTAINER_APP_CPU_PERCENT,
    CONTAINER_APP_MEMORY_PERCENT,
    CONTAINER_APP_REPLICAS,
    CONTAINER_APP_REQUESTS,
    SQL_DB_CPU_PERCENT,
    SQL_DB_DTU_CONSUMPTION_PERCENT,
    Aggregation,
    AzureReadError,
    MetricSeries,
)
from stamps.config.model import ScalingConfig
from stamps.config.sql_skus import dtu_model
from stamps.environment import CellInstance

GRAIN: Final = dt.timedelta(minutes=5)
INTERVAL: Final = "PT5M"  # the runbook's `--interval PT5M`

Point = tuple[dt.datetime, float]


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
