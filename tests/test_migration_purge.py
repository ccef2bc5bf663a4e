"""`purge-source` deletes only what provably exists elsewhere: aliases of the source are refused.

A target URL that reaches the source database under another name (another host name, a symlink or
hard link, extra URL options, another user) once verified the source against itself and purged the
tenant's only copy. Each case here must exit 4 and leave every source row in place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from ops.migration import PurgeRefusedError, TenantDataMover
from ops.migration.identity import DatabaseIdentity
from tests import pg
from tests.test_ops_migrate import TENANT, Recorder, make_shared_db, migrate_args, tenant_rows
from tests.test_ops_playbooks import Ops

LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)


def migrated(project: Path, source: str, target: str, rows: int = 120) -> Ops:
    make_shared_db(source, rows=rows)
    ops = Ops(project)
    assert Recorder(ops)(*migrate_args(source, target), http_get=lambda url: 200) == 0
    return ops


def purge(ops: Ops, *urls: str) -> int:
    argv = ["purge-source", TENANT]
    if urls:
        argv += ["--source-url", urls[0], "--target-url", urls[1]]
    return Recorder(ops)(*argv, now=lambda: LATER)


def assert_refused_each(ops: Ops, source: str, aliases: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    before = tenant_rows(source)
    assert before["accounts"]
    for alias in aliases:
        assert purge(ops, source, alias) == 4, alias
        err = capsys.readouterr().err
        assert "nothing deleted" in err and "same database" in err, (alias, err)
        assert tenant_rows(source) == before, f"{alias} purged the source"


def test_sqlite_aliases_of_the_source_are_refused(project: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src, tgt = tmp_path / "s.db", tmp_path / "t.db"
    source = f"sqlite:///{src}"
    ops = migrated(project, source, f"sqlite:///{tgt}")
    (tmp_path / "link.db").symlink_to(src)
    os.link(src, tmp_path / "hard.db")
    (tmp_path / "sub").mkdir()
    aliases = [
        f"sqlite:///{tmp_path / 'link.db'}",                      # symlink
        f"sqlite:///{tmp_path / 'hard.db'}",                      # hard link: another path, same inode
        f"sqlite:///{src}?timeout=5",                             # URL options
        f"sqlite:///{tmp_path / 'sub' / '..' / 's.db'}",          # a path that walks around
        f"sqlite:///file:{src}?mode=rw&uri=true",                 # URI form (no fast path: the generic engine)
    ]  # fmt: skip
    assert_refused_each(ops, source, aliases, capsys)
    # The journal's recorded target, reached by its real name, still purges.
    assert purge(ops) == 0
    assert tenant_rows(source) == {"accounts": [], "transfers": []}


def test_a_copy_that_is_not_the_recorded_target_is_refused(project: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Identical rows in some other database prove nothing: the target must be the one migrated into."""
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    ops = migrated(project, source, target)
    (tmp_path / "copy.db").write_bytes((tmp_path / "t.db").read_bytes())
    before = tenant_rows(source)
    assert purge(ops, source, f"sqlite:///{tmp_path / 'copy.db'}") == 4
    assert "not the ones this migration recorded" in capsys.readouterr().err
    assert tenant_rows(source) == before


