"""Tenant migration shared → dedicated (runbook: "Tenant Migration: Shared → Dedicated"), with its data.

A journaled state machine (ops.migration): provision the dedicated CELL (stack update) → bulk-copy the
tenant's rows → verify → freeze the tenant's writes (stack update: API Management answers writes with 423,
reads keep working) → copy the delta → verify again → switch routing (stack update of the tenant's CELL and
tier, and the Cosmos DB tenant directory record) → unfreeze → health check through the tenant's route.
Each step is recorded before and after it runs; a re-run after a crash resumes where it stopped. A failed
verification stops before the switch, leaves the source untouched and unfreezes the tenant.

Before anything is provisioned, a preflight connects to both databases, checks the drivers, discovers the
schema and refuses what cannot be moved (tables of other tenants' data the tenant's rows point at unless
declared `--shared-table`, untyped columns, text in numeric columns, rows whose parent the source lacks for the
tenant, a target that is the source under another name or holds another tenant's rows). A resume whose URLs
reach other databases than the journal recorded is refused (DatabasesChangedError, exit 4). The dedicated
CELL is reserved (the journal names it) under the stack lock.

Purging the tenant's rows from the shared database is `stamps-ops purge-source`, allowed only after the
retention period, against the databases the journal recorded (by the servers' own identity, never the URL
text), with a fresh exact verification and a row-by-row comparison inside the purge transaction.
`stamps-ops migrate-unfreeze` lifts a freeze whose unfreeze met another playbook's lock;
`stamps-ops migrate-abandon` gives up an unswitched migration and removes the tenant's rows from the target.

The stack lock is taken around each stack update only, so a long copy never blocks a failover; a second
migration of the same tenant is refused by the migration's own lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.markup import escape

from ops.migration.db import scrub
from ops.playbooks.base import (
    EXIT_OK,
    Context,
    Failed,
    PlaybookError,
    Refused,
    audit,
    tenant_path,
)
from ops.runner import RunnerError
from ops.stackconfig import StackLockedError
from ops.tenant_directory import tenant_record
from stamps.environment import Environment
from stamps.errors import clip
from stamps.placement import dedicated_cell_for

DEFAULT_HEALTH_URL = "https://{cells_host}/cells/{cell}/health"


def sql_url(database_id: str) -> str:
    """An Entra-only connection: the runner's managed identity, no password anywhere."""
    parts = database_id.strip("/").split("/")
    server, database = parts[parts.index("servers") + 1], parts[parts.index("databases") + 1]
    return (f"mssql+pyodbc://@{server}.database.windows.net:1433/{database}"
            "?driver=ODBC+Driver+18+for+SQL+Server&Authentication=ActiveDirectoryMsi&Encrypt=yes")


def _database_url(ctx: Context, env: Environment, cell: str, given: str | None, arg: str) -> str:
    if given:
        return given
    key = env.naming.cell_key(cell, next(c.region for c in env.cells if c.name == cell))
    info = (ctx.outputs().get("cells") or {}).get(key)
    if not info or not info.get("databaseId"):
        raise PlaybookError(f"{arg}: the stack has no database for CELL {cell!r} yet; pass {arg} explicitly")
    return sql_url(str(info["databaseId"]))


def journal_path(ctx: Context, tenant: str) -> Path:
    # One directory for every migration of the stack: the per-tenant lock lives beside the journal.
    return ctx.state_dir / "migrations" / f"{ctx.stack}-{tenant}.json"


