"""`stamps-ops migrate`: a tenant moves shared → dedicated with its data, routing and directory record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ops.cli import main
from ops.runner import OfflineRunner, RunnerError
from tests import pg
from tests.conftest import cached_plan
from tests.test_ops_playbooks import Ops

TENANT = "fintech-scale"


def make_shared_db(url: str, rows: int = 1200) -> None:
    """A shared CELL database: a tenant registry, accounts and their transactions, for three tenants."""
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    tenants = sa.Table("tenants", meta, sa.Column("tenant_id", sa.String(40), primary_key=True),
                       sa.Column("name", sa.String(80)))
    accounts = sa.Table("accounts", meta, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.tenant_id"), nullable=False),
                        sa.Column("owner", sa.Unicode(80)), sa.Column("balance", sa.Numeric(12, 2)))
    transfers = sa.Table("transfers", meta, sa.Column("id", sa.Integer, primary_key=True),
                         sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.tenant_id"), nullable=False),
                         sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
                         sa.Column("amount", sa.Numeric(12, 2)), sa.Column("memo", sa.Text, nullable=True))
    meta.create_all(engine)
    with engine.begin() as conn, _disposing(engine):
        ids = [TENANT, "startup", "other"]
        conn.execute(tenants.insert(), [{"tenant_id": t, "name": t.title()} for t in ids])
        if not rows:
            return
        conn.execute(accounts.insert(), [
            {"id": i, "tenant_id": ids[i % 3], "owner": f"ówner {i}", "balance": f"{i}.{i % 100:02d}"}
            for i in range(1, rows + 1)])
        conn.execute(transfers.insert(), [
            {"id": i, "tenant_id": ids[i % 3], "account_id": i, "amount": f"{i % 500}.50",
             "memo": None if i % 7 else "rent"} for i in range(1, rows + 1)])


@contextmanager
def _disposing(engine: sa.Engine) -> Iterator[None]:
    try:
        yield
    finally:
        engine.dispose()


def tenant_rows(url: str, tenant: str = TENANT) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    out = {}
    with engine.connect() as conn:
        for table in ("accounts", "transfers"):
            out[table] = [tuple(r) for r in conn.execute(
                sa.text(f"SELECT * FROM {table} WHERE tenant_id = :t ORDER BY id"), {"t": tenant})]
    engine.dispose()
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}", f"sqlite:///{tmp_path / 'dedicated.db'}"
        return
    with pg.get_server().databases(2) as (a, b):
        yield a.render_as_string(hide_password=False), b.render_as_string(hide_password=False)


class Recorder:
    """Wraps the offline runner's `up` to see each stack update the migration makes, in order."""

    def __init__(self, ops: Ops, fail_on: int | None = None) -> None:
        self.ops, self.fail_on = ops, fail_on
        self.updates: list[set[str]] = []

    def factory(self, project_dir: Path, stack: str, dry_run: bool, kind: str) -> OfflineRunner:
        runner = OfflineRunner(project_dir, stack, plan_stack=cached_plan)
        up = runner.up

        def recorded(*a: Any, **k: Any) -> Any:
            if self.fail_on is not None and len(self.updates) == self.fail_on:
                raise RunnerError("simulated: the Pulumi service dropped the connection")
            result = up(*a, **k)
            self.updates.append({r.name for r in result.resources})
            return result

        runner.up = recorded  # type: ignore[method-assign]
        return runner

    def __call__(self, *argv: str, **seams: Any) -> int:
        args = [*argv, "--project-dir", str(self.ops.project), "--runner", "offline", "--actor", "sre-bob"]
        return main(args, runner_factory=self.factory, **{**self.ops.seams, **seams})


def migrate_args(source: str, target: str) -> list[str]:
    return ["migrate", TENANT, "--to", "dedicated", "--source-url", source, "--target-url", target,
            "--health-url", "http://cells.test/{cell}/health", "--health-wait", "0", "--batch-size", "250"]