def test_postgresql_aliases_of_the_source_are_refused(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = pg.get_server()
    with server.databases(2) as (a, b):
        if a.host not in ("127.0.0.1", "localhost"):
            pytest.skip("the alias cases need a server on the loopback address")
        source = a.set(host="127.0.0.1").render_as_string(hide_password=False)
        ops = migrated(project, source, b.render_as_string(hide_password=False))
        aliases = [a.set(host="localhost"), a.set(query={"application_name": "x", "connect_timeout": "5"})]
        assert_refused_each(ops, source, [u.render_as_string(hide_password=False) for u in aliases], capsys)
        # The same database under two users: another role, granted everything a target needs. Last, as
        # it skips (fails in CI) without a second role: .ci/postgres.sh creates one.
        other_user = server.second_login(sa.make_url(source))
        assert other_user.username != sa.make_url(source).username
        assert_refused_each(ops, source, [other_user.render_as_string(hide_password=False)], capsys)
        # The recorded target, under the migrating user, still purges (the journal keeps no passwords).
        assert purge(ops, source, b.render_as_string(hide_password=False)) == 0
        assert tenant_rows(source) == {"accounts": [], "transfers": []}


def test_identity_is_checked_again_inside_the_purge_transaction(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """If the target turns out to be the source when the delete transaction starts, nothing is deleted."""
    import ops.migration.copy as copy_mod

    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=60)
    before = tenant_rows(source)
    for fast_path in (True, False):
        m = TenantDataMover(source, target, TENANT, progress=False, fast_path=fast_path)
        m.bulk_copy()
        report = m.verify()
        expected = m.identities()
        swapped = (expected[0], expected[0])
        with monkeypatch.context() as patch:
            src_id = expected[0]
            patch.setattr(copy_mod, "identity_of", lambda conn, i=src_id: i)  # generic path: both say "source"
            patch.setattr(copy_mod, "sqlite_identity", lambda conn, schema, i=src_id: i)  # fast path
            with pytest.raises(PurgeRefusedError, match="same database"):
                m.purge_source(report, expected=expected)
        assert tenant_rows(source) == before
        with pytest.raises(PurgeRefusedError, match="recorded"):
            m.purge_source(report, expected=(expected[1], expected[0]))
        assert swapped != expected and tenant_rows(source) == before
        m.source.dispose()
        m.target.dispose()


@pytest.mark.parametrize("fast_path", [True, False], ids=["sqlite", "sqlite-generic"])
def test_purge_is_all_or_nothing_and_compares_every_row(tmp_path: Path, fast_path: bool) -> None:
    """One changed row in the last table purged refuses the whole purge: no table loses a row."""
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=90)
    m = TenantDataMover(source, target, TENANT, progress=False, fast_path=fast_path, batch_size=7)
    m.bulk_copy()
    report = m.verify()
    engine = sa.create_engine(target)
    with engine.begin() as conn:  # the dedicated copy of one account differs (same row count)
        conn.execute(sa.text("UPDATE accounts SET owner = 'changed' WHERE id = (SELECT max(id) FROM accounts "
                             "WHERE tenant_id = :t)"), {"t": TENANT})  # fmt: skip
    engine.dispose()
    before = tenant_rows(source)
    with pytest.raises(PurgeRefusedError, match=r"accounts.*no identical row"):
        m.purge_source(report)
    assert tenant_rows(source) == before, "transfers were purged before accounts refused"
    m.delta_copy()
    assert m.purge_source(m.verify()) == {"transfers": 30, "accounts": 30, "tenants": 1}
    m.source.dispose()
    m.target.dispose()


def test_journal_without_recorded_identities_refuses_purge(project: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    ops = migrated(project, source, target)
    path = project / ".stamps" / "migrations" / f"prod-{TENANT}.json"
    data = json.loads(path.read_text())
    assert DatabaseIdentity.parse(data["source_identity"]) != DatabaseIdentity.parse(data["target_identity"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data["target_identity"] = None
    path.write_text(json.dumps(data))
    before = tenant_rows(source)
    assert purge(ops, source, target) == 4
    assert "cannot be proven" in capsys.readouterr().err
    assert tenant_rows(source) == before




class _FakeResult:
    def __init__(self, row: tuple[object, ...]) -> None:
        self.row = row

    def one(self) -> tuple[object, ...]:
        return self.row


class _FakeMssql:
    """Just enough of a Connection to run identity_of's SQL Server branch (no server here)."""

    def __init__(self, server: str, db_id: int, name: str) -> None:
        self.dialect = SimpleNamespace(name="mssql")
        self.row = (server, db_id, name)
        self.sql: list[str] = []

    def exec_driver_sql(self, sql: str) -> _FakeResult:
        self.sql.append(sql)
        return _FakeResult(self.row)


def test_sql_server_identity_is_server_name_plus_database_id() -> None:
    """Compile-level only: the query asks the server (@@SERVERNAME, DB_ID()), not the URL."""
    from ops.migration.identity import identity_of

    conn = _FakeMssql("CELL-SQL-EUS", 5, "Tenant")
    ident = identity_of(conn)  # type: ignore[arg-type]
    assert "@@SERVERNAME" in conn.sql[0] and "DB_ID()" in conn.sql[0]
    assert ident == identity_of(_FakeMssql("cell-sql-eus", 5, "tenant"))  # type: ignore[arg-type]
    assert ident != identity_of(_FakeMssql("cell-sql-eus", 6, "tenant"))  # type: ignore[arg-type]
    assert ident != identity_of(_FakeMssql("cell-sql-wus", 5, "tenant"))  # type: ignore[arg-type]


def test_the_database_admits_one_tenant_even_when_two_migrations_start_together(tmp_path: Path) -> None:
    """Both pass the content check on an empty target; the claim row in the target refuses the second."""
    from ops.migration import PreflightError

    source, target = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 't.db'}"
    make_shared_db(source, rows=30)
    first = TenantDataMover(source, target, TENANT, progress=False)
    second = TenantDataMover(source, target, "startup", progress=False)
    first.check_target_owned()
    second.check_target_owned()  # the target is still empty: both would go ahead on content alone
    first.prepare_target()
    with pytest.raises(PreflightError, match=f"claimed by tenant {TENANT!r}"):
        second.prepare_target()
    first.bulk_copy()
    assert tenant_rows(target, "startup") == {"accounts": [], "transfers": []}
    first.clear_target(first.identities())  # abandoned: the tenant's rows and its claim go
    assert tenant_rows(target) == {"accounts": [], "transfers": []}
    second.prepare_target()
    second.bulk_copy()
    assert tenant_rows(target, "startup") == tenant_rows(source, "startup")
    for m in (first, second):
        m.source.dispose()
        m.target.dispose()
