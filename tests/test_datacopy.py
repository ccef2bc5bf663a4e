"""The tenant data-movement engine on SQLite (always) and a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import os
import random
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ops.migration import (
    Checksum,
    DiscoveryError,
    PurgeRefusedError,
    SchemaMismatchError,
    TenantDataMover,
    VerificationError,
    as_engine,
    discover,
)
from ops.migration.checksum import CANONICAL, PG_MD5, SQLITE_EXACT
from ops.migration.progress import BatchEvent
from tests import pg

TENANT = "acme"
OTHERS = ("globex", "initech")
SHARED = ("plans",)  # the schema's shared reference data: declared, never guessed

# --------------------------------------------------------------------------- schema & data


def build_metadata() -> sa.MetaData:
    """plans (reference) ← tenants (registry) ← customers ← orders ← order_items, plus audit_log.

    Composite keys (customers, order_items), a composite FK (orders → customers), nullable
    columns, unicode text, decimals, timestamps, blobs, booleans and floats.
    """
    md = sa.MetaData()
    sa.Table(
        "plans",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("monthly", sa.Numeric(10, 2), nullable=False),
    )
    sa.Table(
        "tenants",
        md,
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("plan_id", sa.Integer, sa.ForeignKey("plans.id"), nullable=False),
    )
    sa.Table(
        "customers",
        md,
        sa.Column("tenant_id", sa.String(20), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.String(120)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("balance", sa.Numeric(12, 2)),
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.String(20), nullable=False, index=True),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("placed_at", sa.DateTime, nullable=False),
        sa.Column("total", sa.Numeric(14, 4), nullable=False),
        sa.Column("note", sa.Text),
        sa.ForeignKeyConstraint(["tenant_id", "customer_id"], ["customers.tenant_id", "customers.id"]),
    )
    sa.Table(
        "order_items",
        md,
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(20), nullable=False),
        sa.Column("sku", sa.String(40), nullable=False),
        sa.Column("qty", sa.Integer, nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("gift", sa.Boolean),
        sa.Column("payload", sa.LargeBinary),
    )
    sa.Table(
        "audit_log",
        md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("tenant_id", sa.String(20), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("message", sa.Text),
    )
    return md


WORDS = ("Zürich", "東京", "naïve", "Ωmega", "emoji 🚀", "O'Brien", "tab\there", "line\nbreak", "plain", "")


@dataclass
class Sizes:
    customers: int = 120
    orders_per_customer: int = 5
    items_per_order: int = 3
    audit: int = 400


def populate(engine: sa.Engine, sizes: Sizes | None = None, seed: int = 7) -> None:
    """Create the schema and fill it: TENANT gets thousands of rows, OTHERS get rows that must stay."""
    sizes = sizes or Sizes()
    md = build_metadata()
    md.create_all(engine)
    rnd = random.Random(seed)
    base = dt.datetime(2024, 1, 1, 8, 0, 0)
    t = md.tables
    with engine.begin() as conn:
        conn.execute(
            t["plans"].insert(), [{"id": i, "name": f"plan {i}", "monthly": f"{i * 10}.50"} for i in (1, 2, 3)]
        )
        conn.execute(
            t["tenants"].insert(),
            [{"id": tid, "name": f"{tid} ünïcode", "plan_id": i + 1} for i, tid in enumerate((TENANT, *OTHERS))],
        )
        order_id = 0
        customers, orders, items, audit = [], [], [], []
        for tid in (TENANT, *OTHERS):
            scale = 1 if tid == TENANT else 3  # other tenants: fewer rows, interleaved keys
            for c in range(1, sizes.customers // scale + 1):
                customers.append(
                    {
                        "tenant_id": tid,
                        "id": c,
                        "name": f"{rnd.choice(WORDS)} {c}",
                        "email": None if c % 7 == 0 else f"c{c}@{tid}.example",
                        "created_at": base + dt.timedelta(minutes=c, microseconds=c * 37),
                        "balance": None if c % 11 == 0 else decimal.Decimal(rnd.randint(-(10**6), 10**6)) / 100,
                    }
                )
        # Interleave tenants' orders so a tenant's keys are not one contiguous range.
        for n in range(sizes.customers * sizes.orders_per_customer):
            for tid in (TENANT, *OTHERS):
                ncust = sizes.customers if tid == TENANT else sizes.customers // 3
                if tid != TENANT and n % 3:
                    continue
                order_id += 1
                orders.append(
                    {
                        "id": order_id,
                        "tenant_id": tid,
                        "customer_id": n % ncust + 1,
                        "placed_at": base + dt.timedelta(seconds=n * 97),
                        "total": decimal.Decimal(rnd.randint(0, 10**8)) / 10**4,
                        "note": None if n % 5 else rnd.choice(WORDS),
                    }
                )
                for line in range(1, sizes.items_per_order + 1):
                    items.append(
                        {
                            "order_id": order_id,
                            "line_no": line,
                            "tenant_id": tid,
                            "sku": f"SKU-{rnd.randint(1, 999):03d}",
                            "qty": rnd.randint(1, 9),
                            "price": decimal.Decimal(rnd.randint(1, 99999)) / 100,
                            "gift": None if line == 3 else bool(n % 2),
                            "payload": None if line == 2 else bytes(rnd.randrange(256) for _ in range(16)) + b"\x00",
                        }
                    )
        for a in range(sizes.audit):
            tid = TENANT if a % 2 == 0 else OTHERS[a % 2 - 1]
            audit.append(
                {
                    "id": f"{rnd.getrandbits(64):016x}-{a:05d}",
                    "tenant_id": tid,
                    "at": base + dt.timedelta(hours=a),
                    "score": None if a % 9 == 0 else rnd.random() * 100,
                    "message": rnd.choice(WORDS),
                }
            )
        conn.execute(t["customers"].insert(), customers)
        conn.execute(t["orders"].insert(), orders)
        conn.execute(t["order_items"].insert(), items)
        conn.execute(t["audit_log"].insert(), audit)


def rows_of(engine: sa.Engine, table: str, tenant: str | None = TENANT) -> list[tuple[Any, ...]]:
    """Typed rows of one table, sorted (for exact comparisons across databases)."""
    md = sa.MetaData()
    t = sa.Table(table, md, autoload_with=engine)
    stmt = sa.select(t)
    if tenant is not None:
        col = "id" if table == "tenants" else "tenant_id"
        if col in t.c:
            stmt = stmt.where(t.c[col] == tenant)
    with engine.connect() as conn:
        rows = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in conn.execute(stmt)]
    return sorted(rows, key=repr)


def tenant_counts(engine: sa.Engine, tenant: str) -> dict[str, int]:
    out = {}
    with engine.connect() as conn:
        for name in ("customers", "orders", "order_items", "audit_log"):
            out[name] = conn.execute(
                sa.text(f"SELECT count(*) FROM {name} WHERE tenant_id = :t"), {"t": tenant}
            ).scalar()
    return out


def assert_target_matches_source(source: sa.Engine, target: sa.Engine) -> None:
    for table in ("plans", "tenants", "customers", "orders", "order_items", "audit_log"):
        assert rows_of(target, table, None) == rows_of(source, table), table


# --------------------------------------------------------------------------- fixtures


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temp dir on tmpfs when there is one: SQLite commits and journal writes fsync on every
    batch, and on a disk those waits, not the engine, would dominate the suite's run time."""
    shm = Path("/dev/shm")
    d = Path(tempfile.mkdtemp(prefix="stamps-test-", dir=shm if os.access(shm, os.W_OK) else None))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