class Migration:
    """The playbook's side of the state machine: the stack updates and checks only it can do."""

    def __init__(self, ctx: Context, args: argparse.Namespace, env: Environment, tenant: str, cell: str,
                 tier: str, source_cell: str) -> None:
        self.ctx, self.args, self.env = ctx, args, env
        self.tenant, self.cell, self.tier = tenant, cell, tier
        self.source_cell = source_cell  # from the journal on resume: after the switch routing names the new CELL

    def _update(self, title: str, edit: Any) -> None:
        self.ctx.apply(title, edit)  # takes the stack lock for this update only

    def provision(self, _step: Any) -> dict[str, Any]:
        cfg = self.env.config
        tenant = next(t for t in cfg.tenants if t.id == self.tenant)
        region = next(c.region for c in self.env.cells if c.name == self.source_cell)
        cell = dedicated_cell_for(cfg, tenant, region).model_copy(update={"name": self.cell})
        entry = cell.model_dump(by_alias=True, exclude_defaults=True, mode="json")
        entry.update({"name": cell.name, "region": cell.region, "model": "dedicated"})
        if self.cell not in {c.name for c in self.env.cells}:
            self._update(f"migrate {self.tenant}: provision dedicated CELL {self.cell}",
                         lambda stack: stack.append("stamps:cells", entry))
        return {"cell": self.cell, "region": region}

    def freeze(self, _step: Any) -> dict[str, Any]:
        self._update(f"migrate {self.tenant}: freeze writes (reads keep working)",
                     lambda stack: stack.set(f"{tenant_path(self.tenant)}.frozen", True))
        return {"frozen": True}

    def switch(self, _step: Any) -> dict[str, Any]:
        def edit(stack: Any) -> None:
            stack.set(f"{tenant_path(self.tenant)}.cell", self.cell)
            stack.set(f"{tenant_path(self.tenant)}.tier", self.tier)

        self._update(f"migrate {self.tenant}: route to {self.cell}", edit)
        region = next((c.region for c in self.env.cells if c.name == self.source_cell), "")
        record = tenant_record(self.tenant, self.cell, "dedicated", region, self.ctx.now())
        self.ctx.tenant_directory().upsert(record)
        return {"cell": self.cell, "tier": self.tier, "directory": record}

    def unfreeze(self, _step: Any) -> dict[str, Any]:
        unfreeze_tenant(self.ctx, self.tenant, self.args.unfreeze_attempts, self.args.unfreeze_wait)
        return {"frozen": False}

    def health_check(self, _step: Any) -> dict[str, Any]:
        url = self.args.health_url.format(cells_host=self.env.config.tls.cells_host_name, cell=self.cell,
                                          tenant=self.tenant)
        status = 0
        for attempt in range(1, self.args.health_attempts + 1):
            status = self.ctx.health(url)
            self.ctx.console.print(f"  health {url}: {status or 'unreachable'} (attempt {attempt})")
            if status == 200:
                return {"url": url, "status": status, "attempts": attempt}
            self.ctx.sleep(self.args.health_wait)
        raise Failed(f"the tenant's route {url} answered {status or 'nothing'}; routing already points at "
                     f"{self.cell} and writes go there, so it is NOT rolled back: investigate the CELL")

    def on_failure(self, step: Any, exc: BaseException) -> None:
        """Before the switch, a failure must not leave the tenant read-only: unfreeze it."""
        frozen = self.ctx.environment().config
        tenant = next(t for t in frozen.tenants if t.id == self.tenant)
        if tenant.frozen and tenant.cell == self.source_cell:
            detail = scrub(str(exc), self.args.source_url or "", self.args.target_url or "")
            self.ctx.console.print(f"[red]{step.step.value} failed[/]: {escape(detail)}; unfreezing "
                                   f"{self.tenant} (it keeps running on {self.source_cell}, its source rows "
                                   "untouched)")
            unfreeze_tenant(self.ctx, self.tenant, self.args.unfreeze_attempts, self.args.unfreeze_wait)


def unfreeze_command(ctx: Context, tenant: str) -> str:
    return f"stamps-ops migrate-unfreeze {tenant} --stack {ctx.stack} --project-dir {ctx.project_dir}"


