"""Point-in-time restore of a CELL's data (runbook: "Data Recovery"): SQL, blobs and the tenant directory.

- SQL (`--what sql`) is a stack update: a `restores[]` entry makes the program create a new database on the
  CELL's SQL server from the live one at the given time. The live database is never overwritten; switching
  the app to the restored copy, or copying rows back, is a deliberate second step after someone has checked it.
- Blobs (`--what blobs`) and the directory (`--what directory`) are Azure calls, not resources: blob
  point-in-time restore rewinds the CELL's storage account in place (versioning + change feed + a restore
  policy, which the CELL component sets), and a Cosmos DB continuous-backup restore creates a new account.
  The playbook checks the time against each retention window and prints the exact documented command with
  the stack's resource names (in a dry run too); an operator runs it after reading what it overwrites.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from ops.playbooks.base import EXIT_OK, Context, PlaybookError, audit, cell_path, find_cell

# Azure SQL keeps point-in-time backups for 1-35 days (7 by default); older times cannot be restored.
MAX_RETENTION_DAYS = 35
WHAT = ("sql", "blobs", "directory")
# Blob restore: az storage blob restore (learn.microsoft.com/azure/storage/blobs/point-in-time-restore-manage).
# Directory: az cosmosdb restore, into a new account
# (https://learn.microsoft.com/azure/cosmos-db/restore-account-continuous-backup).
DIRECTORY_DAYS = {"Continuous7Days": 7, "Continuous30Days": 30}


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


def _what(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in WHAT]
    if not parts or bad:
        raise PlaybookError(f"--what: {text!r}; give a comma-separated subset of {', '.join(WHAT)}")
    return parts


def run(ctx: Context, args: argparse.Namespace) -> int:
    from stamps.components.cell import BLOB_RESTORE_DAYS

    env = ctx.environment()
    find_cell(env, args.cell)
    what = _what(args.what)
    now = ctx.now()
    when = parse_time(args.to, now)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Every window is checked before anything changes: a restore of half the data is worse than none.
    for part, days in (("blobs", BLOB_RESTORE_DAYS), ("directory", DIRECTORY_DAYS[env.config.directory.backup_tier])):
        if part in what and now - when > dt.timedelta(days=days):
            raise PlaybookError(f"--to: {args.to} is older than the {days}-day {part} restore window; restore "
                                f"--what {','.join(w for w in what if w != part)} or pick a later time")
    name = args.name or "r" + when.strftime("%Y%m%d%H%M")
    if "sql" in what:
        _restore_sql(ctx, args, env, when, name)
    inst = env.instance(args.cell)
    n = env.naming
    calls = []
    if "blobs" in what:
        calls.append(("blobs (rewinds the account in place; blobs written since are rolled back)",
                      f"az storage blob restore --account-name {n.storage(inst.key)} --resource-group "
                      f"{n.cell_group(inst.key)} --time-to-restore {stamp}"))
    if "directory" in what:
        calls.append(("the tenant directory (into a new account; the live one is untouched)",
                      f"az cosmosdb restore --account-name {n.cosmos()} --resource-group {n.global_group()} "
                      f"--target-database-account-name {n.cosmos()[:36]}-{name[:7]} --restore-timestamp {stamp} "
                      f"--location {env.primary_regions[0]}"))
    for label, command in calls:
        ctx.console.print(f"restore {label}:\n  {command}", soft_wrap=True)
    if calls:
        audit(ctx, "restore-data", "restore-commands", cell=args.cell, pointInTime=stamp,
              commands=[c for _, c in calls])
    return EXIT_OK


def _restore_sql(ctx: Context, args: argparse.Namespace, env: Any, when: dt.datetime, name: str) -> None:
    entry = {"name": name, "pointInTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
    existing = next(c for c in env.cells if c.name == args.cell).restores
    clash = next((r for r in existing if r.name == name and r.point_in_time != entry["pointInTime"]), None)
    if clash is not None:
        raise PlaybookError(f"--name: restore {name!r} already exists for {clash.point_in_time}; pick another name")
    result = ctx.apply(f"restore CELL {args.cell}'s database to {entry['pointInTime']} as {name}",
                       lambda cfg: cfg.append(f"{cell_path(args.cell)}.restores", entry))
    if result is not None:
        audit(ctx, "restore-data", "restore-created", cell=args.cell, **entry)


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("restore-data", help="point-in-time restore of a CELL database into a new database",
                       description=__doc__)
    p.add_argument("cell", metavar="CELL", help="CELL name from stamps:cells")
    p.add_argument("--to", required=True, metavar="TIMESTAMP", help="UTC time, e.g. 2026-01-15T03:00:00Z")
    p.add_argument("--name", help="restore name (default: r<YYYYMMDDHHMM>)")
    p.add_argument("--what", default=",".join(WHAT),
                   help="what to restore: a comma-separated subset of sql,blobs,directory (default: all)")
    common(p)
    p.set_defaults(func=run)
