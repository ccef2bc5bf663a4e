"""`stamps-ops migrate` around the copy: preflight before provisioning, one tenant per dedicated
database, secrets kept out of state, an unfreeze that meets a lock, resumes that name the right CELL."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from ops.migration import TenantDataMover
from ops.stackconfig import stack_lock
from tests import pg
from tests.test_ops_migrate import TENANT, Recorder, make_shared_db, migrate_args, tenant_rows
from tests.test_ops_playbooks import Ops

JOURNAL = Path(".stamps") / "migrations" / f"prod-{TENANT}.json"


def audit_lines(project: Path) -> list[dict[str, Any]]:
    path = project / ".stamps" / "audit" / "prod.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def cells(ops: Ops) -> set[str]:
    return {c["name"] for c in ops.stack["stamps:cells"]}


def sqlite_pair(tmp_path: Path, rows: int = 90) -> tuple[str, str]:
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=rows)
    return source, target


class FakeNotifier:
    def __init__(self) -> None:
        self.incidents: list[Any] = []

    def __enter__(self) -> FakeNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def notify(self, incident: Any) -> Any:
        self.incidents.append(incident)
        return SimpleNamespace(results=[])


# --------------------------------------------------------------------------- preflight (point 5)


def test_unmigratable_schema_is_refused_before_anything_is_provisioned(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A table of other tenants' data the tenant's rows point at (staff e-mails) is not a guess to make."""
    source, target = sqlite_pair(tmp_path)
    engine = sa.create_engine(source)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE staff (id INTEGER PRIMARY KEY, email TEXT)")
        conn.exec_driver_sql("INSERT INTO staff VALUES (1, 'ann@other-tenant.example')")
        conn.exec_driver_sql("CREATE TABLE tickets (id INTEGER PRIMARY KEY, tenant_id VARCHAR(40) NOT NULL, "
                             "staff_id INTEGER REFERENCES staff(id))")  # fmt: skip
    engine.dispose()
    ops = Ops(project)
    before = cells(ops)
    rec = Recorder(ops)
    assert rec(*migrate_args(source, target), http_get=lambda url: 200) == 4
    err = capsys.readouterr().err
    assert "staff" in err and "--shared-table staff" in err and "Traceback" not in err
    assert cells(ops) == before and rec.updates == [], "nothing provisioned"
    assert not (project / JOURNAL).exists()
    assert audit_lines(project)[-1]["event"] == "failed"
    assert not Path(tmp_path / "t.db").exists() or not sa.inspect(sa.create_engine(target)).get_table_names()
    # Declared shared reference data, it is copied whole; nothing else without the tenant column is.
    assert Recorder(ops)(*migrate_args(source, target), "--shared-table", "staff", http_get=lambda url: 200) == 0
    assert tenant_rows(target) == tenant_rows(source)


def test_untyped_columns_and_text_in_numeric_columns_are_refused_cleanly(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = f"sqlite:///{tmp_path / 's.db'}"
    make_shared_db(source, rows=30)
    engine = sa.create_engine(source)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant_id VARCHAR(40), body)")
        conn.exec_driver_sql(f"UPDATE accounts SET balance = 'n/a' WHERE id = 3 AND tenant_id = '{TENANT}'")
    engine.dispose()
    ops = Ops(project)
    with pg.get_server().databases(1) as (target,):  # SQLite → PostgreSQL: the generic engine
        rc = Recorder(ops)(*migrate_args(source, target.render_as_string(hide_password=False)),
                           http_get=lambda url: 200)  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 4 and "Traceback" not in err
    assert "notes.body has no declared type" in err
    assert "accounts.balance" in err and "'n/a'" in err
    assert TENANT not in cells(ops)


def test_unreachable_database_and_missing_driver_are_clean_refusals(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = sqlite_pair(tmp_path, rows=10)
    ops = Ops(project)
    before = cells(ops)
    dead = "postgresql+psycopg2://stamps:s3cr3t-pw@127.0.0.1:1/nowhere"
    assert Recorder(ops)(*migrate_args(source, dead), http_get=lambda url: 200) == 4
    err = capsys.readouterr().err
    assert "cannot connect to the target database" in err and "s3cr3t-pw" not in err and "Traceback" not in err
    # No --target-url: the dedicated database will be Azure SQL through pyodbc; without the driver the
    # migration stops before the CELL is added to the stack.
    monkeypatch.setitem(sys.modules, "pyodbc", None)
    args = [a for a in migrate_args(source, "x") if a not in ("--target-url", "x")]
    assert Recorder(ops)(*args, http_get=lambda url: 200) == 4
    err = capsys.readouterr().err
    assert "pyodbc" in err and "not installed" in err and "Traceback" not in err
    assert cells(ops) == before
    assert [e["event"] for e in audit_lines(project)] == ["failed", "failed"]
    assert all("s3cr3t-pw" not in json.dumps(e) for e in audit_lines(project))


@pytest.mark.parametrize("damage", [
    lambda d: d.pop("steps"),
    lambda d: d["steps"]["verify"].update(status="half-done"),
    lambda d: d["tables"].update(accounts={"bulk": {"high_water_mark": [{"$nope": 1}], "checksum": "x",
                                                    "done": True}}),
    lambda d: d.update(current_step=7),
], ids=["no-steps", "bad-status", "bad-mark", "bad-current-step"])
def test_damaged_but_valid_json_journal_is_a_clean_refusal(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any) -> None:
    source, target = sqlite_pair(tmp_path, rows=30)
    ops = Ops(project)
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=lambda url: 200) == 1
    path = project / JOURNAL
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 4
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err