def unfreeze_tenant(ctx: Context, tenant: str, attempts: int, wait: float) -> None:
    """Lift the write freeze; a stack lock held by another playbook is retried with backoff.

    If the lock is still held after ``attempts``, the tenant stays read-only: that is an outage for
    it, so this pages through the notifier and fails with the exact command that finishes the job.
    """
    delay = wait
    for attempt in range(1, attempts + 1):
        try:
            ctx.apply(f"unfreeze {tenant}'s writes",
                      lambda stack: stack.delete(f"{tenant_path(tenant)}.frozen", missing_ok=True))
            return
        except StackLockedError as err:
            ctx.console.print(f"[yellow]![/] unfreeze of {tenant}: {escape(str(err))} "
                              f"(attempt {attempt}/{attempts})")
            if attempt < attempts:
                ctx.sleep(delay)
                delay = min(delay * 2, 300.0)
            locked = err
    command = unfreeze_command(ctx, tenant)
    _page(ctx, f"tenant {tenant} is still frozen (read-only): the unfreeze could not take the stack lock",
          tenant=tenant, command=command, lock=str(locked))
    audit(ctx, "migrate", "unfreeze-failed", tenant=tenant, command=command)
    raise Failed(f"{tenant} is still FROZEN (writes answer 423): another playbook held the stack lock through "
                 f"{attempts} attempts ({locked}). Finish with:\n  {command}")


def _page(ctx: Context, summary: str, **details: Any) -> None:
    from ops.notify import Incident, Severity

    incident = Incident(summary=summary, severity=Severity.CRITICAL, component="tenant-migration",
                        dedup_key=f"stamps-{ctx.stack}-migrate-{details.get('tenant', '')}",
                        details={"stack": ctx.stack, "actor": ctx.actor, **details})
    try:
        with ctx.notifier() as notifier:
            report = notifier.notify(incident)
    except Exception as err:  # the page is best effort; the exit code and message still say it all
        ctx.console.print(f"[red]notify failed[/]: {escape(type(err).__name__)}: {escape(str(err)[:200])}")
        return
    for r in report.results:
        ctx.console.print(f"  notify {r.channel}: {'sent' if r.ok else 'FAILED'}{f' ({r.error})' if r.error else ''}")


def _read_journal(path: Path) -> dict[str, Any] | None:
    from ops.migration import MigrationError, MigrationJournal

    if not path.exists():
        return None
    try:
        return MigrationJournal.read(path)
    except MigrationError as err:
        raise Refused(str(err)) from None


def _reserve_cell(ctx: Context, tenant: str, cell: str) -> None:
    """Under the stack lock: no other tenant's migration may target ``cell`` (a dedicated CELL holds one)."""
    from ops.migration import MigrationError, MigrationJournal

    for other in sorted((ctx.state_dir / "migrations").glob(f"{ctx.stack}-*.json")):
        try:
            data = MigrationJournal.read(other)
        except MigrationError:
            continue  # a damaged journal of another tenant is that migration's problem, reported there
        if data.get("tenant_id") != tenant and data.get("target_cell") == cell:
            raise Refused(f"--cell: CELL {cell!r} is reserved by the migration of tenant {data['tenant_id']!r} "
                          f"(journal {other}); a dedicated CELL holds one tenant")


DEFAULT_TARGET_DRIVER = "mssql+pyodbc://@check/driver?driver=ODBC+Driver+18+for+SQL+Server"


def preflight(mover: Any | None, source_url: str, target_url: str | None, tenant: str, args: argparse.Namespace,
              ) -> Any:
    """Connect to both databases, check drivers, discover and check the schema — before provisioning.

    Returns the source-side plan check's mover (or the given one). Raises MigrationError subclasses.
    """
    from ops.migration import TenantDataMover, as_engine

    if target_url is None:
        as_engine(DEFAULT_TARGET_DRIVER).dispose()  # the driver the stack's Azure SQL target will need
    probe = mover or TenantDataMover(source_url, target_url or "sqlite://", tenant, **_mover_options(args))
    probe.preflight(target=target_url is not None)
    return probe


def _mover_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"tenant_column": args.tenant_column, "batch_size": args.batch_size, "progress": None,
            "shared_tables": tuple(args.shared_table or ())}


def _database_error(err: BaseException, args: argparse.Namespace) -> str:
    """A driver error as one scrubbed line: drivers echo connection strings, and their tracebacks are noise."""
    if isinstance(err, sa.exc.NoSuchTableError):  # reflection: its text is the bare table name
        return f"no such table: {clip(err)}"
    orig = getattr(err, "orig", None) or err
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return scrub(f"{type(orig).__name__}: {first}", args.source_url or "", args.target_url or "")


