"""Tenant migration shared → dedicated (runbook: "Tenant Migration: Shared → Dedicated"), with its data.

A journaled state machine (ops.migration): provision the dedicated CELL (stack update) → bulk-copy the
tenant's rows → verify → freeze the tenant's writes (stack update: API Management answers writes with 423,
reads keep working) → copy the delta → verify again → switch routing (stack update of the tenant's CELL and
tier, and the Cosmos DB tenant directory record) → unfreeze → health check through the tenant's route.
Each step is recorded before and after it runs; a re-run after a crash resumes where it stopped. A failed
verification stops before the switch, leaves the source untouched and unfreezes the tenant.

Purging the tenant's rows from the shared database is `stamps-ops purge-source`, allowed only after the
retention period and a fresh final verification.

The stack lock is taken around each stack update only, so a long copy never blocks a failover; a second
migration of the same tenant is refused by the migration's own lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from ops.playbooks.base import (
    EXIT_OK,
    Context,
    Failed,
    PlaybookError,
    Refused,
    audit,
    tenant_path,
)
from ops.tenant_directory import tenant_record
from stamps.environment import Environment
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
                 tier: str) -> None:
        self.ctx, self.args, self.env = ctx, args, env
        self.tenant, self.cell, self.tier = tenant, cell, tier
        self.source_cell = env.tenant_cells[tenant]

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
        self._update(f"migrate {self.tenant}: unfreeze writes",
                     lambda stack: stack.delete(f"{tenant_path(self.tenant)}.frozen", missing_ok=True))
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
            self.ctx.console.print(f"[red]{step.step.value} failed[/]: {exc}; unfreezing {self.tenant} "
                                   f"(it keeps running on {self.source_cell}, its source rows untouched)")
            self.unfreeze(step)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from ops.migration import MigrationError, PlaybookHooks, Step, TenantDataMover, open_migration

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
    cell = args.cell or args.tenant
    path = journal_path(ctx, args.tenant)
    current = env.tenant_cells[args.tenant]
    if current == cell and not path.exists():
        ctx.console.print(f"[green]✓[/] {args.tenant} already runs on CELL {cell}: nothing to migrate")
        return EXIT_OK
    source_model = next(c.model for c in env.cells if c.name == current)
    if source_model != "shared" and current != cell:
        raise Refused(f"TENANT: {args.tenant} is on {source_model} CELL {current!r}; only shared tenants migrate")
    if cell in {c.name for c in env.cells} and cell != current and any(
            env.tenant_cells[t] == cell for t in tenants):
        raise Refused(f"--cell: CELL {cell!r} already serves a tenant; a dedicated CELL holds one")

    migration = Migration(ctx, args, env, args.tenant, cell, tier)
    if ctx.dry_run:
        ctx.console.print(f"migrate {args.tenant}: {current} (shared) → {cell} (dedicated, tier {tier}); steps: "
                          "provision → bulk_copy → verify → freeze → delta_copy → verify_final → switch → "
                          "unfreeze → health_check")
        migration.provision(None)
        return EXIT_OK

    source = _database_url(ctx, env, current, args.source_url, "--source-url")
    mover = TenantDataMover(source, args.target_url or "", args.tenant, tenant_column=args.tenant_column,
                            batch_size=args.batch_size, progress=None) if args.target_url else None
    hooks = PlaybookHooks(provision=migration.provision, freeze=migration.freeze, switch=migration.switch,
                          unfreeze=migration.unfreeze, health_check=migration.health_check,
                          on_failure=migration.on_failure)
    if mover is None:
        # The dedicated database exists only after provisioning: provision first, then read its address.
        migration.provision(None)
        env = ctx.environment()
        mover = TenantDataMover(source, _database_url(ctx, env, cell, None, "--target-url"), args.tenant,
                                tenant_column=args.tenant_column, batch_size=args.batch_size, progress=None)
    try:
        runner = open_migration(path, mover, hooks)
    except MigrationError as err:
        raise Refused(str(err)) from None
    with runner.journal:
        if args.restart_from:
            runner.journal.reset_from(Step(args.restart_from))
        try:
            runner.run()
        except MigrationError as err:
            audit(ctx, "migrate", "failed", tenant=args.tenant, error=str(err))
            raise Failed(f"migration of {args.tenant} stopped: {err}. The journal {path} records where; fix the "
                         "cause and re-run (add --restart-from bulk_copy after a failed verification)") from None
    audit(ctx, "migrate", "migrated", tenant=args.tenant, source=current, target=cell)
    ctx.console.print(f"[green]✓[/] {args.tenant} migrated to {cell}; purge its rows from {current} after the "
                      f"retention period with `stamps-ops purge-source {args.tenant}`")
    return EXIT_OK


def purge(ctx: Context, args: argparse.Namespace) -> int:
    from ops.migration import MigrationError, MigrationJournal, Step, TenantDataMover

    path = journal_path(ctx, args.tenant)
    if not path.exists():
        raise PlaybookError(f"TENANT: no migration journal for {args.tenant!r} at {path}")
    data = MigrationJournal.read(path)
    done = data["steps"][Step.DONE.value]
    if done["status"] != "done":
        raise Refused(f"the migration of {args.tenant} has not finished (at {data['current_step']})")
    finished = dt.datetime.fromisoformat(str(done["finished_at"]).replace("Z", "+00:00"))
    ready = finished + dt.timedelta(days=args.retention_days)
    if ctx.now() < ready:
        raise Refused(f"retention: {args.tenant}'s source rows are kept until {ready:%Y-%m-%d %H:%M}Z "
                      f"({args.retention_days} days after the switch)")
    if ctx.dry_run:
        ctx.console.print(f"(dry run) would verify and purge {args.tenant}'s rows from the shared database")
        return EXIT_OK
    mover = TenantDataMover(args.source_url, args.target_url, args.tenant, tenant_column=args.tenant_column,
                            progress=None)
    try:
        report = mover.verify()  # the final verification, fresh: both sides must still match
        deleted = mover.purge_source(report)
    except MigrationError as err:
        raise Refused(f"purge refused: {err}") from None
    audit(ctx, "purge-source", "purged", tenant=args.tenant, rows=deleted)
    ctx.console.print(f"[green]✓[/] purged {sum(deleted.values())} rows of {args.tenant} from the shared database")
    return EXIT_OK


def register(sub: argparse._SubParsersAction, common: Any) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("migrate", help="move a tenant from a shared to a dedicated CELL, with its data",
                       description=__doc__)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--to", required=True, choices=["dedicated"], help="target tenancy model")
    p.add_argument("--cell", help="dedicated CELL name (default: the tenant id)")
    p.add_argument("--tier", help="dedicated tier for the tenant (default: the first dedicated tier)")
    p.add_argument("--source-url", help="SQLAlchemy URL of the shared database (default: from stack outputs)")
    p.add_argument("--target-url", help="SQLAlchemy URL of the dedicated database (default: from stack outputs)")
    p.add_argument("--tenant-column", default="tenant_id")
    p.add_argument("--batch-size", type=int, default=5000)
    p.add_argument("--health-url", default=DEFAULT_HEALTH_URL,
                   help="the tenant's route to check after the switch: {cells_host}, {cell}, {tenant}")
    p.add_argument("--health-attempts", type=int, default=5)
    p.add_argument("--health-wait", type=float, default=30.0)
    p.add_argument("--restart-from", choices=["bulk_copy", "delta_copy"],
                   help="after a failed verification: redo the steps from here")
    common(p)
    p.set_defaults(func=run, lock_stack=False)

    p = sub.add_parser("purge-source", help="delete a migrated tenant's rows from the shared database",
                       description=__doc__)
    p.add_argument("tenant", metavar="TENANT")
    p.add_argument("--source-url", required=True)
    p.add_argument("--target-url", required=True)
    p.add_argument("--tenant-column", default="tenant_id")
    p.add_argument("--retention-days", type=int, default=7)
    common(p)
    p.set_defaults(func=purge)