def test_a_database_error_mid_copy_is_a_clean_failure_with_an_audit_line(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = sqlite_pair(tmp_path, rows=30)

    def broken(self: TenantDataMover, *a: Any, **k: Any) -> Any:
        raise sa.exc.OperationalError("INSERT ...", {}, Exception("disk I/O error"))

    monkeypatch.setattr(TenantDataMover, "delta_copy", broken)
    ops = Ops(project)
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 1
    err = capsys.readouterr().err
    assert "database error" in err and "disk I/O error" in err and "Traceback" not in err
    assert audit_lines(project)[-1]["event"] == "failed"
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert "frozen" not in tenant and tenant["cell"] == "shared-smb"
    monkeypatch.undo()
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0  # plain re-run


# --------------------------------------------------------------------------- one tenant per dedicated database (3)


def test_a_target_holding_another_tenants_rows_is_refused(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path)
    ops = Ops(project)
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0
    before = cells(ops)
    args = ["migrate", "startup", "--to", "dedicated", "--cell", "startup-db", "--source-url", source,
            "--target-url", target, "--health-url", "http://cells.test/{cell}/health", "--health-wait", "0"]
    assert Recorder(ops)(*args, http_get=lambda url: 200) == 4
    err = capsys.readouterr().err
    assert "holds rows of other tenants" in err
    assert tenant_rows(target, "startup") == {"accounts": [], "transfers": []}, "nothing of startup landed"
    assert cells(ops) == before, "no CELL provisioned for the refused migration"


def test_a_dedicated_cell_is_reserved_by_the_first_migration_into_it(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path)
    ops = Ops(project)
    # fintech-scale's migration stops after provisioning its CELL (the freeze fails): the CELL is its.
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=lambda url: 200) == 1
    other = f"sqlite:///{tmp_path / 'other.db'}"
    args = ["migrate", "startup", "--to", "dedicated", "--cell", TENANT, "--source-url", source,
            "--target-url", other, "--health-url", "http://cells.test/{cell}/health", "--health-wait", "0"]
    assert Recorder(ops)(*args, http_get=lambda url: 200) == 4
    assert f"reserved by the migration of tenant {TENANT!r}" in capsys.readouterr().err
    assert not Path(tmp_path / "other.db").exists() or not sa.inspect(sa.create_engine(other)).get_table_names()


# --------------------------------------------------------------------------- secrets and state (point 4)