DATABASE_ERRORS: tuple[type[BaseException], ...] = (sa.exc.DBAPIError, sa.exc.NoSuchTableError, sqlite3.Error)


# The migrate options' defaults: the parser's, and what a printed re-run command leaves out.
DEFAULTS: dict[str, Any] = {"tenant_column": "tenant_id", "batch_size": None, "health_url": DEFAULT_HEALTH_URL,
                            "health_attempts": 5, "health_wait": 30.0, "unfreeze_attempts": 6, "unfreeze_wait": 5.0}


def rerun_command(ctx: Context, args: argparse.Namespace) -> str:
    """The command that re-runs (and so resumes) this migration; URL passwords are shown as ***."""
    from ops.migration.db import redact_url

    parts = ["stamps-ops", "migrate", args.tenant, "--to", args.to, "--stack", ctx.stack,
             "--project-dir", str(ctx.project_dir)]
    # Every option this migration was given a non-default value for (--restart-from is not repeated:
    # the re-run resumes from the journal).
    for dest in ("cell", "tier", "source_url", "target_url", *DEFAULTS):
        value = getattr(args, dest)
        if value is not None and value != DEFAULTS.get(dest):
            text = redact_url(value) if dest in ("source_url", "target_url") else str(value)
            parts += ["--" + dest.replace("_", "-"), shlex.quote(text)]
    for table in args.shared_table or ():
        parts += ["--shared-table", shlex.quote(table)]
    return " ".join(parts)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from ops.migration import (
        DatabasesChangedError,
        DiscoveryError,
        MigrationError,
        MigrationLockedError,
        PreflightError,
    )

    try:
        return _run(ctx, args)
    except MigrationLockedError as err:
        audit(ctx, "migrate", "refused", tenant=args.tenant, error=str(err))
        raise Refused(str(err)) from None
    except DatabasesChangedError as err:
        # Checked before any step ran: the recorded databases keep their state, the others were not written.
        message = scrub(str(err), args.source_url or "", args.target_url or "")
        audit(ctx, "migrate", "refused", tenant=args.tenant, error=message)
        raise Refused(f"migration of {args.tenant} refused: {message}") from None
    except StackLockedError as err:
        # Another playbook changes the stack; the migration stopped before its next stack update and its
        # journal (if any) says where: the same command resumes once that playbook is done.
        audit(ctx, "migrate", "refused", tenant=args.tenant, error=str(err))
        raise Refused(f"migration of {args.tenant} waits for the stack lock: {err}\nNothing further was changed. "
                      f"Once that playbook has finished, run:\n  {rerun_command(ctx, args)}") from None
    except (PreflightError, DiscoveryError) as err:
        # Found before the first step ran: nothing was provisioned or copied for this attempt.
        message = scrub(str(err), args.source_url or "", args.target_url or "")
        audit(ctx, "migrate", "failed", tenant=args.tenant, error=message)
        raise Refused(f"migration of {args.tenant} refused before it started: {message}") from None
    except MigrationError as err:
        message = scrub(str(err), args.source_url or "", args.target_url or "")
        audit(ctx, "migrate", "failed", tenant=args.tenant, error=message)
        raise Failed(f"migration of {args.tenant} stopped: {message}. The journal "
                     f"{journal_path(ctx, args.tenant)} records where; fix the cause and re-run the same command "
                     "(it resumes, and redoes a failed verification's copy)") from None
    except (PlaybookError, RunnerError) as err:
        audit(ctx, "migrate", "failed", tenant=args.tenant,
              error=scrub(str(err), args.source_url or "", args.target_url or ""))
        raise
    except DATABASE_ERRORS as err:
        # Outside the steps (the runner turns theirs into MigrationError): preflight queries, reflection.
        message = _database_error(err, args)
        audit(ctx, "migrate", "failed", tenant=args.tenant, error=message)
        raise Failed(f"migration of {args.tenant} stopped by a database error: {message}. Fix the cause and run:\n"
                     f"  {rerun_command(ctx, args)}") from None