@dataclass
class Pair:
    backend: str
    source: sa.Engine
    target: sa.Engine
    source_url: sa.URL
    target_url: sa.URL
    fast_path: bool = True  # what movers built by mover() ask for; SQLite→SQLite only

    @property
    def method(self) -> str:
        """The method a mover of this pair must pick on its own."""
        if self.backend == "postgresql":
            return PG_MD5
        return SQLITE_EXACT if self.fast_path else CANONICAL


def _sqlite_url(path: Path) -> sa.URL:
    return sa.make_url(f"sqlite:///{path}")


@pytest.fixture(params=["sqlite", "sqlite-generic", "postgresql"])
def pair(request: pytest.FixtureRequest, scratch: Path) -> Iterator[Pair]:
    """A populated shared source and an empty dedicated target: SQLite files moved inside SQLite
    (the default), the same with the fast path off, or PostgreSQL."""
    if request.param.startswith("sqlite"):
        urls = [_sqlite_url(scratch / "shared.db"), _sqlite_url(scratch / "dedicated.db")]
        yield from _pair("sqlite", urls, fast_path=request.param == "sqlite")
    else:
        with pg.get_server().databases(2) as urls:
            yield from _pair(request.param, urls)


def _pair(backend: str, urls: list[sa.URL], *, fast_path: bool = True, sizes: Sizes | None = None) -> Iterator[Pair]:
    source, target = as_engine(urls[0]), as_engine(urls[1])
    populate(source, sizes)
    try:
        yield Pair(backend, source, target, urls[0], urls[1], fast_path)
    finally:
        source.dispose()
        target.dispose()


def mover(p: Pair, **kw: Any) -> TenantDataMover:
    m = TenantDataMover(
        p.source, p.target, TENANT, progress=False,
        **{"batch_size": 97, "fast_path": p.fast_path, "shared_tables": SHARED, **kw},
    )  # fmt: skip
    assert m.method == p.method  # the path is chosen automatically; the flag only switches it off
    return m


# --------------------------------------------------------------------------- discovery


def test_discovery_orders_parents_first_and_classifies_tables(scratch: Path) -> None:
    engine = as_engine(_sqlite_url(scratch / "s.db"))
    build_metadata().create_all(engine)
    plan = discover(engine, shared_tables=SHARED)
    names = [t.name for t in plan.tables]
    # Ready tables are emitted in name order, so the order is deterministic; parents come first.
    assert names == ["audit_log", "plans", "tenants", "customers", "orders", "order_items"]
    for tp in plan.tables:
        assert all(names.index(dep) < names.index(tp.name) for dep in tp.depends_on)
    kinds = {t.name: (t.kind, t.scope_column) for t in plan.tables}
    assert kinds["plans"] == ("reference", None)
    assert kinds["tenants"] == ("registry", "id")
    assert kinds["order_items"] == ("tenant", "tenant_id")
    assert plan.table("order_items").pk == ("order_id", "line_no")


@pytest.mark.parametrize(
    ("extra_ddl", "message"),
    [
        ("CREATE TABLE notes (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id))", "notes"),
        ("CREATE TABLE heap (tenant_id TEXT, x INTEGER)", "primary key"),
        ("CREATE TABLE tree (id INTEGER PRIMARY KEY, tenant_id TEXT, parent INTEGER REFERENCES tree(id))", "itself"),
    ],
)
def test_discovery_refuses_unsafe_schemas(scratch: Path, extra_ddl: str, message: str) -> None:
    engine = as_engine(_sqlite_url(scratch / "s.db"))
    build_metadata().create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(extra_ddl)
    with pytest.raises(DiscoveryError, match=message):
        discover(engine, shared_tables=SHARED)
    if message == "notes":  # an explicit exclusion accepts leaving that table behind
        assert "notes" not in [t.name for t in discover(engine, exclude=["notes"], shared_tables=SHARED).tables]


def test_existing_incompatible_target_table_is_refused(scratch: Path) -> None:
    source = as_engine(_sqlite_url(scratch / "s.db"))
    target = as_engine(_sqlite_url(scratch / "t.db"))
    populate(source, Sizes(customers=3, audit=2))
    with target.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE audit_log (id TEXT, tenant_id TEXT, at TEXT, PRIMARY KEY (tenant_id, id))")
    m = TenantDataMover(source, target, TENANT, progress=False, shared_tables=SHARED)
    with pytest.raises(SchemaMismatchError, match=r"audit_log: primary key .*audit_log\.score: missing"):
        m.prepare_target()


# --------------------------------------------------------------------------- copy, verify, idempotency