def test_urls_are_stored_and_logged_without_passwords(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = pg.get_server()
    with server.databases(2) as (a, b):
        password = a.password
        if not password:
            pytest.skip("the test server's role has no password to leak")
        source = a.render_as_string(hide_password=False)
        # libpq also takes the password as a query parameter: it must be hidden there too.
        target = b.set(password=None, query={"password": password}).render_as_string(hide_password=False)
        make_shared_db(source, rows=60)
        ops = Ops(project)
        assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0
        # (The test role's password may equal its user name: look for it where a password goes.)
        leaks = (f":{password}@", f"password={password}")
        state = project / ".stamps" / "migrations"
        for f in state.iterdir():
            assert not any(leak in f.read_text() for leak in leaks), f
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        journal = json.loads((project / JOURNAL).read_text())
        assert ":***@" in journal["source"] and "password=%2A%2A%2A" in journal["target"]
        audit = (project / ".stamps" / "audit" / "prod.jsonl").read_text()
        out = capsys.readouterr()
        assert not any(leak in text for leak in leaks for text in (audit, out.out, out.err))


def test_unfreeze_meeting_a_lock_retries_then_pages_with_the_command_to_finish(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.playbooks import migrate

    source, target = sqlite_pair(tmp_path, rows=30)
    ops = Ops(project)
    held: list[Any] = []
    switch = migrate.Migration.switch

    def switch_then_lock(self: Any, step: Any) -> Any:
        result = switch(self, step)
        lock = stack_lock(project, "prod", holder="failover")  # another playbook takes the stack
        lock.__enter__()
        held.append(lock)
        return result

    monkeypatch.setattr(migrate.Migration, "switch", switch_then_lock)
    slept: list[float] = []
    notifier = FakeNotifier()
    rc = Recorder(ops)(*migrate_args(source, target), "--unfreeze-attempts", "3", "--unfreeze-wait", "2",
                       http_get=lambda url: 200, sleep=slept.append, notifier_factory=lambda: notifier)
    err = capsys.readouterr().err
    assert rc == 1
    assert slept == [2.0, 4.0], "backoff between the three attempts"
    command = f"stamps-ops migrate-unfreeze {TENANT} --stack prod --project-dir {project}"
    assert command in err.replace("\n", " ") or command in err
    assert notifier.incidents and TENANT in notifier.incidents[0].summary
    assert notifier.incidents[0].details["command"] == command
    assert any(e["event"] == "unfreeze-failed" for e in audit_lines(project))
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert tenant["frozen"] is True
    held.pop().__exit__(None, None, None)
    monkeypatch.undo()
    argv = [a for a in command.split()[1:] if a not in ("--project-dir", str(project))]
    assert Recorder(ops)(*argv) == 0  # the printed command, as the operator would run it
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert "frozen" not in tenant


def test_a_resumed_migration_names_the_source_cell_it_began_on(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path, rows=30)
    ops = Ops(project)
    # The switch happened, then the health check failed: routing already names the new CELL.
    assert Recorder(ops)(*migrate_args(source, target), "--health-attempts", "1", http_get=lambda url: 503) == 1
    assert next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)["cell"] == TENANT
    capsys.readouterr()
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0
    out = capsys.readouterr().out
    assert f"migrated from shared-smb to {TENANT}" in " ".join(out.split())
    assert audit_lines(project)[-1] == {**audit_lines(project)[-1], "event": "migrated", "source": "shared-smb"}
    assert json.loads((project / JOURNAL).read_text())["source_cell"] == "shared-smb"


def test_an_abandoned_migration_leaves_nothing_of_its_tenant_and_frees_the_cell(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path)
    ops = Ops(project)
    # Stopped half-way: copied and verified, then the freeze failed.
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=lambda url: 200) == 1
    assert tenant_rows(target)["accounts"]
    assert Recorder(ops)("migrate-abandon", TENANT, "--source-url", source, "--target-url", target) == 0
    assert tenant_rows(target) == {"accounts": [], "transfers": []}
    with sa.create_engine(target).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM tenants").scalar() == 0
    assert not (project / JOURNAL).exists()
    assert audit_lines(project)[-1]["event"] == "abandoned"
    tenant = next(t for t in ops.stack["stamps:tenants"] if t["id"] == TENANT)
    assert tenant["cell"] == "shared-smb" and "frozen" not in tenant
    # The CELL and its database are free for another tenant now: its migration is admitted (CELL
    # reserved, database claimed), copies and verifies. Stopped at the switch: the rest of a migration is
    # the same for any tenant, and its stack updates would cost two more plans.
    args = ["migrate", "startup", "--to", "dedicated", "--cell", TENANT, "--source-url", source,
            "--target-url", target, "--health-url", "http://cells.test/{cell}/health", "--health-wait", "0"]
    rec = Recorder(ops, fail_on=1)
    assert rec(*args, http_get=lambda url: 200) == 1
    assert rec.updates == [{"tenants-tenant-routing-0"}], "the CELL stayed; only the freeze ran before the switch"
    assert tenant_rows(target, "startup") == tenant_rows(source, "startup")
    assert tenant_rows(target) == {"accounts": [], "transfers": []}


# --------------------------------------------------------------------------- dry runs of the deleting playbooks


def test_purge_and_abandon_dry_runs_check_and_report_but_change_nothing(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dry run of a deleting playbook makes the real run's read-only checks and says what it would delete;
    the project tree and both databases stay byte for byte as they were."""
    import datetime as dt
    import hashlib

    from tests.test_ops_truth import tree

    def databases() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(tmp_path.glob("*.db"))}

    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0
    rows = tenant_rows(source)
    with sa.create_engine(source).connect() as conn:
        expected = {table: conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE tenant_id = ?",
                                                (TENANT,)).scalar() for table in ("transfers", "accounts", "tenants")}
    capsys.readouterr()
    before = (tree(project), databases())
    purge = ["purge-source", TENANT, "--source-url", source, "--target-url", target, "--dry-run"]
    assert Recorder(ops)(*purge, now=lambda: later) == 0
    out = capsys.readouterr().out
    # Children first, as the purge deletes them; every row of the tenant, the registry row included.
    assert (f"would delete {sum(expected.values())} rows from the shared database "
            f"({', '.join(f'{t} {n}' for t, n in expected.items())})") in " ".join(out.split())
    assert (tree(project), databases()) == before

    # The dry run refuses what the purge would refuse: here a target that lost a row since the migration.
    with sa.create_engine(target).begin() as conn:
        conn.exec_driver_sql("DELETE FROM transfers WHERE rowid = (SELECT max(rowid) FROM transfers)")
    before = (tree(project), databases())
    assert Recorder(ops)(*purge, now=lambda: later) == 4
    assert "nothing deleted" in capsys.readouterr().err
    assert (tree(project), databases()) == before
    assert tenant_rows(source) == rows


def test_abandon_dry_run_changes_nothing(project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.test_ops_truth import tree

    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=lambda url: 200) == 1
    copied = tenant_rows(target)
    before = tree(project)
    assert Recorder(ops)("migrate-abandon", TENANT, "--source-url", source, "--target-url", target, "--dry-run") == 0
    assert "would unfreeze" in capsys.readouterr().out
    assert tree(project) == before and tenant_rows(target) == copied
