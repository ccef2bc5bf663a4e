"""Point-in-time restore of a CELL's database (runbook: "Data Recovery").

The restore is a stack update: a `restores[]` entry makes the program create a new database on the CELL's
SQL server from the live one at the given time. The live database is never overwritten; switching the app
to the restored copy, or copying rows back, is a deliberate second step after someone has checked it.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from ops.playbooks.base import EXIT_OK, Context, PlaybookError, audit, cell_path, find_cell

# Azure SQL keeps point-in-time backups for 1-35 days (7 by default); older times cannot be restored.
MAX_RETENTION_DAYS = 35


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PlaybookError(f"--to: {text!r} is not an ISO 8601 time like 2026-01-15T03:00:00Z") from None
    if when.tzinfo is None:
        raise PlaybookError(f"--to: {text!r} has no time zone; give UTC like 2026-01-15T03:00:00Z")
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    if when > now:
        raise PlaybookError(f"--to: {text} is in the future")
    if now - when > dt.timedelta(days=MAX_RETENTION_DAYS):
        raise PlaybookError(f"--to: {text} is older than the {MAX_RETENTION_DAYS}-day point-in-time retention")
    return when


def run(ctx: Context, args: argparse.Namespace) -> int:
    env = ctx.environment()
    find_cell(env, args.cell)
    when = parse_time(args.to, ctx.now())
    name = args.name or "r" + when.strftime("%Y%m%d%H%M")
    entry = {"name": name, "pointInTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    existing = next(c for c in env.cells if c.name == args.cell).restores
    clash = next((r for r in existing if r.name == name and r.point_in_time != entry["pointInTime"]), None)
    if clash is not None:
        raise PlaybookError(f"--name: restore {name!r} already exists for {clash.point_in_time}; pick another name")
    result = ctx.apply(f"restore CELL {args.cell}'s database to {entry['pointInTime']} as {name}",
                       lambda cfg: cfg.append(f"{cell_path(args.cell)}.restores", entry))
    if result is not None:
        audit(ctx, "restore-data", "restore-created", cell=args.cell, **entry)
    return EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("restore-data", help="point-in-time restore of a CELL database into a new database",
                       description=__doc__)
    p.add_argument("cell", metavar="CELL", help="CELL name from stamps:cells")
    p.add_argument("--to", required=True, metavar="TIMESTAMP", help="UTC time, e.g. 2026-01-15T03:00:00Z")
    p.add_argument("--name", help="restore name (default: r<YYYYMMDDHHMM>)")
    common(p)
    p.set_defaults(func=run)
