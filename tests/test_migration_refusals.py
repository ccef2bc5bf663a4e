"""`stamps-ops migrate` and `purge-source` refuse, through the CLI, whatever could lose or leak a row.

Each case checks what an operator sees (exit 4, a message that names the cause and the next step, no
traceback), what the audit log says, and that nothing changed: no CELL provisioned, no journal begun
where none was, no row deleted from the source, no table created in a database that is not the target.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from ops.migration import TenantDataMover
from ops.stackconfig import stack_lock
from tests import pg
from tests.test_migration_playbook import JOURNAL, audit_lines, cells, sqlite_pair
from tests.test_migration_purge import LATER
from tests.test_ops_migrate import TENANT, Recorder, make_shared_db, migrate_args, tenant_rows
from tests.test_ops_playbooks import Ops

EMPTY = {"accounts": [], "transfers": []}


def ok(url: str) -> int:
    return 200


def purge(ops: Ops, source: str | None = None, target: str | None = None) -> int:
    argv = ["purge-source", TENANT]
    if source and target:
        argv += ["--source-url", source, "--target-url", target]
    return Recorder(ops)(*argv, now=lambda: LATER)


def tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def assert_migrate_refused(ops: Ops, source: str, target: str, capsys: pytest.CaptureFixture[str],
                           *expected: str) -> str:
    """A migration into ``target`` exits 4 before anything is provisioned, and the source is untouched."""
    before, stack_cells = tenant_rows(source), cells(ops)
    source_tables = tables(source)
    rec = Recorder(ops)
    assert rec(*migrate_args(source, target), http_get=ok) == 4, target
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected" not in err, err
    for text in expected:
        assert text in err, (text, err)
    assert rec.updates == [] and cells(ops) == stack_cells, "nothing provisioned"
    assert not (ops.project / JOURNAL).exists(), "no journal begun"
    assert tenant_rows(source) == before and tables(source) == source_tables, "the source was written"
    return err


def assert_purge_refused(ops: Ops, source: str, target: str | None, capsys: pytest.CaptureFixture[str],
                         *expected: str) -> None:
    before = tenant_rows(source)
    assert before["accounts"]
    assert purge(ops, source, target) == 4, target
    err = capsys.readouterr().err
    assert "nothing deleted" in err and "Traceback" not in err, err
    for text in expected:
        assert text in err, (text, err)
    assert tenant_rows(source) == before, f"{target} purged the source"
    last = audit_lines(ops.project)[-1]
    assert (last["playbook"], last["event"], last["tenant"]) == ("purge-source", "refused", TENANT)


# --------------------------------------------------------------------------- alias targets (point 1)


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_sqlite_alias_of_the_source_is_refused_by_migrate_and_purge(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str) -> None:
    """Another path to the source file, as target: migrate would write its claim and copies into the
    shared database; purge would compare the source with itself and delete the tenant's only copy."""
    source, target = sqlite_pair(tmp_path, rows=60)
    alias = tmp_path / f"{link}.db"
    if link == "symlink":
        alias.symlink_to(tmp_path / "s.db")
    else:
        os.link(tmp_path / "s.db", alias)
    ops = Ops(project)
    assert_migrate_refused(ops, source, f"sqlite:///{alias}", capsys, "refused before it started", "same database")
    last = audit_lines(project)[-1]
    assert (last["event"], last["tenant"]) == ("failed", TENANT) and "same database" in last["error"]
    # Migrated into a real target, the alias is refused by the purge too; the recorded target purges.
    assert Recorder(ops)(*migrate_args(source, target), http_get=ok) == 0
    assert_purge_refused(ops, source, f"sqlite:///{alias}", capsys, "same database")
    assert purge(ops) == 0
    assert tenant_rows(source) == EMPTY and tenant_rows(target) != EMPTY