def _run(ctx: Context, args: argparse.Namespace) -> int:
    from ops.migration import PlaybookHooks, Step, TenantDataMover, open_migration

    env = ctx.environment()
    tenants = {t.id: t for t in env.config.tenants}
    if args.tenant not in tenants:
        raise PlaybookError(f"TENANT: no tenant {args.tenant!r}; known: {', '.join(sorted(tenants))}")
    if args.to != "dedicated":
        raise PlaybookError("--to: only shared → dedicated migrations exist; valid: dedicated")
    dedicated_tiers = [t.name for t in env.config.tiers if t.model == "dedicated"]
    tier = args.tier or (dedicated_tiers[0] if dedicated_tiers else None)
    if tier not in dedicated_tiers:
        raise PlaybookError(f"--tier: {tier!r} is not a dedicated tier; valid: {', '.join(dedicated_tiers)}")
    path = journal_path(ctx, args.tenant)
    recorded = _read_journal(path)
    current = env.tenant_cells[args.tenant]
    source_cell = (recorded or {}).get("source_cell") or current
    cell = args.cell or (recorded or {}).get("target_cell") or args.tenant
    if recorded and recorded.get("target_cell") not in (None, cell):
        raise Refused(f"--cell: this migration of {args.tenant} targets CELL {recorded['target_cell']!r} "
                      f"(journal {path}), not {cell!r}")
    if current == cell and recorded is None:
        ctx.console.print(f"[green]✓[/] {args.tenant} already runs on CELL {cell}: nothing to migrate")
        return EXIT_OK
    source_model = next(c.model for c in env.cells if c.name == source_cell)
    if source_model != "shared":
        raise Refused(f"TENANT: {args.tenant} is on {source_model} CELL {source_cell!r}; only shared tenants migrate")
    if cell in {c.name for c in env.cells} and cell != current and any(
            env.tenant_cells[t] == cell for t in tenants):
        raise Refused(f"--cell: CELL {cell!r} already serves a tenant; a dedicated CELL holds one")

    migration = Migration(ctx, args, env, args.tenant, cell, tier, source_cell)
    if ctx.dry_run:
        ctx.console.print(f"migrate {args.tenant}: {source_cell} (shared) → {cell} (dedicated, tier {tier}); "
                          "steps: provision → bulk_copy → verify → freeze → delta_copy → verify_final → switch → "
                          "unfreeze → health_check")
        migration.provision(None)
        return EXIT_OK

    source = _database_url(ctx, env, source_cell, args.source_url, "--source-url")
    opts = _mover_options(args)
    mover = TenantDataMover(source, args.target_url, args.tenant, **opts) if args.target_url else None
    # Preflight: everything that can be checked before the stack changes, so a migration that cannot
    # work never leaves a dedicated CELL behind.
    probe = preflight(mover, source, args.target_url, args.tenant, args)
    hooks = PlaybookHooks(provision=migration.provision, freeze=migration.freeze, switch=migration.switch,
                          unfreeze=migration.unfreeze, health_check=migration.health_check,
                          on_failure=migration.on_failure)
    # The CELL is reserved (the journal names it) under the stack lock, before anything is provisioned.
    with ctx.locked():
        _reserve_cell(ctx, args.tenant, cell)
        if mover is None:
            # The dedicated database exists only after provisioning: provision first, then read its address.
            migration.provision(None)
            env = ctx.environment()
            mover = TenantDataMover(source, _database_url(ctx, env, cell, None, "--target-url"), args.tenant, **opts)
            mover.preflight(target=True)
        runner = open_migration(path, mover, hooks, cells=(source_cell, cell))
    if probe is not mover:
        probe.source.dispose()
    with runner.journal:
        # Which databases first: a --restart-from against other databases must not reset the journal.
        runner.bind_databases()
        if args.restart_from:
            # Redoing the delta means freezing again: a failure before it unfroze the tenant.
            runner.journal.reset_from(Step.FREEZE if args.restart_from == "delta_copy" else Step(args.restart_from))
        runner.run()
    audit(ctx, "migrate", "migrated", tenant=args.tenant, source=source_cell, target=cell)
    ctx.console.print(f"[green]✓[/] {args.tenant} migrated from {source_cell} to {cell}; purge its rows from "
                      f"{source_cell} after the retention period with `stamps-ops purge-source {args.tenant}`")
    return EXIT_OK


