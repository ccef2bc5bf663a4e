"""SQLite→SQLite fast path: rows are moved and compared by SQLite itself, never by Python.

When both databases are SQLite files (the embedded default), a connection to the target ATTACHes
the source as ``stamps_src`` and every unit of work is a few statements in one transaction:

* **copy batch**: ``INSERT INTO main.t (cols) SELECT cols FROM stamps_src.t WHERE <scope> AND
  pk > :mark ORDER BY pk LIMIT :n ON CONFLICT (pk) DO NOTHING`` — the generic path's
  insert-if-absent. The transaction pins the source, so the batch is proven exact by counting:
  all selected rows were inserted and the target holds nothing else past the mark. Otherwise
  (rows already there, keys taken outside the tenant's scope) the range is synced key by key.
* **sync range** (bulk-copy reconcile, delta): DELETE target rows whose key the source lacks,
  UPDATE rows whose content differs, INSERT missing ones — the set-based twin of
  ``TenantDataMover._sync_range``, reporting the same inserted/updated/deleted counts.
* **compare** (verification): the source's in-scope rows counted once per table, and the target read
  slice by slice (rowid intervals, else key ranges), each row paired through the source's primary
  key and compared in every column (text byte for byte, storage class too where the column's
  affinity leaves it open). Keys are unique on both sides, so "both counts equal the number of
  identical pairs" is exact set equality — stronger than a 64-bit checksum. The slices run on
  parallel connections (``TenantDataMover._compare``).
* **purge** (``purge_identical``): deletes only source rows with an identical row in the target,
  by the same column comparison, and counts what it had to keep.

Transactions are deferred, so the source only ever gets a SHARED lock (BEGIN IMMEDIATE would
reserve every attached database). In rollback-journal mode that lock lasts until the batch commits:
the shared cell's writers wait at most one batch (``batch_size`` bounds it: about 20 ms at the fast
path's default) to commit theirs; in WAL mode they do not wait at all. Only the purge
(``purge_identical``) writes to ``stamps_src``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ops.migration.discovery import MigrationPlan, TablePlan
from ops.migration.errors import MigrationError

Key = tuple[Any, ...]
SRC = "stamps_src"  # schema name of the attached source
MAX_SLICES = 4096  # per table, in verification (see NativeTable.target_slices)


def sqlite_file(engine: Engine) -> str | None:
    """Absolute path of the file behind a pysqlite ``engine`` if another connection can ATTACH it."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.get_driver_name() != "pysqlite":
        return None
    db = url.database
    # In-memory and URI databases cannot be reopened by name from another connection.
    if not db or db == ":memory:" or db.startswith("file:") or url.query.get("uri"):
        return None
    # The real path: a symlink and its target are one file (identity.py compares inodes as well).
    return os.path.realpath(db)


def unmovable_values(engine: Engine, plan: MigrationPlan, tenant_id: Any) -> list[str]:
    """What the generic engine cannot carry exactly out of a SQLite source, one line per column.

    SQLite stores any value in any column: an untyped column has no type to create in the target or
    compare by, and text in an INTEGER/NUMERIC/REAL column cannot become a number in another database.
    (SQLite→SQLite on the fast path copies storage classes as they are, so it needs no such check.)
    """
    if engine.dialect.name != "sqlite":
        return []
    problems = []
    with engine.connect() as conn:
        for tp in plan.tables:
            for col in tp.table.columns:
                if isinstance(col.type, sa.types.NullType):
                    problems.append(f"{tp.fullname}.{col.name} has no declared type (declare one, e.g. TEXT)")
                    continue
                if not isinstance(col.type, sa.Integer | sa.Numeric) or isinstance(col.type, sa.Boolean):
                    continue
                c = _quote(col.name)
                where = f"typeof({c}) IN ('text', 'blob')"
                params: list[Any] = []
                if tp.scope_column:
                    where += f" AND {_quote(tp.scope_column)} = ?"
                    params.append(tenant_id)
                row = conn.exec_driver_sql(
                    f"SELECT count(*), min({c}) FROM {_quote(tp.name)} WHERE {where}", tuple(params)
                ).one()
                if row[0]:
                    problems.append(
                        f"{tp.fullname}.{col.name} ({col.type}) holds {row[0]} non-numeric value(s), e.g. "
                        f"{str(row[1])[:40]!r}: fix them in the source or change the column's type"
                    )
    return problems