def test_bulk_copy_moves_exactly_the_tenant(pair: Pair) -> None:
    m = mover(pair)
    assert set(m.prepare_target()) == {"plans", "tenants", "customers", "orders", "order_items", "audit_log"}
    events: list[BatchEvent] = []
    states = m.bulk_copy(on_batch=events.append)

    src_counts = tenant_counts(pair.source, TENANT)
    assert sum(src_counts.values()) > 2500  # "thousands of rows"
    assert tenant_counts(pair.target, TENANT) == src_counts
    for other in OTHERS:
        assert tenant_counts(pair.target, other) == dict.fromkeys(src_counts, 0)
        assert tenant_counts(pair.source, other)["orders"] > 0  # ... and they are still in the source
    assert_target_matches_source(pair.source, pair.target)
    assert [r[0] for r in rows_of(pair.target, "tenants", None)] == [TENANT]  # registry: own row only
    assert len(rows_of(pair.target, "plans", None)) == 3  # reference: whole table

    # Batches were keyset pages of at most batch_size rows, each reported once, marks increasing.
    bulk = [e for e in events if e.table == "order_items" and not e.done]
    assert all(0 < e.rows <= 97 for e in bulk)
    assert sum(e.rows for e in bulk) == src_counts["order_items"]
    assert states["order_items"].checksum.count == src_counts["order_items"]

    snapshot = m.verify_snapshot({n: s.checksum for n, s in states.items()})
    final = m.verify()
    assert snapshot.ok and final.ok

    # The dedicated DB's key generator was moved past the copied keys: the app's next insert works.
    with pair.target.begin() as conn:
        new_id = conn.execute(
            sa.text("INSERT INTO orders (tenant_id, customer_id, placed_at, total) VALUES (:t, 1, :d, 1) RETURNING id"),
            {"t": TENANT, "d": dt.datetime(2025, 1, 1)},
        ).scalar_one()
        assert new_id > conn.execute(sa.text("SELECT max(id) FROM orders WHERE id <> :i"), {"i": new_id}).scalar()
    assert final.method == snapshot.method == pair.method
    assert {t.table: t.actual for t in final.tables} == {n: s.checksum for n, s in states.items()}


def test_rerun_neither_duplicates_nor_fails(pair: Pair) -> None:
    m = mover(pair)
    m.prepare_target()
    first = m.bulk_copy()
    # A re-run with no journal at all (operator deleted it) and one resumed from done states.
    again = mover(pair)
    again.prepare_target()
    second = again.bulk_copy()
    third = again.bulk_copy(resume=second)
    assert {n: s.checksum for n, s in first.items()} == {n: s.checksum for n, s in second.items()}
    assert third == second
    assert tenant_counts(pair.target, TENANT) == tenant_counts(pair.source, TENANT)
    again.verify()


def test_resume_reconciles_a_batch_committed_but_not_journaled(pair: Pair) -> None:
    """Crash between the target commit and the journal write, while the source keeps changing."""
    m = mover(pair)
    m.prepare_target()
    journaled: dict[str, Any] = {}

    class Crash(Exception):
        pass

    def on_batch(e: BatchEvent) -> None:
        if e.table == "order_items" and e.checksum is not None and e.checksum.count > 3 * 97:
            raise Crash  # this batch is committed in the target but never reaches the "journal"
        journaled[e.table] = e

    with pytest.raises(Crash):
        m.bulk_copy(on_batch=on_batch)
    from ops.migration import TableCopyState

    resume = {n: TableCopyState(e.high_water_mark, e.checksum, e.done) for n, e in journaled.items()}
    lost_after = resume["order_items"].high_water_mark
    assert lost_after is not None
    # Live writes hit rows inside the lost batch: update one, delete another's children-free line.
    with pair.source.begin() as conn:
        k = conn.execute(
            sa.text("SELECT order_id, line_no FROM order_items WHERE tenant_id = :t AND order_id > :o ORDER BY 1, 2"),
            {"t": TENANT, "o": lost_after[0]},
        ).all()
        conn.execute(
            sa.text("UPDATE order_items SET sku = 'CHANGED', payload = NULL WHERE order_id = :o AND line_no = :l"),
            {"o": k[1][0], "l": k[1][1]},
        )
        conn.execute(
            sa.text("DELETE FROM order_items WHERE order_id = :o AND line_no = :l"), {"o": k[2][0], "l": k[2][1]}
        )

    states = mover(pair).bulk_copy(resume=resume)
    m.verify_snapshot({n: s.checksum for n, s in states.items()})  # recorded checksum is exact again
    m.verify()
    assert_target_matches_source(pair.source, pair.target)


def test_delta_copy_catches_inserts_updates_and_deletes(pair: Pair) -> None:
    m = mover(pair)
    m.prepare_target()
    m.bulk_copy()
    with pair.source.begin() as conn:
        mutate_source(conn)
    with pytest.raises(VerificationError):
        m.verify()
    deltas = m.delta_copy()
    assert deltas["customers"].inserted == 2 and deltas["customers"].updated == 2
    assert deltas["orders"].updated >= 1 and deltas["orders"].deleted == 1
    assert deltas["order_items"].inserted == 1 and deltas["order_items"].deleted >= 3
    assert deltas["audit_log"].deleted == 1
    assert deltas["plans"].updated == 1
    report = m.verify()
    assert report.ok
    assert_target_matches_source(pair.source, pair.target)
    # Idempotent: a second delta finds nothing to do.
    again = m.delta_copy()
    assert all(s.inserted == s.updated == s.deleted == 0 for s in again.values())


def mutate_source(conn: sa.Connection) -> None:
    """Writes that happen after the bulk copy: inserts, updates (incl. to NULL), deletes, an FK move."""
    t, x = TENANT, sa.text
    conn.execute(x("INSERT INTO customers VALUES (:t, 9001, 'nuevo Ñ', NULL, '2024-05-05 10:00:00', 1.25)"), {"t": t})
    conn.execute(x("INSERT INTO customers VALUES (:t, 9002, 'zweiter', 'z@x', '2024-05-05 11:00:00', NULL)"), {"t": t})
    conn.execute(
        x("UPDATE customers SET name = 'renamed 🚀', balance = NULL WHERE tenant_id = :t AND id = 3"), {"t": t}
    )
    conn.execute(x("UPDATE customers SET email = NULL WHERE tenant_id = :t AND id = 4"), {"t": t})
    oid = conn.execute(x("SELECT max(id) FROM orders WHERE tenant_id = :t"), {"t": t}).scalar()
    conn.execute(x("UPDATE orders SET customer_id = 9001, note = 'moved' WHERE id = :o"), {"o": oid})
    conn.execute(
        x("INSERT INTO order_items VALUES (:o, 99, :t, 'NEW', 1, 0.01, NULL, :b)"), {"o": oid, "t": t, "b": b"\x00\xff"}
    )
    victim = conn.execute(x("SELECT min(id) FROM orders WHERE tenant_id = :t"), {"t": t}).scalar()
    conn.execute(x("DELETE FROM order_items WHERE order_id = :o"), {"o": victim})
    conn.execute(x("DELETE FROM orders WHERE id = :o"), {"o": victim})
    conn.execute(x("UPDATE plans SET monthly = 99.99 WHERE id = 2"))
    last_audit = conn.execute(x("SELECT max(id) FROM audit_log WHERE tenant_id = :t"), {"t": t}).scalar()
    conn.execute(x("DELETE FROM audit_log WHERE id = :a"), {"a": last_audit})  # beyond the source's last key


