"""Per-table row access on one database: keyset batches, idempotent writes, range checksums.

Keys are tuples of primary-key values *as the driver returns them*; every comparison of keys is
done by the database (``WHERE pk > :hwm``), never in Python, so text keys follow the database's
collation on both reads and range boundaries.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from ops.migration.checksum import (
    CANONICAL,
    MOD,
    PG_MD5,
    PG_PINNED_SETTINGS,
    Checksum,
    RowHasher,
    pg_row_hash_sql,
)
from ops.migration.discovery import TablePlan

Key = tuple[Any, ...]
Row = Sequence[Any]

# Dialects whose DB-API values round-trip unchanged into the same dialect: we skip SQLAlchemy's
# type processing there (several times faster on SQLite, and byte-exact). SQL Server keeps typed
# tables because SQLAlchemy needs the real column types to switch IDENTITY_INSERT on.
_RAW_DIALECTS = frozenset({"sqlite", "postgresql"})
# Dialects with tuple comparison `(a, b) > (x, y)` that can use the composite PK index.
_ROW_VALUE_DIALECTS = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})


def _keyset(cols: Sequence[sa.ColumnElement[Any]], key: Key, op: str, dialect: str) -> sa.ColumnElement[bool]:
    """`cols > key` (op '>') or `cols <= key` (op '<='), lexicographic over the PK columns."""
    if len(cols) == 1:
        return cols[0] > key[0] if op == ">" else cols[0] <= key[0]
    if dialect in _ROW_VALUE_DIALECTS:
        lhs, rhs = sa.tuple_(*cols), sa.tuple_(*[sa.literal(v, c.type) for v, c in zip(key, cols, strict=True)])
        return lhs > rhs if op == ">" else lhs <= rhs
    # SQL Server has no row-value comparison: expand to (a > x) OR (a = x AND b > y) ...
    strict = [
        sa.and_(*[cols[j] == key[j] for j in range(i)], (cols[i] > key[i]) if op == ">" else (cols[i] < key[i]))
        for i in range(len(cols))
    ]
    if op == "<=":
        strict.append(sa.and_(*[c == v for c, v in zip(cols, key, strict=True)]))
    return sa.or_(*strict)


class TableIO:
    """Reads and writes one plan table on one engine."""

    def __init__(
        self,
        tp: TablePlan,
        engine: Engine,
        *,
        tenant_id: Any,
        raw: bool,
    ) -> None:
        self.tp = tp
        self.engine = engine
        self.dialect = engine.dialect.name
        self.raw = raw
        md = sa.MetaData(schema=tp.table.schema)
        if raw:
            # NullType columns: no bind/result processors, values pass through the driver untouched.
            self.table = sa.Table(
                tp.name,
                md,
                *[sa.Column(c.name, sa.types.NullType(), primary_key=c.primary_key) for c in tp.table.columns],
            )
        else:
            self.table = sa.Table(tp.name, md, autoload_with=engine)
        self.cols = [self.table.c[n] for n in tp.columns]
        self.pk = [self.table.c[n] for n in tp.pk]
        self.pk_idx = [tp.columns.index(n) for n in tp.pk]
        self.scope: sa.ColumnElement[bool] = (
            self.table.c[tp.scope_column] == tenant_id if tp.scope_column else sa.true()
        )
        # Raw rows are hashed through the source's reflected types (same dialect on both sides),
        # typed rows through this engine's own column types.
        hasher_cols = [tp.table.c[n] for n in tp.columns] if raw else self.cols
        self.hasher = RowHasher(hasher_cols, engine.dialect, raw=raw)
        self._insert = self._build_insert()
        self._insert_sql: str | None = None
        if raw and self.dialect == "sqlite":
            compiled = self._insert.compile(dialect=engine.dialect, column_keys=list(tp.columns))
            assert list(compiled.positiontup or ()) == list(tp.columns), compiled.positiontup
            self._insert_sql = str(compiled)
        self._quoted = [engine.dialect.identifier_preparer.quote(n) for n in tp.columns]

    # ------------------------------------------------------------------ reads

    def _where(self, lo: Key | None, hi: Key | None) -> list[sa.ColumnElement[bool]]:
        clauses = [self.scope]
        if lo is not None:
            clauses.append(_keyset(self.pk, lo, ">", self.dialect))
        if hi is not None:
            clauses.append(_keyset(self.pk, hi, "<=", self.dialect))
        return clauses

    def key_of(self, row: Sequence[Any]) -> Key:
        # memoryview (PostgreSQL bytea) is unhashable; bytes binds back identically.
        return tuple(bytes(v) if isinstance(v, memoryview) else v for v in (row[i] for i in self.pk_idx))

    def fetch_rows(
        self, conn: Connection, lo: Key | None, hi: Key | None = None, limit: int | None = None, *, lock: bool = False
    ) -> list[Row]:
        """Rows in scope with lo < key <= hi; ``lock``: hold them until the transaction ends (purge)."""
        stmt = sa.select(*self.cols).where(*self._where(lo, hi)).order_by(*self.pk)
        if limit is not None:
            stmt = stmt.limit(limit)
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        elif lock and self.dialect == "mssql":
            stmt = stmt.with_hint(self.table, "WITH (UPDLOCK, HOLDLOCK)", "mssql")
        return list(conn.execute(stmt))

    def fetch_keys(
        self, conn: Connection, lo: Key | None, hi: Key | None = None, limit: int | None = None
    ) -> list[Key]:
        stmt = sa.select(*self.pk).where(*self._where(lo, hi)).order_by(*self.pk)
        if limit is not None:
            stmt = stmt.limit(limit)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in conn.execute(stmt)]

    def _matching(self, cols: Sequence[sa.ColumnElement[Any]], values: Sequence[Key]) -> sa.ColumnElement[bool]:
        if len(cols) == 1:
            return cols[0].in_([v[0] for v in values])
        if self.dialect in _ROW_VALUE_DIALECTS:
            return sa.tuple_(*cols).in_([tuple(v) for v in values])
        return sa.or_(*[sa.and_(*[c == x for c, x in zip(cols, v, strict=True)]) for v in values])

    def fetch_matching(self, conn: Connection, columns: Sequence[str], values: Sequence[Key]) -> list[Row]:
        """Rows in scope whose ``columns`` equal one of ``values`` (the parents some children reference)."""
        cols = [self.table.c[n] for n in columns]
        out: list[Row] = []
        for i in range(0, len(values), 500):
            stmt = sa.select(*self.cols).where(self.scope, self._matching(cols, values[i : i + 500]))
            out.extend(conn.execute(stmt.order_by(*self.pk)))
        return out

    def existing_keys(self, conn: Connection, keys: Sequence[Key]) -> list[Key]:
        """Which of ``keys`` this table holds (any scope: a key held by another tenant blocks an insert too)."""
        out: list[Key] = []
        for i in range(0, len(keys), 500):
            stmt = sa.select(*self.pk).where(self._matching(self.pk, keys[i : i + 500]))
            out.extend(self.key_of_pk(r) for r in conn.execute(stmt))
        return out

    def key_of_pk(self, row: Sequence[Any]) -> Key:
        return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)

    def checksum_keys(self, conn: Connection, keys: Sequence[Key]) -> Checksum:
        """pg-md5 checksum of the rows with these keys (in the caller's snapshot)."""
        for setting in PG_PINNED_SETTINGS:
            conn.exec_driver_sql(setting)
        h: sa.ColumnClause[Any] = sa.literal_column(pg_row_hash_sql(self._quoted))
        total = Checksum()
        for i in range(0, len(keys), 500):
            stmt = (
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.cast(h, sa.Numeric)), 0))
                .select_from(self.table)
                .where(self.scope, self._matching(self.pk, keys[i : i + 500]))
            )
            count, digest = conn.execute(stmt).one()
            total += Checksum(int(count), int(digest) % MOD)
        return total

    def batch_end(self, conn: Connection, lo: Key | None, limit: int) -> Key | None:
        """The key of the ``limit``-th row after ``lo`` (or the last one), computed by the server.

        Keyset, not OFFSET: the inner query walks the PK index from ``lo`` and stops after
        ``limit`` keys; only one key crosses the wire.
        """
        inner = sa.select(*self.pk).where(*self._where(lo, None)).order_by(*self.pk).limit(limit).subquery()
        cols = [inner.c[c.name] for c in self.pk]
        row = conn.execute(sa.select(*cols).order_by(*[c.desc() for c in cols]).limit(1)).first()
        return self.key_of(row) if row is not None else None

    def last_key(self, conn: Connection, lo: Key | None) -> Key | None:
        stmt = sa.select(*self.pk).where(*self._where(lo, None)).order_by(*[c.desc() for c in self.pk]).limit(1)
        row = conn.execute(stmt).first()
        return tuple(row) if row is not None else None

    def count(self, conn: Connection) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(self.table).where(self.scope)).scalar_one())

    def checksum_range(self, conn: Connection, method: str, lo: Key | None, hi: Key | None, batch: int) -> Checksum:
        """Checksum of the rows in scope with lo < key <= hi (None = unbounded)."""
        if method == PG_MD5:
            return self._pg_checksum(conn, lo, hi)
        assert method == CANONICAL, method
        total = Checksum()
        while True:
            rows = self.fetch_rows(conn, lo, hi, batch)
            if not rows:
                return total
            total += self.hasher.checksum(rows)
            if len(rows) < batch:
                return total
            lo = self.key_of(rows[-1])

    def _pg_checksum(self, conn: Connection, lo: Key | None, hi: Key | None) -> Checksum:
        for setting in PG_PINNED_SETTINGS:
            conn.exec_driver_sql(setting)
        h: sa.ColumnClause[Any] = sa.literal_column(pg_row_hash_sql(self._quoted))
        stmt = (
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.cast(h, sa.Numeric)), 0))
            .select_from(self.table)
            .where(*self._where(lo, hi))
        )
        count, total = conn.execute(stmt).one()
        return Checksum(int(count), int(total) % MOD)

    # ------------------------------------------------------------------ writes

    def _build_insert(self) -> sa.Insert:
        if self.dialect == "sqlite":
            return sqlite_dialect.insert(self.table).on_conflict_do_nothing(index_elements=self.pk)
        if self.dialect == "postgresql":
            return pg_dialect.insert(self.table).on_conflict_do_nothing(index_elements=self.pk)
        return sa.insert(self.table)

    def insert_missing(
        self, conn: Connection, rows: Sequence[Row], lo: Key | None, hi: Key | None, *, absent: bool = False
    ) -> None:
        """Insert rows whose key is absent; existing keys are left alone (idempotent re-runs).

        SQLite/PostgreSQL use ON CONFLICT (pk) DO NOTHING; other dialects (SQL Server) first read
        the target keys in the batch's range and skip those — safe because the migration lock
        guarantees we are the target's only writer. ``absent``: the caller checked the keys already.
        """
        if not rows:
            return
        if self.dialect not in ("sqlite", "postgresql") and not absent:
            existing = set(self.fetch_keys(conn, lo, hi))
            rows = [r for r in rows if self.key_of(r) not in existing]
            if not rows:
                return
        if self._insert_sql is not None:
            # Same-dialect SQLite: straight to the driver's executemany, no per-row dicts.
            conn.exec_driver_sql(self._insert_sql, [tuple(r) for r in rows])
            return
        names = self.tp.columns
        conn.execute(self._insert, [dict(zip(names, r, strict=True)) for r in rows])

    def update_rows(self, conn: Connection, rows: Sequence[Row]) -> None:
        if not rows:
            return
        non_pk = [n for n in self.tp.columns if n not in self.tp.pk]
        if not non_pk:
            return  # a row that is all key cannot differ from another with the same key
        stmt = (
            sa.update(self.table)
            .where(*[c == sa.bindparam(f"k_{c.name}", type_=c.type) for c in self.pk])
            .values({n: sa.bindparam(f"v_{n}", type_=self.table.c[n].type) for n in non_pk})
        )
        params = []
        for r in rows:
            d = {f"v_{n}": r[self.tp.columns.index(n)] for n in non_pk}
            d.update({f"k_{n}": r[i] for n, i in zip(self.tp.pk, self.pk_idx, strict=True)})
            params.append(d)
        conn.execute(stmt, params)

    def delete_keys(self, conn: Connection, keys: Sequence[Key]) -> int:
        if not keys:
            return 0
        stmt = sa.delete(self.table).where(
            self.scope, *[c == sa.bindparam(f"k_{c.name}", type_=c.type) for c in self.pk]
        )
        conn.execute(stmt, [{f"k_{c.name}": v for c, v in zip(self.pk, k, strict=True)} for k in keys])
        return len(keys)

    # ------------------------------------------------------------------ PostgreSQL COPY fast path

    def copy_out(self, conn: Connection, lo: Key | None, hi: Key) -> io.StringIO:
        """COPY the range's rows (text format) into memory; caller holds a snapshot transaction."""
        stmt = sa.select(*self.cols).where(*self._where(lo, hi))
        compiled = stmt.compile(dialect=conn.dialect)
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            query = cur.mogrify(str(compiled), compiled.params).decode()
            buf = io.StringIO()
            cur.copy_expert(f"COPY ({query}) TO STDOUT", buf)
        finally:
            cur.close()
        buf.seek(0)
        return buf

    def copy_in(self, conn: Connection, buf: io.StringIO) -> None:
        """COPY the text straight into the target table.

        Only called for key ranges the target does not hold yet (the bulk copy reconciles
        whatever lies past the high-water mark before it resumes, and the migration lock keeps
        other migrators out), so no conflict handling is needed; a stray writer would surface as
        a primary-key violation, never as a duplicate.
        """
        q = conn.dialect.identifier_preparer
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.copy_expert(f"COPY {q.format_table(self.table)} ({', '.join(self._quoted)}) FROM STDIN", buf)
        finally:
            cur.close()


def is_raw_pair(source: Engine, target: Engine) -> bool:
    return source.dialect.name == target.dialect.name and source.dialect.name in _RAW_DIALECTS


def uses_pg_copy(source: Engine, target: Engine) -> bool:
    return (
        source.dialect.name == target.dialect.name == "postgresql"
        and source.dialect.driver == target.dialect.driver == "psycopg2"
    )