@contextlib.contextmanager
def attached(target: Engine, source_file: str, *, scans: bool = False) -> Iterator[sqlite3.Connection]:
    """A pooled target connection in autocommit mode with the source attached as ``stamps_src``.

    Callers open transactions with :func:`transaction`. A connection left in any other state (an
    exception mid-transaction, a failed DETACH) is invalidated rather than returned to the pool.
    ``scans``: the connection reads whole tables (verification): memory-mapped reads and a bigger
    page cache, for this connection only. A copying connection goes without: both slowed the
    benchmark's copy by a tenth (each commit then has a large cache and a mapping to keep coherent).
    """
    proxy = target.raw_connection()
    conn = proxy.driver_connection
    assert isinstance(conn, sqlite3.Connection)
    clean = False
    try:
        saved = conn.isolation_level
        conn.isolation_level = None  # explicit BEGIN/COMMIT: the module must not open transactions itself
        conn.execute(f"ATTACH DATABASE ? AS {SRC}", (source_file,))
        for schema in ("main", SRC) if scans else ():
            conn.execute(f"PRAGMA {schema}.cache_size = -65536")  # nothing persistent changes in either file
            conn.execute(f"PRAGMA {schema}.mmap_size = 1073741824")
        yield conn
        conn.execute(f"DETACH DATABASE {SRC}")
        conn.isolation_level = saved
        clean = True
    finally:
        if not clean:
            proxy.invalidate()
        proxy.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN")  # deferred, see the module docstring
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. SQLITE_FULL)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _affinity(declared: str) -> str:
    """Column affinity from the declared type, by SQLite's rules (datatype3.html, section 3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


class Doubt(MigrationError):
    """A checked batch could not prove itself exact: its transaction rolls back and it is redone.

    Never leaves the engine (``TenantDataMover._checked_batch`` catches it); a MigrationError so
    that, were it ever to, the CLI would still report it as a failed migration step."""


@contextlib.contextmanager
def foreign_keys_off(conn: sqlite3.Connection) -> Iterator[None]:
    """The target's foreign keys unenforced for the transactions inside (the pragma is a no-op within one)."""
    (was,) = conn.execute("PRAGMA foreign_keys").fetchone()
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA foreign_keys = {int(was)}")


def _parent_check(conn: sqlite3.Connection, table: str) -> tuple[str, str] | None:
    """SQL that finds, for the source rows ``s`` of ``table``, each parent the target's foreign keys want.

    Returns (LEFT JOINs, condition true where every parent is there or a key column is NULL), or None
    where a join might not agree with SQLite's own check, which then stays in charge: a foreign key
    to the table itself (the parent may be in the same batch), to a missing table or to columns
    that are not its primary key or a unique index, differing column affinities (the lookup applies
    the parent's), or any declared collation (a unique index may compare with its own).
    """
    fks: dict[int, list[tuple[str, str, str | None]]] = {}
    for fk_id, _seq, parent, child_col, parent_col, *_ in conn.execute(
        f"PRAGMA main.foreign_key_list({_quote(table)})"
    ):
        fks.setdefault(fk_id, []).append((parent, child_col, parent_col))
    if not fks or _declares_collation(conn, "main", table):
        return None
    child_info = {r[1]: r for r in conn.execute(f"PRAGMA main.table_info({_quote(table)})")}
    joins, conditions = [], []
    for n, cols in enumerate(fks.values()):
        parent = cols[0][0]
        info = {r[1]: r for r in conn.execute(f"PRAGMA main.table_info({_quote(parent)})")}
        if parent == table or not info or _declares_collation(conn, "main", parent):
            return None
        pk = [r[1] for r in sorted(info.values(), key=lambda r: r[5]) if r[5]]
        named = [pc for _p, _c, pc in cols if pc]
        targets = named if len(named) == len(cols) else pk  # none named: the parent's primary key
        if len(targets) != len(cols) or not _unique(conn, parent, targets, pk):
            return None
        pairs = list(zip([c for _p, c, _pc in cols], targets, strict=True))
        if any(c not in child_info or pc not in info for c, pc in pairs):
            return None
        if any(_affinity(child_info[c][2] or "") != _affinity(info[pc][2] or "") for c, pc in pairs):
            return None
        alias = f"stamps_p{n}"
        on = " AND ".join(f"{alias}.{_quote(pc)} = +s.{_quote(c)}" for c, pc in pairs)
        joins.append(f" LEFT JOIN main.{_quote(parent)} AS {alias} ON {on}")
        nulls = " OR ".join(f"s.{_quote(c)} IS NULL" for c, _pc in pairs)
        conditions.append(f"({nulls} OR {alias}.{_quote(pairs[0][1])} IS NOT NULL)")
    return "".join(joins), " AND ".join(conditions)