def tamper_target(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE order_items SET qty = qty + 1 WHERE order_id = (SELECT max(order_id) FROM order_items) "
                "AND line_no = 1"
            )
        )


def test_tampered_target_row_is_detected(pair: Pair) -> None:
    m = mover(pair)
    m.prepare_target()
    states = m.bulk_copy()
    tamper_target(pair.target)
    expected = {n: s.checksum for n, s in states.items()}
    if m.fast_path:
        # sqlite-exact records row counts, proven exact batch by batch while copying; a row edited in
        # the target afterwards keeps the count, so only the full comparison below sees it.
        assert m.verify_snapshot(expected).ok
    else:
        with pytest.raises(VerificationError, match="table 'order_items': content checksum differs") as err:
            m.verify_snapshot(expected)
        assert err.value.report.mismatched == ["order_items"]
    with pytest.raises(VerificationError, match="order_items") as final_err:
        m.verify()
    assert final_err.value.report.mismatched == ["order_items"]
    # A lost row is reported as a count mismatch.
    with pair.target.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)")
    report = m.verify(raise_on_mismatch=False)
    assert sorted(report.mismatched) == ["audit_log", "order_items"]
    assert "rows expected" in next(t.describe() for t in report.tables if t.table == "audit_log")


@pytest.mark.parametrize("fast_path", [True, False], ids=["sqlite", "sqlite-generic"])
def test_purge_requires_a_passing_final_verification(scratch: Path, fast_path: bool) -> None:
    p = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], fast_path=fast_path))
    m = mover(p)
    m.prepare_target()
    states = m.bulk_copy()
    snapshot = m.verify_snapshot({n: s.checksum for n, s in states.items()})
    with pytest.raises(PurgeRefusedError, match="final"):
        m.purge_source(snapshot)
    tamper_target(p.target)
    failed = m.verify(raise_on_mismatch=False)
    with pytest.raises(PurgeRefusedError):
        m.purge_source(failed)
    m.delta_copy()  # repairs the tampered row
    final = m.verify()
    with pytest.raises(PurgeRefusedError, match="tenant"):
        TenantDataMover(p.source, p.target, "globex", progress=False, shared_tables=SHARED).purge_source(final)
    # A write that reached the old cell after verification must not be destroyed silently.
    with p.source.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_log SET message = 'late write' WHERE id = (SELECT min(id) FROM audit_log "
                             "WHERE tenant_id = 'acme')")  # fmt: skip
    with pytest.raises(PurgeRefusedError, match="audit_log"):
        m.purge_source(final)
    m.delta_copy()
    final = m.verify()
    others_before = {o: tenant_counts(p.source, o) for o in OTHERS}
    deleted = m.purge_source(final)
    assert deleted == {n: c for n, c in tenant_counts(p.target, TENANT).items()}
    assert tenant_counts(p.source, TENANT) == dict.fromkeys(deleted, 0)
    assert {o: tenant_counts(p.source, o) for o in OTHERS} == others_before
    assert len(rows_of(p.source, "plans", None)) == 3 and len(rows_of(p.source, "tenants", None)) == 3
    assert tenant_counts(p.target, TENANT) == deleted  # the dedicated copy is untouched


# --------------------------------------------------------------------------- SQLite→SQLite fast path


