"""Point-in-time restore of a CELL's data (runbook: "Data Recovery"): SQL, blobs and the tenant directory.

- SQL (`--what sql`) is a stack update: a `restores[]` entry makes the program create a new database on the
  CELL's SQL server from the live one at the given time. The live database is never overwritten; switching
  the app to the restored copy, or copying rows back, is a deliberate second step after someone has checked it.
- Blobs (`--what blobs`) and the directory (`--what directory`) are Azure Resource Manager operations, not
  resources, run through ops.arm (DefaultAzureCredential, retried 429/5xx, long-running operations followed):
  - blobs: `POST .../storageAccounts/<account>/restoreBlobRanges` rewinds the CELL's (primary's, geo-redundant)
    account in place, every container, to the time (versioning + change feed + a restore policy, which the CELL
    component sets): learn.microsoft.com/rest/api/storagerp/storage-accounts/restore-blob-ranges. The account's
    restore policy is read first; blobs written since are rolled back.
  - directory: a Cosmos DB continuous-backup restore creates a NEW account (`PUT .../databaseAccounts/<new>` with
    createMode Restore from the live account's restorable instance), the live one is untouched:
    learn.microsoft.com/azure/cosmos-db/restore-account-continuous-backup. A re-run finds the new account and
    starts nothing.
  Both are started and reported with the URL Azure gives to follow them; `--wait` follows them to the end.
  `--dry-run` prints each call (method, path, body) and calls nothing.
Every window is checked before anything changes: a restore of half the data is worse than none.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from ops.playbooks.base import (
    EXIT_OK,
    Context,
    Failed,
    PlaybookError,
    audit,
    cell_path,
    cell_storage_id,
    find_cell,
    stack_subscription,
)

# Azure SQL keeps point-in-time backups for 1-35 days (7 by default); older times cannot be restored.
MAX_RETENTION_DAYS = 35
WHAT = ("sql", "blobs", "directory")
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
    calls = _azure_calls(ctx, env, args.cell, what, stamp, name) if {"blobs", "directory"} & set(what) else []
    if ctx.dry_run:
        if "sql" in what:
            _restore_sql(ctx, args, env, when, name)
        for call in calls:
            ctx.console.print(f"would restore {call.label}:\n  {call.describe()}", soft_wrap=True)
        return EXIT_OK
    arm = ctx.arm() if calls else None
    try:
        # Azure's side is read first (restore policy, restorable instance, an earlier run's account): a refusal
        # there stops the whole restore before the SQL update or any Azure change.
        skips = [call.prepare(ctx, arm, args.cell, stamp) for call in calls]
        if "sql" in what:
            _restore_sql(ctx, args, env, when, name)
        for call, skip in zip(calls, skips, strict=True):
            if skip:
                ctx.console.print(f"restore {call.label}: {skip}", soft_wrap=True)
            else:
                call.run(ctx, arm, args.cell, stamp, wait=args.wait)
    finally:
        close = getattr(arm, "close", None)
        if callable(close):
            close()
    return EXIT_OK


class _Call:
    """One ARM restore: what it restores, the request, and how to tell it is already done."""

    def __init__(self, label: str, method: str, path: str, api: str, body: dict[str, Any], final_state_via: str,
                 check: Any) -> None:
        self.label, self.method, self.path, self.api, self.body = label, method, path, api, body
        self.final_state_via = final_state_via
        self.check = check  # (arm) -> str | None: raises Failed when it cannot run, returns why it need not

    def describe(self) -> str:
        return f"{self.method} {self.path}?api-version={self.api}\n  {json.dumps(self.body, sort_keys=True)}"

    def prepare(self, ctx: Context, arm: Any, cell: str, stamp: str) -> str | None:
        """Azure's side, read before anything changes: why this restore needs no call, or None."""
        from ops.arm import ArmReadError

        try:
            return self.check(arm)  # type: ignore[no-any-return]
        except ArmReadError as err:
            raise Failed(f"restore {self.label}: {err}") from None

    def run(self, ctx: Context, arm: Any, cell: str, stamp: str, *, wait: bool) -> None:
        from ops.arm import ArmReadError

        try:
            op = arm.change(self.method, self.path, self.api, self.body, wait=wait,
                            final_state_via=self.final_state_via)
        except ArmReadError as err:  # ArmWriteError included: say which restore failed and why
            audit(ctx, "restore-data", "restore-failed", cell=cell, pointInTime=stamp, what=self.label,
                  error=str(err))
            raise Failed(f"restore {self.label}: {err}") from None
        failed = _failure(op.body)
        if failed:
            audit(ctx, "restore-data", "restore-failed", cell=cell, pointInTime=stamp, what=self.label, error=failed)
            raise Failed(f"restore {self.label}: Azure reports it failed: {failed}")
        done = op.status == "Succeeded"
        audit(ctx, "restore-data", "restore-completed" if done else "restore-started", cell=cell, pointInTime=stamp,
              what=self.label, path=self.path, monitor=op.monitor)
        ctx.console.print(f"restore {self.label}: " + ("done" if done else
                          f"started in Azure; follow it at {op.monitor} (or re-run with --wait)"), soft_wrap=True)