def _unique(conn: sqlite3.Connection, table: str, cols: list[str], pk: list[str]) -> bool:
    """Whether ``cols`` are ``table``'s primary key or the columns of one of its unique indexes."""
    if set(cols) == set(pk):
        return True
    for _seq, name, unique, *_ in conn.execute(f"PRAGMA main.index_list({_quote(table)})"):
        if unique and {r[2] for r in conn.execute(f"PRAGMA main.index_info({_quote(name)})")} == set(cols):
            return True
    return False


def _rowid_name(conn: sqlite3.Connection, schema: str, table: str) -> str | None:
    """The name that reaches ``table``'s rowid, or None: a WITHOUT ROWID table, or columns named all three."""
    row = conn.execute(f"SELECT sql FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if row is None:
        return None
    ddl = row[0] or ""
    if re.search(r"\bWITHOUT\s+ROWID\b", ddl[ddl.rfind(")") + 1 :], re.IGNORECASE):
        return None  # table options follow the column list's closing parenthesis
    taken = {r[1].lower() for r in conn.execute(f"PRAGMA {schema}.table_info({_quote(table)})")}
    return next((name for name in ("rowid", "_rowid_", "oid") if name not in taken), None)


def _blob_affinity_columns(conn: sqlite3.Connection, schema: str, table: str) -> set[str]:
    rows = conn.execute(f"PRAGMA {schema}.table_info({_quote(table)})").fetchall()
    return {r[1] for r in rows if _affinity(r[2] or "") == "BLOB"}


def _declares_collation(conn: sqlite3.Connection, schema: str, table: str) -> bool:
    # Column collations are only in the DDL text (neither PRAGMA table_info nor SQLAlchemy's
    # reflection reports them); without any, every column compares with BINARY already.
    row = conn.execute(f"SELECT sql FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return row is None or "COLLATE" in (row[0] or "").upper()


@dataclass(frozen=True)
class Comparison:
    """One table compared: rows on each side, rows paired by key, pairs identical in every column."""

    source_rows: int = 0
    target_rows: int = 0
    pairs: int = 0
    identical: int = 0

    def __add__(self, other: Comparison) -> Comparison:
        return Comparison(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def differing(self) -> int:
        """Rows missing from the target + rows only in the target + rows whose content differs."""
        return self.source_rows + self.target_rows - self.pairs - self.identical


class NativeTable:
    """The SQL for one plan table: source ``stamps_src.<t>`` (alias s), target ``main.<t>``."""

    def __init__(self, tp: TablePlan, tenant_id: Any, conn: sqlite3.Connection) -> None:
        self.tp = tp
        self.tenant_id = tenant_id
        name = _quote(tp.name)
        self.src, self.tgt = f"{SRC}.{name}", f"main.{name}"
        self.cols = [_quote(c) for c in tp.columns]
        self.pk = [_quote(c) for c in tp.pk]
        self.non_pk = [_quote(c) for c in tp.columns if c not in tp.pk]
        self.scope_col = _quote(tp.scope_column) if tp.scope_column else None
        # Only BLOB ("none") affinity stores 1 and 1.0 as they come, and SQLite's equality calls them
        # equal; every other affinity fixes the storage class of equal values, so typeof() is not needed.
        loose = _blob_affinity_columns(conn, SRC, tp.name) | _blob_affinity_columns(conn, "main", tp.name)
        self.loose = [_quote(c) for c in tp.columns if c in loose]
        self.collate = any(_declares_collation(conn, s, tp.name) for s in (SRC, "main"))
        self._marks = "?" if len(self.pk) == 1 else f"({', '.join('?' * len(self.pk))})"
        self.rowid = _rowid_name(conn, "main", tp.name)
        self._parent_check: tuple[str, str] | None = None
        self._parent_checked = False
        self.doubts = 0  # checked batches of this table that were redone (TenantDataMover._checked_batch)

    def parent_check(self, conn: sqlite3.Connection) -> tuple[str, str] | None:
        """This table's :func:`_parent_check`, looked up once (copies need it, verification does not)."""
        if not self._parent_checked:
            self._parent_check, self._parent_checked = _parent_check(conn, self.tp.name), True
        return self._parent_check

    # ------------------------------------------------------------------ SQL fragments

    def _key(self, alias: str) -> str:
        cols = [f"{alias}.{c}" for c in self.pk]
        return cols[0] if len(cols) == 1 else f"({', '.join(cols)})"

    def _order(self, alias: str, desc: bool = False) -> str:
        return ", ".join(f"{alias}.{c}{' DESC' if desc else ''}" for c in self.pk)

    def _select(self, alias: str, cols: list[str]) -> str:
        return ", ".join(f"{alias}.{c}" for c in cols)

    def where(self, alias: str, lo: Key | None = None, hi: Key | None = None) -> tuple[str, list[Any]]:
        """Rows of ``alias`` in the tenant's scope with lo < key <= hi (None: unbounded)."""
        sql, params = ["1"], []  # a WHERE also keeps INSERT … SELECT … ON CONFLICT unambiguous
        if self.scope_col is not None:
            sql.append(f"{alias}.{self.scope_col} = ?")
            params.append(self.tenant_id)
        for op, key in ((">", lo), ("<=", hi)):
            if key is not None:
                sql.append(f"{self._key(alias)} {op} {self._marks}")
                params.extend(key)
        return " AND ".join(sql), params

    def _same(self, a: str, b: str, *, paired: bool = False) -> str:
        """1 if rows ``a`` and ``b`` are identical in every plan column, else 0 (never NULL).

        One row-value ``IS`` over the columns plus, for the loose ones, their values as blobs: where
        ``IS`` calls two values equal they can still differ in storage class only as integer vs real
        (1 and 1.0), whose texts differ ("1", "1.0"). A CAST is an opcode, ``typeof()`` a function
        call: on the benchmark that is a fifth of the verification. ``paired``: the rows were joined
        on key equality, so key columns need no second look unless a declared collation let ``=``
        pair keys that differ byte for byte.
        """
        cols = self.non_pk if paired and not self.collate else self.cols
        suffix = " COLLATE BINARY" if self.collate else ""
        lhs = [f"{a}.{c}" for c in cols] + [f"CAST({a}.{c} AS BLOB)" for c in self.loose]
        rhs = [f"{b}.{c}{suffix}" for c in cols] + [f"CAST({b}.{c} AS BLOB)" for c in self.loose]
        if not lhs:
            return "1"
        if len(lhs) == 1:
            return f"({lhs[0]} IS {rhs[0]})"
        return f"(({', '.join(lhs)}) IS ({', '.join(rhs)}))"

    def _match(self, a: str, b: str) -> str:
        return " AND ".join(f"{a}.{c} = {b}.{c}" for c in self.pk)

    # ------------------------------------------------------------------ reads

    def source_keys(self, conn: sqlite3.Connection, lo: Key | None, limit: int) -> list[Key]:
        w, p = self.where("s", lo)
        sql = f"SELECT {self._select('s', self.pk)} FROM {self.src} AS s WHERE {w} ORDER BY {self._order('s')} LIMIT ?"
        return [tuple(r) for r in conn.execute(sql, [*p, limit]).fetchall()]

    def target_last_key(self, conn: sqlite3.Connection, lo: Key | None) -> Key | None:
        """The last target key in scope after ``lo`` (None: there is none)."""
        w, p = self.where("t", lo)
        row = conn.execute(
            f"SELECT {self._select('t', self.pk)} FROM {self.tgt} AS t WHERE {w} ORDER BY {self._order('t', True)} "
            "LIMIT 1",
            p,
        ).fetchone()
        return tuple(row) if row is not None else None

    def target_key_after(self, conn: sqlite3.Connection, lo: Key | None, n: int) -> Key | None:
        """The ``n``-th target key in scope after ``lo`` (keyset: walks the index from ``lo``)."""
        w, p = self.where("t", lo)
        row = conn.execute(
            f"SELECT {self._select('t', self.pk)} FROM {self.tgt} AS t WHERE {w} ORDER BY {self._order('t')} "
            "LIMIT 1 OFFSET ?",
            [*p, n - 1],
        ).fetchone()
        return tuple(row) if row is not None else None

    def source_rows(self, conn: sqlite3.Connection, lo: Key | None = None, hi: Key | None = None) -> int:
        """The source's in-scope rows with lo < key <= hi (from the scope index alone where there is one)."""
        w, p = self.where("s", lo, hi)
        return int(conn.execute(f"SELECT count(*) FROM {self.src} AS s WHERE {w}", p).fetchone()[0])

    def target_slices(self, conn: sqlite3.Connection, rows: int) -> list[tuple[Any, Any]]:
        """The target cut into slices of about ``rows`` rows for :meth:`compare_slice`, covering it whole.

        Rowid intervals where the table has a rowid: the bounds cost two lookups, and each slice is a
        stretch of the table's own b-tree, read in order without an index. Otherwise (WITHOUT ROWID,
        or every rowid name taken by a column) key ranges at every ``rows``-th target key.
        """
        if self.rowid is None:
            bounds: list[Any] = self.target_bounds(conn, rows)
        else:
            r = _quote(self.rowid)
            # Two statements: SQLite answers a lone min() or max() from the b-tree's edge, not both.
            (first,) = conn.execute(f"SELECT min({r}) FROM {self.tgt}").fetchone()
            (last,) = conn.execute(f"SELECT max({r}) FROM {self.tgt}").fetchone()
            if first is None:
                return [(None, None)]
            # Sparse rowids (large ids as the primary key) would make most slices empty: a cap keeps
            # their number, and so the per-slice transactions, bounded.
            step = max(rows, -(-(last - first + 1) // MAX_SLICES))
            bounds = list(range(first - 1 + step, last, step))
        edges = [None, *bounds]
        return list(zip(edges, [*bounds, None], strict=True))

    def compare_slice(self, conn: sqlite3.Connection, lo: Any = None, hi: Any = None) -> Comparison:
        """The target's in-scope rows of one slice, each paired with the source's in-scope row of its key.

        Returns target rows, pairs and identical pairs (``source_rows`` is counted once per table by
        :meth:`source_rows`). The target is read in slice order and the source probed through its
        primary key: a fifth less time than walking the source's scope index and probing the target.
        Keys are unique on both sides, so "source rows = target rows = pairs = identical pairs" over
        the whole table is exact set equality — stronger than a 64-bit checksum.
        """
        if self.rowid is not None:
            r = f"t.{_quote(self.rowid)}"
            tw, tp = self.where("t")
            for op, bound in ((">", lo), ("<=", hi)):
                if bound is not None:
                    tw += f" AND {r} {op} ?"
                    tp.append(bound)
            table = f"{self.tgt} AS t NOT INDEXED"  # the rowid range, not the scope index
        else:
            tw, tp = self.where("t", lo, hi)
            table = f"{self.tgt} AS t"
        # The source's scope is tested per pair, not in the join: a join on the key alone probes the
        # primary key, a narrower index than a scope index holding the key (a fifth less time).
        if self.scope_col is not None:
            pair, pair_params = f"s.{self.scope_col} = ?", [self.tenant_id]
        else:
            pair, pair_params = f"s.{self.pk[0]} IS NOT NULL", []  # never NULL in a pair: joined on key equality
        rows, pairs, identical = conn.execute(
            f"SELECT count(*), coalesce(sum(CASE WHEN {pair} THEN 1 ELSE 0 END), 0), "
            f"coalesce(sum(CASE WHEN {pair} THEN {self._same('s', 't', paired=True)} ELSE 0 END), 0) "
            f"FROM {table} LEFT JOIN {self.src} AS s ON {self._match('t', 's')} WHERE {tw}",
            [*pair_params, *pair_params, *tp],
        ).fetchone()
        return Comparison(0, int(rows), int(pairs), int(identical))

    def target_bounds(self, conn: sqlite3.Connection, rows: int) -> list[Key]:
        """Target keys in scope splitting it into ranges of about ``rows`` rows (keyset, index only)."""
        bounds: list[Key] = []
        while (key := self.target_key_after(conn, bounds[-1] if bounds else None, rows)) is not None:
            bounds.append(key)
        return bounds

    # ------------------------------------------------------------------ writes (caller holds the transaction)

    def _insert_sql(self, where: str, tail: str = "", joins: str = "") -> str:
        return (
            f"INSERT INTO {self.tgt} ({', '.join(self.cols)}) SELECT {self._select('s', self.cols)} "
            f"FROM {self.src} AS s{joins} WHERE {where}{tail} ON CONFLICT ({', '.join(self.pk)}) DO NOTHING"
        )

    def copy_batch(self, conn: sqlite3.Connection, lo: Key | None, n: int) -> tuple[int, Key | None]:
        """Copy the next ``n`` source rows after ``lo``; returns (rows read, last key), (0, None) at the end.

        Relies on what the bulk copy establishes before its batches: the target holds no in-scope
        row past ``lo``. Checked, not assumed, in the batch's transaction: if nothing was there and
        all ``n`` rows read were inserted, the target's tail is exactly those rows; otherwise the
        range is synced, so the target still ends up ≡ the rows read.
        """
        w, p = self.where("s", lo)
        held = self.target_last_key(conn, lo) is not None
        inserted = conn.execute(self._insert_sql(w, f" ORDER BY {self._order('s')} LIMIT ?"), [*p, n]).rowcount
        if inserted == n and not held:
            return n, self.target_last_key(conn, lo)  # the n source rows after lo, all inserted, nothing else: exact
        keys = self.source_keys(conn, lo, n)
        if not keys:
            return 0, None
        if not held and inserted == len(keys):
            return len(keys), keys[-1]
        read, _stats = self.sync(conn, lo, keys[-1], deletes=True)
        return read, keys[-1]

    def copy_batch_checked(self, conn: sqlite3.Connection, lo: Key | None, n: int) -> tuple[int, Key | None]:
        """:meth:`copy_batch` with the target's foreign keys off (:func:`foreign_keys_off`): the insert
        joins each row to its parents in the target and copies only rows whose parents are there.

        SQLite's own check opens a cursor per row and key; the join keeps one per statement (the
        benchmark's copy: 0.02 s less). Proven exact or :class:`Doubt` (the caller rolls back and
        redoes the batch with the foreign keys on, so a missing parent is fetched as before): nothing
        was past ``lo`` in the target, every source row with lo < key <= the last inserted was
        inserted (none left out for a missing parent, a key taken, anything), and at the end of the
        table no source row is left past it.
        """
        check = self.parent_check(conn)
        assert check is not None  # the caller checks only batches of tables that have one
        joins, parents_there = check
        if self.target_last_key(conn, lo) is not None:
            raise Doubt
        w, p = self.where("s", lo)
        order = f" ORDER BY {self._order('s')} LIMIT ?"
        inserted = conn.execute(self._insert_sql(f"{w} AND {parents_there}", order, joins), [*p, n]).rowcount
        last = self.target_last_key(conn, lo)
        if last is None:  # nothing inserted: the source must hold nothing past lo either
            if self.source_keys(conn, lo, 1):
                raise Doubt
            return 0, None
        if self.source_rows(conn, lo, last) != inserted or (inserted < n and self.source_keys(conn, last, 1)):
            raise Doubt
        return inserted, last

    def sync(self, conn: sqlite3.Connection, lo: Key | None, hi: Key, *, deletes: bool) -> tuple[int, dict[str, int]]:
        """Make the target's in-scope rows with lo < key <= hi equal to the source's.

        Returns (source rows in the range, {"inserted", "updated", "deleted"}). Deletes first and
        inserts last, so a unique value that moved from a vanished row to a new one never collides.
        """
        sw, sp = self.where("s", lo, hi)
        tw, tp = self.where(self.tgt, lo, hi)
        ss, ssp = self.where("s")
        in_source = f"SELECT 1 FROM {self.src} AS s WHERE {self._match('s', self.tgt)} AND {ss}"
        stats = {"inserted": 0, "updated": 0, "deleted": 0}
        if deletes:
            stats["deleted"] = conn.execute(
                f"DELETE FROM {self.tgt} WHERE {tw} AND NOT EXISTS ({in_source})", [*tp, *ssp]
            ).rowcount
        if self.non_pk:  # a row that is all key cannot differ from another with the same key
            stats["updated"] = conn.execute(
                f"UPDATE {self.tgt} SET ({', '.join(self.non_pk)}) = "
                f"(SELECT {self._select('s', self.non_pk)} FROM {self.src} AS s "
                f"WHERE {self._match('s', self.tgt)} AND {ss}) "
                f"WHERE {tw} AND EXISTS ({in_source} AND NOT {self._same('s', self.tgt)})",
                [*ssp, *tp, *ssp],
            ).rowcount
        stats["inserted"] = conn.execute(self._insert_sql(sw), sp).rowcount
        (count,) = conn.execute(f"SELECT count(*) FROM {self.src} AS s WHERE {sw}", sp).fetchone()
        return int(count), stats

    # ------------------------------------------------------------------ parents of live writes

    def batch_selection(self, lo: Key | None, n: int) -> tuple[str, list[Any]]:
        """SQL selecting the source rows ``copy_batch(lo, n)`` copies."""
        w, p = self.where("s", lo)
        return f"SELECT s.* FROM {self.src} AS s WHERE {w} ORDER BY {self._order('s')} LIMIT ?", [*p, n]

    def range_selection(self, lo: Key | None, hi: Key | None) -> tuple[str, list[Any]]:
        """SQL selecting the source rows with lo < key <= hi (what ``sync`` writes)."""
        w, p = self.where("s", lo, hi)
        return f"SELECT s.* FROM {self.src} AS s WHERE {w}", p

    def referenced_by(
        self, selection: str, params: list[Any], child_cols: list[str], parent_cols: list[str]
    ) -> tuple[str, list[Any]]:
        """SQL selecting this (parent) table's in-scope source rows that ``selection``'s rows reference."""
        w, p = self.where("p")
        lhs = [f"p.{_quote(c)}" for c in parent_cols]
        rhs = ", ".join(f"x.{_quote(c)}" for c in child_cols)
        target = lhs[0] if len(lhs) == 1 else f"({', '.join(lhs)})"
        return (
            f"SELECT p.* FROM {self.src} AS p WHERE {w} AND {target} IN (SELECT {rhs} FROM ({selection}) AS x)",
            [*p, *params],
        )

    def insert_selected(self, conn: sqlite3.Connection, selection: str, params: list[Any]) -> int:
        """Insert ``selection``'s rows (of this table) the target lacks; returns how many."""
        cols = ", ".join(f"y.{c}" for c in self.cols)
        return int(
            conn.execute(
                f"INSERT INTO {self.tgt} ({', '.join(self.cols)}) SELECT {cols} FROM ({selection}) AS y WHERE 1 "
                f"ON CONFLICT ({', '.join(self.pk)}) DO NOTHING",
                params,
            ).rowcount
        )

    def purge_identical(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """Delete the source's in-scope rows that have an identical row in the target.

        Returns (deleted, left): ``left`` counts the source rows kept because the target lacks them or
        holds them differently; the caller rolls back unless it is 0. Caller holds the transaction.
        """
        w, p = self.where(self.src)
        tw, tp = self.where("t")
        gone = conn.execute(
            f"DELETE FROM {self.src} WHERE {w} AND EXISTS (SELECT 1 FROM {self.tgt} AS t "
            f"WHERE {self._match('t', self.src)} AND {tw} AND {self._same(self.src, 't')})",
            [*p, *tp],
        ).rowcount
        (left,) = conn.execute(f"SELECT count(*) FROM {self.src} WHERE {w}", p).fetchone()
        return int(gone), int(left)

    def delete_vanished(self, conn: sqlite3.Connection, lo: Key | None, hi: Key | None) -> int:
        """Delete target rows in scope with lo < key <= hi whose key the source's scope lacks."""
        w, p = self.where(self.tgt, lo, hi)
        ss, ssp = self.where("s")
        return int(
            conn.execute(
                f"DELETE FROM {self.tgt} WHERE {w} AND NOT EXISTS "
                f"(SELECT 1 FROM {self.src} AS s WHERE {self._match('s', self.tgt)} AND {ss})",
                [*p, *ssp],
            ).rowcount
        )