def columns(engine: sa.Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        return [r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({table})")]


def storage(
    engine: sa.Engine, table: str, tenant: str = TENANT, cols: list[str] | None = None
) -> list[tuple[Any, ...]]:
    """The tenant's rows of ``table`` exactly as SQLite stores them: storage class and value of each column
    (of ``cols``: default all)."""
    cols = cols or columns(engine, table)
    with engine.connect() as conn:
        select = ", ".join(f"typeof({c}), {c}" for c in cols)
        scope = "id" if table == "tenants" else "tenant_id" if "tenant_id" in cols else None
        where, params = (f" WHERE {scope} = ?", (tenant,)) if scope else ("", ())  # reference tables: all rows
        return sorted(conn.exec_driver_sql(f"SELECT {select} FROM {table}{where}", params).all(), key=repr)


TABLES = ("plans", "tenants", "customers", "orders", "order_items", "audit_log")
SMALL = Sizes(customers=12, orders_per_customer=3, items_per_order=3, audit=30)


def test_fast_path_is_chosen_for_sqlite_files_and_can_be_switched_off(scratch: Path) -> None:
    src, tgt = _sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")
    populate(as_engine(src), Sizes(customers=3, audit=2))
    assert TenantDataMover(src, tgt, TENANT, shared_tables=SHARED).fast_path
    assert TenantDataMover(src, tgt, TENANT, shared_tables=SHARED).method == SQLITE_EXACT
    off = TenantDataMover(src, tgt, TENANT, fast_path=False, shared_tables=SHARED)
    assert not off.fast_path and off.method == CANONICAL
    # Nothing to ATTACH by name: an in-memory target, or the same file on both sides.
    assert not TenantDataMover(src, "sqlite://", TENANT, shared_tables=SHARED).fast_path
    assert not TenantDataMover(src, src, TENANT, shared_tables=SHARED).fast_path


def test_fast_path_moves_and_verifies_rows_without_python(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every Python row reader/writer/hasher booby-trapped, the whole cycle still runs."""
    from ops.migration.checksum import RowHasher
    from ops.migration.rows import TableIO

    p = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], sizes=SMALL))

    def trap(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("rows went through Python")

    for cls, name in [(TableIO, "fetch_rows"), (TableIO, "insert_missing"), (TableIO, "update_rows"),
                      (TableIO, "delete_keys"), (TableIO, "checksum_range"), (RowHasher, "hashes")]:  # fmt: skip
        monkeypatch.setattr(cls, name, trap)
    m = mover(p)
    states = m.bulk_copy()
    m.verify_snapshot({n: s.checksum for n, s in states.items()})
    with p.source.begin() as conn:
        mutate_source(conn)
    m.delta_copy()
    m.verify()
    assert_target_matches_source(p.source, p.target)
    with pytest.raises(AssertionError, match="through Python"):  # the traps do catch the generic path
        TenantDataMover(
            p.source, _sqlite_url(scratch / "u.db"), TENANT, fast_path=False, shared_tables=SHARED
        ).bulk_copy()


def test_fast_and_generic_paths_leave_identical_targets(scratch: Path) -> None:
    source = as_engine(_sqlite_url(scratch / "s.db"))
    populate(source)
    targets = {fast: as_engine(_sqlite_url(scratch / f"t-{fast}.db")) for fast in (True, False)}
    movers = {fast: TenantDataMover(source, t, TENANT, batch_size=97, progress=False, fast_path=fast,
                                    shared_tables=SHARED)
              for fast, t in targets.items()}  # fmt: skip
    events: dict[bool, list[BatchEvent]] = {True: [], False: []}
    bulk = {fast: m.bulk_copy(on_batch=events[fast].append) for fast, m in movers.items()}
    # Same batches: same tables in the same order, same row counts, same high-water marks.
    assert [(e.table, e.rows, e.high_water_mark, e.done) for e in events[True]] == [
        (e.table, e.rows, e.high_water_mark, e.done) for e in events[False]
    ]
    assert {n: s.checksum.count for n, s in bulk[True].items()} == {n: s.checksum.count for n, s in bulk[False].items()}
    with source.begin() as conn:
        mutate_source(conn)
    deltas = {fast: m.delta_copy() for fast, m in movers.items()}
    stats = {fast: {n: (s.inserted, s.updated, s.deleted) for n, s in d.items()} for fast, d in deltas.items()}
    assert stats[True] == stats[False]
    assert stats[True]["customers"] == (2, 2, 0)
    for table in TABLES:  # byte for byte: storage classes included
        assert storage(targets[True], table) == storage(targets[False], table), table
    reports = {fast: m.verify() for fast, m in movers.items()}
    assert [(t.table, t.actual.count) for t in reports[True].tables] == [
        (t.table, t.actual.count) for t in reports[False].tables
    ]


def _tamper_storage_class(engine: sa.Engine, key: tuple[int, int]) -> None:
    # 7 and 7.0 are equal to SQLite's `=` and `IS`; a BLOB-affinity column keeps them apart.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE order_items SET payload = 7.0 WHERE order_id = :o AND line_no = :l"),
                     {"o": key[0], "l": key[1]})  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "table", "rows_each"),
    [
        (
            "UPDATE order_items SET qty = qty + 1 WHERE rowid = (SELECT max(rowid) FROM order_items)",
            "order_items",
            True,
        ),
        ("UPDATE customers SET name = name || '!' WHERE rowid = (SELECT min(rowid) FROM customers)", "customers", True),
        (
            "UPDATE orders SET note = NULL WHERE note IS NOT NULL AND id = (SELECT min(id) FROM orders WHERE note "
            "IS NOT NULL)",
            "orders",
            True,
        ),
        ("storage class", "order_items", True),
        ("DELETE FROM audit_log WHERE id = (SELECT min(id) FROM audit_log)", "audit_log", False),
        (
            "INSERT INTO audit_log VALUES ('zzz', 'acme', '2024-01-01 00:00:00.000000', 1.5, 'planted')",
            "audit_log",
            False,
        ),
        ("UPDATE audit_log SET tenant_id = 'globex' WHERE id = (SELECT min(id) FROM audit_log)", "audit_log", False),
        ("UPDATE plans SET monthly = 11 WHERE id = 1", "plans", True),
    ],
    ids=["value", "text", "to-null", "storage-class", "lost-row", "extra-row", "out-of-scope", "reference"],
)
def test_fast_path_verification_catches_every_kind_of_difference(
    scratch: Path, tamper: str, table: str, rows_each: bool
) -> None:
    p = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], sizes=SMALL))
    m = mover(p)
    m.bulk_copy()
    if tamper == "storage class":
        key = (1, 1)
        with p.source.begin() as conn:
            conn.exec_driver_sql("UPDATE order_items SET payload = 7 WHERE order_id = 1 AND line_no = 1")
        m.delta_copy()
        m.verify()  # 7 copied as 7
        _tamper_storage_class(p.target, key)
    else:
        with p.target.begin() as conn:
            conn.exec_driver_sql(tamper)
    report = m.verify(raise_on_mismatch=False)
    assert report.mismatched == [table]
    bad = next(t for t in report.tables if t.table == table)
    assert bad.differing == 1
    assert ("row(s) differ" if rows_each else "rows expected") in bad.describe()
    m.delta_copy()
    if tamper.startswith("UPDATE audit_log SET tenant_id"):
        # Both paths leave a row of another tenant alone, even where its key blocks one of ours.
        assert m.verify(raise_on_mismatch=False).mismatched == ["audit_log"]
        return
    assert m.verify().ok  # the delta repaired exactly what verification found
    assert storage(p.target, table) == storage(p.source, table)


def _by_key(engine: sa.Engine, table: str, cols: list[str]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """The tenant's rows as SQLite stores them (see ``storage``), by primary key."""
    with engine.connect() as conn:
        pk = [col[1] for col in conn.exec_driver_sql(f"PRAGMA table_info({table})").all() if col[5]]
    return {tuple(row[2 * cols.index(c) + 1] for c in pk): row for row in storage(engine, table, cols=cols)}


def _differing(source: sa.Engine, target: sa.Engine, table: str) -> int:
    """Rows missing from the target + rows only in it + rows stored differently, in the source's columns:
    computed in Python."""
    cols = columns(source, table)
    src, tgt = _by_key(source, table, cols), _by_key(target, table, cols)
    return len(src.keys() ^ tgt.keys()) + sum(src[k] != tgt[k] for k in src.keys() & tgt.keys())


@pytest.mark.parametrize("range_rows", [1, 7, None], ids=["ranges-of-1", "ranges-of-7", "whole-tables"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_fast_path_verification_in_parallel_slices_counts_every_difference(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, range_rows: int | None, workers: int
) -> None:
    """Verification cuts the target into rowid slices over parallel connections; differences at the
    first and last keys, on slice boundaries, beyond either end and in rows of another tenant are
    each counted once, exactly as a row-by-row comparison in Python counts them."""
    from ops.migration import copy as engine

    monkeypatch.setattr(engine, "VERIFY_WORKERS", workers)
    if range_rows is not None:
        monkeypatch.setattr(engine, "COMPARE_RANGE_ROWS", range_rows)
    p = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], sizes=SMALL))
    _plant_differences_and_count_them(p)


# Target tables the verification cannot cut by rowid: slices are key ranges there instead.
NO_ROWID_TARGETS = {
    "without-rowid": "CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id), line_no INTEGER "
    "NOT NULL, tenant_id VARCHAR(20) NOT NULL, sku VARCHAR(40) NOT NULL, qty INTEGER NOT NULL, price NUMERIC(10, 2) "
    "NOT NULL, gift BOOLEAN, payload BLOB, PRIMARY KEY (order_id, line_no)) WITHOUT ROWID",
    # Every name of the rowid taken by a column (extra nullable target columns are allowed).
    "rowid-names-taken": "CREATE TABLE audit_log (id VARCHAR(36) NOT NULL PRIMARY KEY, tenant_id VARCHAR(20) NOT NULL, "
    "at DATETIME NOT NULL, score FLOAT, message TEXT, rowid INTEGER, _rowid_ INTEGER, oid INTEGER)",
}


@pytest.mark.parametrize("layout", sorted(NO_ROWID_TARGETS))
def test_fast_path_verification_of_tables_without_a_rowid_counts_every_difference(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    """A target table WITHOUT ROWID, or whose rowid names are all columns, is cut at its keys: the
    same differences are found as with rowid slices, on the same boundaries."""
    from ops.migration import copy as engine
    from ops.migration import sqlite_native

    monkeypatch.setattr(engine, "VERIFY_WORKERS", 2)
    monkeypatch.setattr(engine, "COMPARE_RANGE_ROWS", 7)
    p = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], sizes=SMALL))
    table = NO_ROWID_TARGETS[layout].split()[2]
    with p.target.begin() as conn:
        conn.exec_driver_sql(NO_ROWID_TARGETS[layout])
    m = _plant_differences_and_count_them(p)
    with sqlite_native.attached(p.target, str(p.source.url.database)) as conn:
        tp = next(tp for tp in m.plan.tables if tp.name == table)
        assert sqlite_native.NativeTable(tp, TENANT, conn).rowid is None  # so the key-range slices were used