def purge(ctx: Context, args: argparse.Namespace) -> int:
    from ops.migration import MigrationError

    try:
        return _purge(ctx, args)
    except MigrationError as err:
        message = scrub(str(err), args.source_url or "", args.target_url or "")
        audit(ctx, "purge-source", "refused", tenant=args.tenant, error=message)
        raise Refused(f"purge refused, nothing deleted: {message}") from None
    except DATABASE_ERRORS as err:
        # E.g. a target table dropped or renamed since the migration: the fresh verification cannot read it.
        message = _database_error(err, args)
        audit(ctx, "purge-source", "failed", tenant=args.tenant, error=message)
        raise Failed(f"purge of {args.tenant} stopped by a database error: {message}. The deletion is one "
                     "transaction, so the shared database holds all of the tenant's rows or none of them. Fix the "
                     f"cause (source and target tables intact and reachable), then run `stamps-ops purge-source "
                     f"{args.tenant}` again: it verifies afresh before deleting") from None


def _purge(ctx: Context, args: argparse.Namespace) -> int:
    from ops.migration import DamagedJournalError, MigrationJournal, Step, TenantDataMover
    from ops.migration.identity import DatabaseIdentity

    path = journal_path(ctx, args.tenant)
    try:
        data = MigrationJournal.read(path) if path.exists() else None
    except DamagedJournalError as err:
        # Only the journal proves which databases hold the copy; a new migration of a switched tenant
        # would not recreate that record, so the one way forward is the journal itself.
        raise DamagedJournalError(
            str(path), err.problem, "the purge needs its record of the databases the migration used: restore "
            f"the journal from a backup, then run `stamps-ops purge-source {args.tenant}` again; the tenant's "
            "source rows stay until then"
        ) from None
    if data is None:
        raise PlaybookError(f"TENANT: no migration journal for {args.tenant!r} at {path}")
    done = data["steps"][Step.DONE.value]
    if done["status"] != "done":
        raise Refused(f"the migration of {args.tenant} has not finished (at {data['current_step']})")
    try:
        finished = dt.datetime.fromisoformat(str(done["finished_at"]).replace("Z", "+00:00"))
    except ValueError:
        raise Refused(f"journal {path} is damaged: step done has no valid finished_at") from None
    ready = finished + dt.timedelta(days=args.retention_days)
    if ctx.now() < ready:
        raise Refused(f"retention: {args.tenant}'s source rows are kept until {ready:%Y-%m-%d %H:%M}Z "
                      f"({args.retention_days} days after the switch)")
    recorded = (data.get("source_identity"), data.get("target_identity"))
    if not all(recorded):
        raise Refused(f"journal {path} does not record which databases the migration used (written by an older "
                      "version): the target cannot be proven to be the migrated copy; nothing deleted")
    # The journal's own URLs by default (they carry no password; pass the URLs when they need one).
    source = args.source_url or data.get("source") or ""
    target = args.target_url or data.get("target") or ""
    mover = TenantDataMover(source, target, args.tenant, tenant_column=data.get("tenant_column", args.tenant_column),
                            progress=None, shared_tables=_recorded_shared(data))
    if ctx.dry_run:
        # Every check the purge makes, reading only (the journal is not locked: locking writes), so the dry run
        # says what would be deleted — or why nothing would be.
        try:
            recorded_ids = (DatabaseIdentity.parse(str(recorded[0])), DatabaseIdentity.parse(str(recorded[1])))
            mover.identities_match(recorded_ids)
            would = mover.purge_preview(mover.verify(), expected=recorded_ids)
        finally:
            mover.source.dispose()
            mover.target.dispose()
        tables = ", ".join(f"{name} {count}" for name, count in would.items())
        ctx.console.print(f"(dry run) {args.tenant}'s rows match the target exactly; a purge would delete "
                          f"{sum(would.values())} rows from the shared database ({tables})")
        return EXIT_OK
    with MigrationJournal.open(path, tenant_id=args.tenant) as journal:  # no migration of the tenant meanwhile
        expected = journal.identities()
        assert expected is not None
        try:
            # Who is who first (before reading a row), then a fresh exact verification, then the purge,
            # which checks identities again inside its transaction and compares every row it deletes.
            mover.identities_match(expected)
            report = mover.verify()
            deleted = mover.purge_source(report, expected=expected)
        finally:
            mover.source.dispose()
            mover.target.dispose()
    audit(ctx, "purge-source", "purged", tenant=args.tenant, rows=deleted)
    ctx.console.print(f"[green]✓[/] purged {sum(deleted.values())} rows of {args.tenant} from the shared database")
    return EXIT_OK