def test_postgresql_alias_of_the_source_is_refused_by_migrate_and_purge(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The source under another host name (localhost vs 127.0.0.1) and under another user."""
    server = pg.get_server()
    with server.databases(2) as (a, b):
        if a.host not in ("127.0.0.1", "localhost"):
            pytest.skip("the alias cases need a server on the loopback address")
        source = a.set(host="127.0.0.1").render_as_string(hide_password=False)
        target = b.render_as_string(hide_password=False)
        make_shared_db(source, rows=60)
        other_host = a.set(host="localhost").render_as_string(hide_password=False)
        # $STAMPS_TEST_PG_ALIAS_URL's role, granted the source database's tables (.ci/postgres.sh creates it).
        other_user = server.second_login(sa.make_url(source))
        assert other_user.username != a.username
        aliases = [other_host, other_user.render_as_string(hide_password=False)]
        ops = Ops(project)
        for alias in aliases:
            assert_migrate_refused(ops, source, alias, capsys, "refused before it started", "same database")
        assert Recorder(ops)(*migrate_args(source, target), http_get=ok) == 0
        for alias in aliases:
            assert_purge_refused(ops, source, alias, capsys, "same database")
        assert purge(ops, source, target) == 0
        assert tenant_rows(source) == EMPTY


# --------------------------------------------------------------------------- resume against other databases


def test_a_resume_reaching_other_databases_than_its_journal_is_refused(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Half-copied into t.db, the migration must not be finished into another database (it never got the
    first half) nor from another source (identical rows today, another file tomorrow)."""
    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    # Copied and verified, then the freeze's stack update failed: a resumable journal.
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=ok) == 1
    recorded = json.loads((project / JOURNAL).read_text())
    shutil.copy(tmp_path / "s.db", tmp_path / "s-copy.db")
    before = tenant_rows(source)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    changed = [(source, other, "target", []),
               (f"sqlite:///{tmp_path / 's-copy.db'}", target, "source", []),
               # --restart-from would reset the journal's progress: not before the databases are checked.
               (source, other, "target", ["--restart-from", "bulk_copy"])]
    for src, tgt, role, extra in changed:
        capsys.readouterr()
        rec = Recorder(ops)
        assert rec(*migrate_args(src, tgt), *extra, http_get=ok) == 4, (role, extra)
        err = capsys.readouterr().err
        assert f"{role} is now sqlite:" in err and "Nothing was copied" in err and "Traceback" not in err, err
        assert "migrate-abandon" in err, "the message names the way out"
        last = audit_lines(project)[-1]
        assert (last["event"], last["tenant"]) == ("refused", TENANT) and "recorded" in last["error"]
        assert rec.updates == [], "no stack update (the freeze was next)"
        now = json.loads((project / JOURNAL).read_text())
        for key in ("source_identity", "target_identity", "steps", "tables", "verifications"):
            assert now[key] == recorded[key], key
        assert tenant_rows(source) == before
    assert tables(other) == [], "nothing copied into the other target"
    # The recorded databases under another name are the same databases: the resume finishes.
    (tmp_path / "t-link.db").symlink_to(tmp_path / "t.db")
    assert Recorder(ops)(*migrate_args(source, f"sqlite:///{tmp_path / 't-link.db'}"), http_get=ok) == 0
    assert tenant_rows(target) == before


# --------------------------------------------------------------------------- orphan rows