def _plant_differences_and_count_them(p: Pair) -> TenantDataMover:
    m = mover(p)
    m.bulk_copy()
    assert m.verify().ok
    with p.target.begin() as conn:
        keys = conn.exec_driver_sql(
            "SELECT order_id, line_no FROM order_items WHERE tenant_id = ? ORDER BY order_id, line_no", (TENANT,)
        ).all()
        first, last = keys[0], keys[-1]
        conn.exec_driver_sql("DELETE FROM order_items WHERE order_id = ? AND line_no = ?", tuple(first))
        for at in (6, 7, 13, 14):  # the last row of a 7-row range and the first of the next
            conn.exec_driver_sql("UPDATE order_items SET qty = qty + 1 WHERE order_id = ? AND line_no = ?",
                                 tuple(keys[at]))  # fmt: skip
        conn.exec_driver_sql("UPDATE order_items SET payload = 7.0 WHERE order_id = ? AND line_no = ?", tuple(last))
        for order_id, line_no in ((first[0], 0), (last[0], 99)):  # before the first key, after the last
            conn.exec_driver_sql("INSERT INTO order_items VALUES (?, ?, ?, 'PLANTED', 1, 1, NULL, NULL)",
                                 (order_id, line_no, TENANT))  # fmt: skip
        conn.exec_driver_sql("UPDATE audit_log SET tenant_id = 'globex' WHERE id = "
                             "(SELECT id FROM audit_log WHERE tenant_id = ? ORDER BY id LIMIT 1 OFFSET 9)", (TENANT,))
        conn.exec_driver_sql("UPDATE orders SET note = 'changed' WHERE id = "
                             "(SELECT max(id) FROM orders WHERE tenant_id = ?)", (TENANT,))  # fmt: skip
    report = m.verify(raise_on_mismatch=False)
    found = {t.table: t.differing for t in report.tables}
    assert found == {table: _differing(p.source, p.target, table) for table in TABLES}
    assert (found["order_items"], found["audit_log"], found["orders"]) == (8, 1, 1)
    m.delta_copy()  # repairs all but the key another tenant holds in the target (left alone, reported)
    assert m.verify(raise_on_mismatch=False).mismatched == ["audit_log"]
    return m


def test_fast_path_batch_checks_the_target_holds_only_what_it_copied(scratch: Path) -> None:
    """A row appearing in the target past the mark mid-copy makes the batch inexact; it is synced."""
    p = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], sizes=SMALL))
    m = mover(p, batch_size=20)
    planted: list[tuple[int, int]] = []

    def plant(e: BatchEvent) -> None:
        if e.table == "order_items" and not planted and e.high_water_mark is not None:
            key = (e.high_water_mark[0], 50)  # inside the next batch's key range, unknown to the source
            with p.target.begin() as conn:
                conn.execute(sa.text("INSERT INTO order_items VALUES (:o, :l, :t, 'PLANTED', 1, 1, NULL, NULL)"),
                             {"o": key[0], "l": key[1], "t": TENANT})  # fmt: skip
            planted.append(key)

    states = m.bulk_copy(on_batch=plant)
    assert planted
    assert m.verify_snapshot({n: s.checksum for n, s in states.items()}).ok
    m.verify()
    assert_target_matches_source(p.source, p.target)