def _failure(body: dict[str, Any]) -> str:
    """A finished operation's own failure report (a blob restore answers status Failed with a reason)."""
    status = str(body.get("status") or (body.get("properties") or {}).get("provisioningState") or "")
    if status.lower() == "failed":
        return str(body.get("failureReason") or body.get("error") or "status Failed")
    return ""


def _azure_calls(ctx: Context, env: Any, cell: str, what: list[str], stamp: str, name: str) -> list[_Call]:
    from ops.arm import API_VERSIONS

    subscription = stack_subscription(ctx, "restoring blobs or the directory")
    n = env.naming
    inst = env.instance(cell)
    calls = []
    if "blobs" in what:
        account = cell_storage_id(env, subscription, cell)

        def restore_policy(arm: Any) -> str | None:
            props = arm.get(f"{account}/blobServices/default", API_VERSIONS["storage"]).get("properties") or {}
            policy = props.get("restorePolicy") or {}
            if not policy.get("enabled"):
                raise Failed(f"restore blobs: storage account {n.storage(inst.key)} has no point-in-time restore "
                             "policy (blobServices/default restorePolicy.enabled is not true)")
            return None

        calls.append(_Call(
            f"blobs of {n.storage(inst.key)} (rewinds the account in place; blobs written since are rolled back)",
            "POST", f"{account}/restoreBlobRanges", API_VERSIONS["storage"],
            # An empty start and end range is every container and blob (Restore-AzStorageBlobRange).
            {"timeToRestore": stamp, "blobRanges": [{"startRange": "", "endRange": ""}]},
            "location", restore_policy))
    if "directory" in what:
        home = env.primary_regions[0]
        live = n.cosmos()
        target = f"{live[:36]}-{name[:7]}"
        group = f"/subscriptions/{subscription}/resourceGroups/{n.global_group()}"
        target_id = f"{group}/providers/Microsoft.DocumentDB/databaseAccounts/{target}"
        restorable = f"/subscriptions/{subscription}/providers/Microsoft.DocumentDB/locations/{home}/" \
                     "restorableDatabaseAccounts"
        body = {
            "location": home, "kind": "GlobalDocumentDB", "tags": {"restored-from": live, "restored-to": stamp},
            "properties": {
                "databaseAccountOfferType": "Standard", "createMode": "Restore",
                "locations": [{"locationName": home, "failoverPriority": 0}],
                # restoreSource: the live account's restorable instance, found when the restore is prepared.
                "restoreParameters": {"restoreMode": "PointInTime", "restoreSource": "",
                                      "restoreTimestampInUtc": stamp},
                # The copy is as closed as the live account: Entra only, no public network, continuous backup.
                "disableLocalAuth": True, "publicNetworkAccess": "Disabled",
                "backupPolicy": {"type": "Continuous",
                                 "continuousModeProperties": {"tier": env.config.directory.backup_tier}},
            },
        }

        def source(arm: Any) -> str | None:
            from ops.arm import ArmReadError

            try:
                arm.get(target_id, API_VERSIONS["cosmos"])
                return f"account {target} exists already (an earlier run restored into it); nothing started"
            except ArmReadError as err:
                if not err.not_found:
                    raise
            accounts = [a for a in arm.list(restorable, API_VERSIONS["cosmos"])
                        if (a.get("properties") or {}).get("accountName") == live
                        and not (a.get("properties") or {}).get("deletionTime")]
            if not accounts:
                raise Failed(f"restore the tenant directory: no restorable instance of Cosmos DB account {live} in "
                             f"{home} (continuous backup must be on)")
            latest = max(accounts, key=lambda a: str((a.get("properties") or {}).get("creationTime") or ""))
            created = str((latest.get("properties") or {}).get("creationTime") or "")
            if created and created[:19] > stamp[:19]:
                raise Failed(f"restore the tenant directory: --to {stamp} is before account {live} was created "
                             f"({created})")
            body["properties"]["restoreParameters"]["restoreSource"] = str(latest["id"])  # type: ignore[index]
            return None

        calls.append(_Call(f"the tenant directory into new account {target} (the live one is untouched)",
                           "PUT", target_id, API_VERSIONS["cosmos"], body, "original-uri", source))
    return calls


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
    p = sub.add_parser("restore-data", help="point-in-time restore of a CELL's database, blobs and the directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cell", metavar="CELL", help="CELL name from stamps:cells")
    p.add_argument("--to", required=True, metavar="TIMESTAMP", help="UTC time, e.g. 2026-01-15T03:00:00Z")
    p.add_argument("--name", help="restore name (default: r<YYYYMMDDHHMM>)")
    p.add_argument("--what", default=",".join(WHAT),
                   help="what to restore: a comma-separated subset of sql,blobs,directory (default: all)")
    p.add_argument("--wait", action="store_true",
                   help="follow the blob and directory restores in Azure until they finish (they can take hours)")
    common(p)
    p.set_defaults(func=run)