def _recorded_shared(data: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(t["name"]) for t in data.get("plan") or () if t.get("kind") == "reference")


def abandon(ctx: Context, args: argparse.Namespace) -> int:
    """Give up a migration that has not switched: unfreeze, delete the tenant's rows from the target,
    release the CELL reservation (the journal is kept aside, renamed)."""
    from ops.migration import MigrationError, MigrationJournal, Step, TenantDataMover

    path = journal_path(ctx, args.tenant)
    data = _read_journal(path)
    if data is None:
        raise PlaybookError(f"TENANT: no migration journal for {args.tenant!r} at {path}")
    if data["steps"][Step.SWITCH.value]["status"] == "done":
        raise Refused(f"{args.tenant}'s routing already points at {data.get('target_cell')}: a switched migration "
                      "is finished with `stamps-ops migrate`, not abandoned")
    if ctx.dry_run:
        ctx.console.print(f"(dry run) would unfreeze {args.tenant} and delete its rows from {data.get('target')}")
        return EXIT_OK
    source = args.source_url or data.get("source") or ""
    target = args.target_url or data.get("target") or ""
    try:
        with MigrationJournal.open(path, tenant_id=args.tenant) as journal:
            env = ctx.environment()
            if next(t for t in env.config.tenants if t.id == args.tenant).frozen:
                unfreeze_tenant(ctx, args.tenant, args.unfreeze_attempts, args.unfreeze_wait)
            mover = TenantDataMover(source, target, args.tenant,
                                    tenant_column=data.get("tenant_column", "tenant_id"), progress=None,
                                    shared_tables=_recorded_shared(data))
            try:
                deleted = mover.clear_target(journal.identities())
            finally:
                mover.source.dispose()
                mover.target.dispose()
            aside = path.with_name(f"{path.name}.abandoned-{ctx.now():%Y%m%dT%H%M%S}")
            path.rename(aside)
    except MigrationError as err:
        message = scrub(str(err), source, target)
        audit(ctx, "migrate", "abandon-failed", tenant=args.tenant, error=message)
        raise Refused(f"abandon refused: {message}") from None
    except DATABASE_ERRORS as err:
        message = _database_error(err, args)
        audit(ctx, "migrate", "abandon-failed", tenant=args.tenant, error=message)
        # The target's rows go in batches: some may be gone. The journal stays, so the same command finishes.
        raise Failed(f"abandon of {args.tenant} stopped by a database error: {message}. The journal is kept; fix "
                     f"the cause and run `stamps-ops migrate-abandon {args.tenant}` again to finish") from None
    audit(ctx, "migrate", "abandoned", tenant=args.tenant, cell=data.get("target_cell"), rows=deleted)
    ctx.console.print(f"[green]✓[/] abandoned {args.tenant}'s migration: {sum(deleted.values())} rows deleted from "
                      f"the target, CELL {data.get('target_cell')} released (still in the stack; remove it there "
                      f"if unused); journal kept as {aside}")
    return EXIT_OK