@pytest.mark.parametrize(("collation", "tampered"), [("NOCASE", "ABC"), ("RTRIM", "abc  ")])
def test_fast_path_compares_text_byte_for_byte_under_any_collation(
    scratch: Path, collation: str, tampered: str
) -> None:
    source, target = as_engine(_sqlite_url(scratch / "s.db")), as_engine(_sqlite_url(scratch / "t.db"))
    with source.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TABLE notes (id INTEGER PRIMARY KEY, tenant_id TEXT, body TEXT COLLATE {collation})"
        )
        conn.exec_driver_sql("INSERT INTO notes VALUES (1, 'acme', 'abc'), (2, 'acme', 'x'), (3, 'globex', 'y')")
    m = TenantDataMover(source, target, TENANT, progress=False, shared_tables=SHARED)
    m.bulk_copy()
    m.verify()
    with target.begin() as conn:  # equal to 'abc' under the column's collation, different bytes
        conn.exec_driver_sql("UPDATE notes SET body = ? WHERE id = 1", (tampered,))
        assert conn.exec_driver_sql(f"SELECT ? = 'abc' COLLATE {collation}", (tampered,)).scalar() == 1
    assert m.verify(raise_on_mismatch=False).tables[0].differing == 1
    m.delta_copy()
    assert m.verify().ok
    with target.connect() as conn:
        assert conn.exec_driver_sql("SELECT body FROM notes WHERE id = 1").scalar() == "abc"


def test_live_writes_during_bulk_copy_do_not_fail_the_snapshot_verification(pair: Pair) -> None:
    """The tenant keeps writing rows the copy already passed: the pre-freeze verification must not
    call that a broken copy; the final verification sees it, the delta carries it."""
    m = mover(pair)
    m.prepare_target()
    batches: list[BatchEvent] = []

    def write_behind_the_mark(e: BatchEvent) -> None:
        batches.append(e)
        if e.table != "order_items" or sum(b.table == "order_items" for b in batches) != 3:
            return
        with pair.source.begin() as conn:
            (o1, l1), (o2, l2) = conn.execute(
                sa.text("SELECT order_id, line_no FROM order_items WHERE tenant_id = :t ORDER BY 1, 2 LIMIT 2"),
                {"t": TENANT},
            ).all()
            assert (o2, l2) < e.high_water_mark  # both already copied
            conn.execute(sa.text("UPDATE order_items SET sku = 'LIVE' WHERE order_id = :o AND line_no = :l"),
                         {"o": o1, "l": l1})  # fmt: skip
            conn.execute(sa.text("DELETE FROM order_items WHERE order_id = :o AND line_no = :l"), {"o": o2, "l": l2})
            conn.execute(sa.text("INSERT INTO order_items VALUES (:o, 99, :t, 'NEW', 1, 2.5, NULL, NULL)"),
                         {"o": o1, "t": TENANT})  # fmt: skip

    states = m.bulk_copy(on_batch=write_behind_the_mark)
    snapshot = m.verify_snapshot({n: s.checksum for n, s in states.items()})
    assert snapshot.ok, snapshot.to_dict()
    with pytest.raises(VerificationError, match="order_items") as err:
        m.verify()
    assert err.value.report.mismatched == ["order_items"]
    deltas = m.delta_copy()
    assert (deltas["order_items"].inserted, deltas["order_items"].updated, deltas["order_items"].deleted) == (1, 1, 1)
    m.verify()
    assert_target_matches_source(pair.source, pair.target)


@pytest.mark.parametrize("fast_path", [True, False], ids=["sqlite", "sqlite-generic"])
def test_key_held_by_another_tenant_in_the_target_is_reported_not_overwritten(scratch: Path, fast_path: bool) -> None:
    """Same outcome on both SQLite paths: the insert skips the key, the recorded count says the row
    was read, so the pre-freeze verification reports the gap and nothing is overwritten.
    (PostgreSQL's COPY batches fail on the key instead, see TableIO.copy_in.)"""
    pair = next(_pair("sqlite", [_sqlite_url(scratch / "s.db"), _sqlite_url(scratch / "t.db")], fast_path=fast_path))
    m = mover(pair)
    m.prepare_target()
    with pair.source.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM audit_log WHERE tenant_id = :t ORDER BY id LIMIT 1 OFFSET 5"),
                           {"t": TENANT}).one()  # fmt: skip
    with pair.target.begin() as conn:
        conn.execute(sa.text("INSERT INTO audit_log VALUES (:i, 'globex', :a, NULL, 'not yours')"),
                     {"i": row.id, "a": row.at})  # fmt: skip
    states = m.bulk_copy()
    assert states["audit_log"].checksum.count == tenant_counts(pair.source, TENANT)["audit_log"]
    report = m.verify_snapshot({n: s.checksum for n, s in states.items()}, raise_on_mismatch=False)
    assert report.mismatched == ["audit_log"]
    assert "rows expected" in report.tables[0].describe()
    with pair.target.connect() as conn:
        kept = conn.execute(sa.text("SELECT tenant_id, message FROM audit_log WHERE id = :i"), {"i": row.id}).one()
    assert tuple(kept) == ("globex", "not yours")
    assert m.verify(raise_on_mismatch=False).mismatched == ["audit_log"]


def test_cross_dialect_copy_sqlite_to_postgresql_checksums_agree(scratch: Path) -> None:
    """Canonical checksums are dialect-independent: SQLite rows verify against PostgreSQL rows."""
    with pg.get_server().databases(1) as (pg_url,):
        source = as_engine(_sqlite_url(scratch / "s.db"))
        populate(source, Sizes(customers=30, audit=50))
        target = as_engine(pg_url)
        try:
            m = TenantDataMover(source, target, TENANT, batch_size=50, progress=False, shared_tables=SHARED)
            assert m.method == CANONICAL and not m.raw and not m.fast_path
            m.prepare_target()
            states = m.bulk_copy()
            report = m.verify()
            assert {t.table: t.expected for t in report.tables} == {n: s.checksum for n, s in states.items()}
            assert_target_matches_source(source, target)
        finally:
            target.dispose()