def test_orphan_rows_are_refused_before_anything_is_provisioned(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows whose parent the source does not hold for the tenant (written with foreign keys off, or
    pointing at another tenant's row) would stop the copy after provisioning: refused up front."""
    source, target = sqlite_pair(tmp_path, rows=60)
    conn = sqlite3.connect(tmp_path / "s.db")  # foreign keys are off on a plain connection, as in many apps
    with conn:
        conn.execute("INSERT INTO transfers VALUES (9001, ?, 8999, '1.00', 'no such account')", (TENANT,))
        conn.execute("INSERT INTO transfers VALUES (9002, ?, 1, '2.00', 'startup''s account')", (TENANT,))
    conn.close()
    ops = Ops(project)
    assert_migrate_refused(ops, source, target, capsys, "transfers (account_id) → accounts: 2 row(s)",
                           "id = 9001", "Restore the missing parents")
    last = audit_lines(project)[-1]
    assert last["event"] == "failed" and "transfers" in last["error"]
    assert tables(target) == [], "nothing written into the target"
    conn = sqlite3.connect(tmp_path / "s.db")
    with conn:
        conn.execute("DELETE FROM transfers WHERE id IN (9001, 9002)")
    conn.close()
    assert Recorder(ops)(*migrate_args(source, target), http_get=ok) == 0
    assert tenant_rows(target) == tenant_rows(source)


def test_orphan_rows_are_found_on_postgresql_too() -> None:
    """PostgreSQL enforces its keys, but a tenant's row may still point at another tenant's row."""
    with pg.get_server().databases(1) as (a,):
        source = a.render_as_string(hide_password=False)
        make_shared_db(source, rows=30)
        engine = sa.create_engine(source)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE transfers SET account_id = 1 WHERE id = 3 AND tenant_id = '{TENANT}'")
        engine.dispose()
        movers = [TenantDataMover(source, "sqlite://", t, progress=False) for t in (TENANT, "startup")]
        try:
            assert movers[0].orphan_rows() == ["transfers (account_id) → accounts: 1 row(s), e.g. id = 3"]
            assert movers[1].orphan_rows() == [], "the row it points at is startup's own: no orphan there"
        finally:
            for m in movers:
                m.source.dispose()


# --------------------------------------------------------------------------- damaged journal at purge time


def test_purge_with_a_damaged_journal_deletes_nothing_and_says_to_restore_it(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    assert Recorder(ops)(*migrate_args(source, target), http_get=ok) == 0
    path = project / JOURNAL
    good = path.read_bytes()
    no_steps = json.loads(good)
    no_steps.pop("steps")
    damaged = {
        "truncated": good[: len(good) // 2],
        "garbage": b"\x00\xff\xfe\x9c not a journal",
        "empty": b"",
        "valid-json-no-steps": json.dumps(no_steps).encode(),
    }
    capsys.readouterr()
    for name, text in damaged.items():
        path.write_bytes(text)
        assert_purge_refused(ops, source, None, capsys, "is damaged", "restore the journal from a backup",
                             f"stamps-ops purge-source {TENANT}")
        assert path.read_bytes() == text, f"{name}: the damaged journal is left for the operator"
    path.write_bytes(good)  # restored from the backup: the purge goes ahead
    assert purge(ops) == 0
    assert tenant_rows(source) == EMPTY


# --------------------------------------------------------------------------- the stack lock


def test_migrate_meeting_another_playbooks_stack_lock_changes_nothing_and_prints_the_command(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    with stack_lock(project, "prod", holder="failover"):
        err = assert_migrate_refused(ops, source, target, capsys, "playbook 'failover'", "Nothing further")
    assert tables(target) == [], "nothing copied"
    last = audit_lines(project)[-1]
    assert (last["event"], last["tenant"]) == ("refused", TENANT) and "failover" in last["error"]
    line = next(x.strip() for x in err.splitlines() if x.strip().startswith("stamps-ops migrate "))
    argv = shlex.split(line)
    assert argv[:5] == ["stamps-ops", "migrate", TENANT, "--to", "dedicated"]
    assert argv[argv.index("--target-url") + 1] == target and argv[argv.index("--batch-size") + 1] == "250"
    # The printed command, as the operator would run it once the lock is free.
    i = argv.index("--project-dir")
    assert argv[i + 1] == str(project)
    assert Recorder(ops)(*(argv[1:i] + argv[i + 2:]), http_get=ok) == 0
    assert tenant_rows(target) == tenant_rows(source)


# --------------------------------------------------------------------------- abandon: deletes from the target only


def test_abandon_deletes_nothing_when_the_target_url_is_the_source_or_another_database(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`migrate-abandon` deletes the tenant's rows from the *target*: pointed at the source under another
    name it would delete the tenant's only copy; pointed at a copy, rows the journal never wrote."""
    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=ok) == 1
    (tmp_path / "s-link.db").symlink_to(tmp_path / "s.db")
    shutil.copy(tmp_path / "t.db", tmp_path / "t-copy.db")
    before, copied = tenant_rows(source), tenant_rows(target)
    assert copied == before
    for tgt, says in ((f"sqlite:///{tmp_path / 's-link.db'}", "same database"),
                      (f"sqlite:///{tmp_path / 't-copy.db'}", "not the ones this migration recorded")):
        capsys.readouterr()
        assert Recorder(ops)("migrate-abandon", TENANT, "--source-url", source, "--target-url", tgt) == 4, tgt
        err = capsys.readouterr().err
        assert "abandon refused" in err and says in err and "Traceback" not in err, err
        assert audit_lines(project)[-1]["event"] == "abandon-failed"
        assert tenant_rows(source) == before and tenant_rows(f"sqlite:///{tmp_path / 't-copy.db'}") == copied
        assert (project / JOURNAL).exists(), "the journal stays: the migration is not given up"
    assert Recorder(ops)("migrate-abandon", TENANT, "--source-url", source, "--target-url", target) == 0
    assert tenant_rows(target) == EMPTY and tenant_rows(source) == before


def test_the_printed_rerun_command_carries_no_password() -> None:
    """The command printed on a refusal goes to terminals and logs: URL passwords appear as ***."""
    from types import SimpleNamespace

    from ops.cli import build_parser
    from ops.playbooks.migrate import rerun_command

    args = build_parser().parse_args([
        "migrate", TENANT, "--to", "dedicated", "--source-url", "postgresql+psycopg2://app:s3cr3t-pw@db1/shared",
        "--target-url", "postgresql+psycopg2://app@db2/acme?password=s3cr3t-pw", "--shared-table", "currencies"])
    command = rerun_command(SimpleNamespace(stack="prod", project_dir=Path("/srv/stamps")), args)  # type: ignore[arg-type]
    assert "s3cr3t-pw" not in command
    argv = shlex.split(command)
    assert argv[argv.index("--source-url") + 1] == "postgresql+psycopg2://app:***@db1/shared"
    assert "password=%2A%2A%2A" in argv[argv.index("--target-url") + 1]
    assert argv[-2:] == ["--shared-table", "currencies"] and "--batch-size" not in argv, "defaults are left out"


# --------------------------------------------------------------------------- database errors outside the steps


def test_purge_stopped_by_a_database_error_is_a_clean_failure_and_deletes_nothing(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A target table renamed since the migration: the fresh verification cannot read it. Was a raw
    OperationalError ('unexpected', traceback in the log, no audit line)."""
    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    assert Recorder(ops)(*migrate_args(source, target), http_get=ok) == 0
    before = tenant_rows(source)
    conn = sqlite3.connect(tmp_path / "t.db")
    with conn:
        conn.execute("ALTER TABLE transfers RENAME TO transfers_old")
    capsys.readouterr()
    assert purge(ops) == 1
    err = capsys.readouterr().err
    assert "stopped by a database error" in err and "no such table" in err and "unexpected" not in err, err
    assert f"stamps-ops purge-source {TENANT}` again" in err
    last = audit_lines(project)[-1]
    assert (last["playbook"], last["event"]) == ("purge-source", "failed") and "no such table" in last["error"]
    assert tenant_rows(source) == before
    with conn:
        conn.execute("ALTER TABLE transfers_old RENAME TO transfers")
    conn.close()
    assert purge(ops) == 0
    assert tenant_rows(source) == EMPTY


def test_a_database_error_before_the_steps_is_a_clean_failure(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Preflight's own queries (reflection, the orphan and ownership checks) run outside the runner,
    which turns the steps' database errors into MigrationError; theirs must not surface raw either."""
    source, target = sqlite_pair(tmp_path, rows=30)

    def denied(self: TenantDataMover) -> list[str]:
        raise sa.exc.ProgrammingError("SELECT count(*) ...", {}, Exception("permission denied for table accounts"))

    monkeypatch.setattr(TenantDataMover, "orphan_rows", denied)
    ops = Ops(project)
    before = cells(ops)
    rec = Recorder(ops)
    assert rec(*migrate_args(source, target), http_get=ok) == 1
    err = capsys.readouterr().err
    assert "stopped by a database error" in err and "permission denied for table accounts" in err, err
    assert "unexpected" not in err and f"stamps-ops migrate {TENANT} --to dedicated" in err
    assert rec.updates == [] and cells(ops) == before and not (project / JOURNAL).exists()
    assert audit_lines(project)[-1]["event"] == "failed"


def test_abandon_stopped_by_a_database_error_keeps_the_journal_to_finish_later(
        project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = sqlite_pair(tmp_path, rows=60)
    ops = Ops(project)
    assert Recorder(ops, fail_on=1)(*migrate_args(source, target), http_get=ok) == 1
    conn = sqlite3.connect(tmp_path / "t.db")
    with conn:
        conn.execute("ALTER TABLE transfers RENAME TO transfers_old")
    capsys.readouterr()
    argv = ["migrate-abandon", TENANT, "--source-url", source, "--target-url", target]
    assert Recorder(ops)(*argv) == 1
    err = capsys.readouterr().err
    assert "stopped by a database error" in err and "transfers" in err and "unexpected" not in err, err
    assert f"stamps-ops migrate-abandon {TENANT}" in err
    assert audit_lines(project)[-1]["event"] == "abandon-failed"
    assert (project / JOURNAL).exists(), "kept: the same command finishes the abandon"
    with conn:
        conn.execute("ALTER TABLE transfers_old RENAME TO transfers")
    conn.close()
    assert Recorder(ops)(*argv) == 0
    assert tenant_rows(target) == EMPTY