def unfreeze(ctx: Context, args: argparse.Namespace) -> int:
    unfreeze_tenant(ctx, args.tenant, args.unfreeze_attempts, args.unfreeze_wait)
    audit(ctx, "migrate", "unfrozen", tenant=args.tenant)
    ctx.console.print(f"[green]✓[/] {args.tenant}'s writes are unfrozen")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="move a tenant from a shared to a dedicated CELL, with its data",
                       description=__doc__)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--to", required=True, choices=["dedicated"], help="target tenancy model")
    p.add_argument("--cell", help="dedicated CELL name (default: the tenant id)")
    p.add_argument("--tier", help="dedicated tier for the tenant (default: the first dedicated tier)")
    p.add_argument("--source-url", type=database_url,
                   help="SQLAlchemy URL of the shared database (default: from stack outputs)")
    p.add_argument("--target-url", type=database_url,
                   help="SQLAlchemy URL of the dedicated database (default: from stack outputs)")
    p.add_argument("--tenant-column", default=DEFAULTS["tenant_column"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help="rows per committed batch (default: 20,000 between SQLite files, 5,000 otherwise)")
    p.add_argument("--health-url", default=DEFAULTS["health_url"],
                   help="the tenant's route to check after the switch: {cells_host}, {cell}, {tenant}")
    p.add_argument("--health-attempts", type=int, default=DEFAULTS["health_attempts"])
    p.add_argument("--health-wait", type=float, default=DEFAULTS["health_wait"])
    p.add_argument("--restart-from", choices=["bulk_copy", "delta_copy"],
                   help="redo the steps from here (a plain re-run already redoes a failed verification's copy)")
    p.add_argument("--shared-table", action="append", metavar="TABLE",
                   help="a table without the tenant column that is shared reference data (e.g. currencies): "
                        "copied whole into the dedicated database. Repeat per table; any other such table the "
                        "tenant's rows reference is refused")
    _unfreeze_options(p)
    common(p)
    p.set_defaults(func=run, lock_stack=False)

    p = sub.add_parser("purge-source", help="delete a migrated tenant's rows from the shared database",
                       description=__doc__)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--source-url", type=database_url, help="default: the URL the migration journal recorded")
    p.add_argument("--target-url", type=database_url,
                   help="default: the URL the migration journal recorded; must reach the same database the "
                        "migration copied into")
    p.add_argument("--tenant-column", default=DEFAULTS["tenant_column"])
    p.add_argument("--retention-days", type=int, default=7)
    common(p)
    p.set_defaults(func=purge)

    p = sub.add_parser("migrate-abandon", help="give up an unswitched migration: unfreeze, delete the tenant's "
                       "rows from the target, release the CELL", description=__doc__)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--source-url", type=database_url, help="default: the URL the migration journal recorded")
    p.add_argument("--target-url", type=database_url, help="default: the URL the migration journal recorded")
    _unfreeze_options(p)
    common(p)
    p.set_defaults(func=abandon, lock_stack=False)

    p = sub.add_parser("migrate-unfreeze", help="lift a migration's write freeze (when its unfreeze met a lock)",
                       description=__doc__)
    p.add_argument("tenant", metavar="TENANT")
    _unfreeze_options(p)
    common(p)
    p.set_defaults(func=unfreeze, lock_stack=False)


def database_url(text: str) -> str:
    """`--source-url`/`--target-url`: a SQLAlchemy URL of a dialect SQLAlchemy has; anything else is refused by
    the parser (exit 2, naming the argument), before a journal, a lock or the stack is touched."""
    import sqlalchemy as sa

    from ops.migration.db import redact_url

    try:
        sa.make_url(text).get_dialect()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as err:
        raise argparse.ArgumentTypeError(
            f"{clip(redact_url(text), 120)!r} is not a database URL ({type(err).__name__}: {clip(err, 120)}); valid: "
            "a SQLAlchemy URL such as sqlite:///shared.db, postgresql+psycopg2://user@host/db or "
            "mssql+pyodbc://@server.database.windows.net/db?driver=ODBC+Driver+18+for+SQL+Server") from None
    return text


def _unfreeze_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unfreeze-attempts", type=int, default=DEFAULTS["unfreeze_attempts"],
                   help="tries to take the stack lock for the unfreeze (backoff doubles from --unfreeze-wait)")
    p.add_argument("--unfreeze-wait", type=float, default=DEFAULTS["unfreeze_wait"])