def test_progress_bar_reports_rows_per_second(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = as_engine(_sqlite_url(scratch / "s.db"))
    populate(source, Sizes(customers=10, audit=10))
    TenantDataMover(source, _sqlite_url(scratch / "t.db"), TENANT, progress=True, shared_tables=SHARED).bulk_copy()
    err = capsys.readouterr().err
    assert "copy order_items" in err and "rows/s" in err
    TenantDataMover(source, _sqlite_url(scratch / "u.db"), TENANT, progress=False, shared_tables=SHARED).bulk_copy()
    assert capsys.readouterr().err == ""


def test_checksum_is_order_independent_and_counts_duplicates() -> None:
    a, b = Checksum(1, 5), Checksum(1, (1 << 64) - 2)
    assert a + b == b + a == Checksum(2, 3)
    assert Checksum.parse(str(a + b)) == a + b
    assert a + a != a


@pytest.mark.parametrize("dialect", ["sqlite", "mssql"])
def test_keyset_predicates_match_lexicographic_order(scratch: Path, dialect: str) -> None:
    """Row-value form (SQLite/PostgreSQL) and the expanded OR form SQL Server gets, run on SQLite."""
    from ops.migration.rows import _keyset

    engine = as_engine(_sqlite_url(scratch / "k.db"))
    md = sa.MetaData()
    t = sa.Table("k", md, sa.Column("a", sa.Integer, primary_key=True), sa.Column("b", sa.String(5), primary_key=True))
    md.create_all(engine)
    keys = [(a, b) for a in range(4) for b in ("", "a", "b")]
    with engine.begin() as conn:
        conn.execute(t.insert(), [{"a": a, "b": b} for a, b in keys])
        for pivot in [(1, "a"), (0, ""), (3, "b"), (2, "zz")]:
            for op in (">", "<="):
                got = conn.execute(sa.select(t.c.a, t.c.b).where(_keyset([t.c.a, t.c.b], pivot, op, dialect)))
                want = [k for k in keys if (k > pivot if op == ">" else k <= pivot)]
                assert sorted(tuple(r) for r in got) == want, (pivot, op)


def test_postgresql_insert_path_keeps_server_checksums() -> None:
    """A PostgreSQL pair without COPY (another driver) inserts rows but must still record pg-md5."""
    with pg.get_server().databases(2) as (a, b):
        source, target = as_engine(a), as_engine(b)
        try:
            populate(source, Sizes(customers=30, audit=40))
            m = TenantDataMover(source, target, TENANT, batch_size=37, progress=False, shared_tables=SHARED)
            m.pg_copy = False
            states = m.bulk_copy()
            assert m.verify_snapshot({n: s.checksum for n, s in states.items()}).method == "pg-md5"
            m.verify()
            assert_target_matches_source(source, target)
        finally:
            source.dispose()
            target.dispose()


KIDS_SCHEMA = (
    "CREATE TABLE parents (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, code TEXT UNIQUE, label TEXT)",
    "CREATE TABLE kids (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, parent_id INTEGER REFERENCES parents(id), "
    "parent_code TEXT REFERENCES parents(code))",
)


@pytest.mark.parametrize("new_kid", [15, 999], ids=["mid-batch", "end-of-table"])
def test_checked_batches_fetch_a_parent_created_after_its_table_was_copied(scratch: Path, new_kid: int) -> None:
    """Child batches are copied with the target's foreign keys off and their parents joined in the
    target. A child whose parent appeared in the source after the parents were copied is neither
    skipped nor copied orphaned — in the middle of a batch or after its last row — and a NULL key
    needs no parent, exactly as SQLite's own check has it."""
    source, target = as_engine(_sqlite_url(scratch / "s.db")), as_engine(_sqlite_url(scratch / "t.db"))
    with source.begin() as conn:
        for ddl in KIDS_SCHEMA:
            conn.exec_driver_sql(ddl)
        for i in range(1, 6):
            conn.exec_driver_sql("INSERT INTO parents VALUES (?, ?, ?, 'p')", (i, TENANT, f"c{i}"))
        for k in range(10, 110, 10):  # kids 10..100; 30 has no parent at all (NULL keys)
            pid = None if k == 30 else k // 25 + 1
            code = None if pid is None else f"c{pid}"
            conn.exec_driver_sql("INSERT INTO kids VALUES (?, ?, ?, ?)", (k, TENANT, pid, code))
    m = TenantDataMover(source, target, TENANT, progress=False, batch_size=4)
    m.prepare_target()

    appeared: list[int] = []

    def parent_appears(e: BatchEvent) -> None:
        if e.table == "parents" and e.done and not appeared:
            appeared.append(6)
            with source.begin() as conn:
                conn.exec_driver_sql("INSERT INTO parents VALUES (6, ?, 'c6', 'late')", (TENANT,))
                conn.exec_driver_sql("INSERT INTO kids VALUES (?, ?, 6, 'c6')", (new_kid, TENANT))

    m.bulk_copy(on_batch=parent_appears)
    assert appeared
    with target.connect() as conn:
        assert conn.exec_driver_sql("SELECT id, parent_id FROM kids WHERE id IN (30, ?)", (new_kid,)).all() == sorted(
            [(30, None), (new_kid, 6)]
        )
        assert conn.exec_driver_sql("SELECT label FROM parents WHERE id = 6").scalar() == "late"
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    assert m.verify().ok
    assert m._native_tables["kids"]._parent_check is not None  # the join did the checking


@pytest.mark.parametrize(
    ("ddl", "why"),
    [
        ("CREATE TABLE kids (id INTEGER PRIMARY KEY, tenant_id TEXT, up INTEGER REFERENCES kids(id))", "itself"),
        ("CREATE TABLE kids (id INTEGER PRIMARY KEY, tenant_id TEXT, parent_id TEXT REFERENCES parents(id))",
         "affinity"),
        ("CREATE TABLE kids (id INTEGER PRIMARY KEY, tenant_id TEXT, label TEXT REFERENCES parents(label))",
         "not unique"),
        ("CREATE TABLE kids (id INTEGER PRIMARY KEY, tenant_id TEXT, code TEXT COLLATE NOCASE "
         "REFERENCES parents(code))", "collation"),
    ],
)
def test_a_join_that_might_disagree_with_sqlites_own_check_leaves_it_to_sqlite(
    scratch: Path, ddl: str, why: str
) -> None:
    """Where a join could pair keys SQLite's foreign-key lookup would not (or the reverse), the batch
    keeps the target's foreign keys on instead."""
    from ops.migration import sqlite_native

    db = sqlite3.connect(scratch / "t.db")
    db.execute(KIDS_SCHEMA[0])
    db.execute(ddl)
    assert sqlite_native._parent_check(db, "kids") is None, why
    db.execute("DROP TABLE kids")
    db.execute(KIDS_SCHEMA[1])
    assert sqlite_native._parent_check(db, "kids") is not None
    db.close()