def test_migration_moves_data_routing_and_directory(project: Path, databases: tuple[str, str]) -> None:
    source, target = databases
    make_shared_db(source)
    before = tenant_rows(source)
    ops = Ops(project)
    rec = Recorder(ops)
    checked: list[str] = []
    rc = rec(*migrate_args(source, target), http_get=lambda url: checked.append(url) or 200)
    assert rc == 0
    # Data: every row of the tenant, nothing of the others; the source is untouched until purge.
    assert tenant_rows(target) == before
    assert tenant_rows(source) == before
    assert tenant_rows(target, "startup") == {"accounts": [], "transfers": []}
    # Stack updates in order: provision, freeze, switch, unfreeze.
    provision, freeze, switch, unfreeze = rec.updates
    assert {"cell-fintech-scale-eus-app", "cell-fintech-scale-wus-app"} <= provision
    assert freeze == {"tenants-tenant-routing-0"} and unfreeze == {"tenants-tenant-routing-0"}
    assert "tenants-tenant-routing-0" in switch
    assert not any(n.startswith("cell-shared-smb") for n in switch), "the shared CELL is not touched"
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert tenant["cell"] == TENANT and tenant["tier"] == "enterprise" and "frozen" not in tenant
    cell = next(c for c in ops.stack["stamps:cells"] if c["name"] == TENANT)
    assert cell["model"] == "dedicated"
    directory = json.loads((project / ".stamps" / "directory-prod.json").read_text())
    assert directory[TENANT]["cellName"] == TENANT and directory[TENANT]["cellType"] == "dedicated"
    assert checked == [f"http://cells.test/{TENANT}/health"]
    journal = json.loads((project / ".stamps" / "migrations" / f"prod-{TENANT}.json").read_text())
    assert all(s["status"] == "done" for s in journal["steps"].values())
    # A re-run after success changes nothing.
    assert rec(*migrate_args(source, target), http_get=lambda url: 200) == 0
    assert len(rec.updates) == 4


def test_interrupted_migration_resumes_from_the_journal(project: Path, tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=600)
    before = tenant_rows(source)
    ops = Ops(project)
    # The second stack update (the freeze) fails: the copy is done and verified, routing untouched.
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=lambda url: 200) == 1
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert tenant["cell"] == "shared-smb" and "frozen" not in tenant
    journal = json.loads((project / ".stamps" / "migrations" / f"prod-{TENANT}.json").read_text())
    assert journal["steps"]["bulk_copy"]["status"] == "done" and journal["steps"]["freeze"]["status"] == "failed"
    rec = Recorder(ops)
    assert rec(*migrate_args(source, target), http_get=lambda url: 200) == 0
    assert len(rec.updates) == 3, "provision is not repeated"
    assert tenant_rows(target) == before


def test_failed_verification_stops_before_the_switch(project: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ops.migration import TenantDataMover

    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=300)
    delta_copy = TenantDataMover.delta_copy

    def delta_then_corrupt(self: TenantDataMover, *a: Any, **k: Any) -> Any:
        # Something writes to the dedicated database behind the migration's back after the delta.
        result = delta_copy(self, *a, **k)
        engine = sa.create_engine(target)
        with engine.begin() as conn, _disposing(engine):
            conn.execute(sa.text("UPDATE accounts SET balance = 0 WHERE tenant_id = :t AND id = 3"), {"t": TENANT})
        return result

    monkeypatch.setattr(TenantDataMover, "delta_copy", delta_then_corrupt)
    before = tenant_rows(source)
    ops = Ops(project)
    rec = Recorder(ops)
    assert rec(*migrate_args(source, target), http_get=lambda url: 200) == 1
    assert "accounts" in capsys.readouterr().err
    assert tenant_rows(source) == before, "the source is untouched"
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert tenant["cell"] == "shared-smb", "routing was not switched"
    assert "frozen" not in tenant, "the failed migration unfroze the tenant"
    assert len(rec.updates) == 3  # provision, freeze, and the unfreeze after the failure
    journal = json.loads((project / ".stamps" / "migrations" / f"prod-{TENANT}.json").read_text())
    assert journal["steps"]["verify_final"]["status"] == "failed"
    assert journal["steps"]["switch"]["status"] == "pending"


def test_second_migration_of_the_same_tenant_is_refused(project: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from ops.migration import MigrationLock
    from ops.migration.journal import lock_path_for

    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=50)
    ops = Ops(project)
    journal = project / ".stamps" / "migrations" / f"prod-{TENANT}.json"
    journal.parent.mkdir(parents=True)
    lock = MigrationLock(lock_path_for(journal, TENANT), TENANT).acquire()
    try:
        assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 4
    finally:
        lock.release()
    assert "refused" in capsys.readouterr().err


def test_purge_waits_for_retention_then_verifies(project: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=120)
    ops = Ops(project)
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0
    purge = ["purge-source", TENANT, "--source-url", source, "--target-url", target]
    assert Recorder(ops)(*purge) == 4
    assert "retention" in capsys.readouterr().err
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    assert Recorder(ops)(*purge, now=lambda: later) == 0
    assert tenant_rows(source) == {"accounts": [], "transfers": []}
    assert tenant_rows(source, "startup")["accounts"], "other tenants keep their rows"
    assert tenant_rows(target)["accounts"]
