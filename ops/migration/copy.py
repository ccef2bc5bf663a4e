"""The data-movement engine: bulk copy, delta copy, verification and purge of one tenant.

Guarantees:

* **Bulk copy** (writes still live): batches are read in keyset order (``pk > high-water mark
  ORDER BY pk LIMIT n``) and each is committed to the target in its own transaction, then
  reported (``BatchEvent``) so the journal can record the high-water mark and the running
  checksum of exactly what was copied. Writes are insert-if-absent (SQLite/PostgreSQL
  ``ON CONFLICT (pk) DO NOTHING``, SQL Server: skip keys already present); PostgreSQL→PostgreSQL
  batches travel as ``COPY … TO STDOUT`` / ``COPY … FROM STDIN`` with their checksum taken in
  the same REPEATABLE READ snapshot. On (re)start, rows the target already holds past the
  recorded mark (a batch committed just before a crash, before the journal was written, or a
  re-run without journal) are first reconciled key by key against the source (insert missing,
  update changed, delete vanished), so "target ≡ rows as read" and the recorded checksum stay
  exact and nothing is duplicated. Rows changed *behind* the mark while the copy runs are not
  chased: that is the delta's job. A tenant that keeps writing creates parents after their table
  was copied and children pointing at them: a write that fails its foreign key is redone after
  the missing parents (theirs too, within the tenant's scope) are fetched from the source, and those
  rows are recorded as copied rows of their table, so the verifications stay exact.
* **Delta copy** (writes frozen): makes the target's in-scope rows equal to the source's.
  Pass 1, parents first, walks the whole source keyset in ranges, compares each range (range
  checksums computed by both servers on PostgreSQL, per-row hashes otherwise) and inserts
  missing rows / updates changed ones; pass 2, children first, deletes target keys the source
  no longer has (also beyond the source's last key). Exact only if nothing writes the tenant's
  source rows while it runs (the freeze); idempotent and restartable per table.
* **Verification** is independent of the copy: ``verify()`` re-reads both sides;
  ``verify_snapshot()`` re-reads the target and compares it with the bulk copy's checksums.

**SQLite→SQLite** (both URLs SQLite files; ``fast_path=False`` turns it off): the same steps run
inside SQLite (see ``sqlite_native``): each bulk/delta batch is an ``INSERT … SELECT`` (or an
UPDATE/INSERT/DELETE range sync) from the ATTACHed source in one transaction, and verification is
an exact row-by-row comparison — no row passes through Python. Method ``sqlite-exact``: its
``Checksum`` values carry row counts only (digest 0). What changes:

* a batch is proven exact when it is copied — inside its transaction, which pins the source, every
  selected row was inserted and the target holds nothing else past the mark — and the journal
  records its row count;
* ``verify_snapshot()`` compares the target's row counts with those recorded counts. Like the
  checksum form it reads only the target, so live writes to the source during the bulk copy still
  cannot cause false alarms; unlike it, a row edited *in the target* after it was copied keeps the
  count and is left to the delta copy (which rewrites it) and ``verify()`` (which compares every
  column of every row with the source);
* ``purge_source()`` re-compares instead of re-checksumming: every source row must still have an
  identical row in the target and the source's row count must be the verified one (the generic
  engine compares canonical row texts the same way). On both paths source and target must be
  different databases by server identity (``identity``), checked again inside the one transaction
  that deletes, all or nothing.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ops.migration import sqlite_native as native
from ops.migration.checksum import PG_MD5, SQLITE_EXACT, Checksum, checksum_method
from ops.migration.db import as_engine, redact, scrub
from ops.migration.discovery import MigrationPlan, TablePlan, discover, ensure_target_schema
from ops.migration.errors import IdentityError, MigrationError, PreflightError, PurgeRefusedError
from ops.migration.identity import DatabaseIdentity, engine_identity, identity_of, require_distinct, sqlite_identity
from ops.migration.progress import BatchCallback, BatchEvent, ProgressDisplay
from ops.migration.rows import Key, TableIO, is_raw_pair, uses_pg_copy
from ops.migration.verify import TableVerification, VerificationReport, utcnow

DEFAULT_BATCH_SIZE = 5000
# The SQLite fast path commits each batch with the rollback journal's fsyncs: per row, 20,000-row
# batches cost least on the benchmark (copy 0.19 s against 0.21 s at 5,000 and 0.24 s in one
# transaction, whose dirty pages outgrow the page cache), and they hold the shared source's read
# lock for about 20 ms each — how long the shared cell's writers may wait for it.
FAST_BATCH_SIZE = 20_000
MAX_DOUBTS = 3  # per table: checked batches that could not prove themselves (see _checked_batch)
# SQLite fast path verification: connections comparing in parallel (SQLite steps without the GIL;
# more threads than cores only contend) and the size of the target slices they take in turn.
VERIFY_WORKERS = max(1, min(4, os.cpu_count() or 1))
COMPARE_RANGE_ROWS = 25_000
OWNER_TABLE = "stamps_dedicated_owner"  # in the target: which tenant the dedicated database is for
_T = TypeVar("_T")
Identities = tuple[DatabaseIdentity, DatabaseIdentity]  # (source, target)


@dataclass
class TableCopyState:
    """Bulk-copy progress of one table; what the journal persists per table."""

    high_water_mark: Key | None = None
    checksum: Checksum = field(default_factory=Checksum)
    done: bool = False


@dataclass
class DeltaState:
    """Delta-copy progress of one table (pass 1 resumes from ``high_water_mark``)."""

    high_water_mark: Key | None = None
    upserted: bool = False
    done: bool = False
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    checksum: Checksum = field(default_factory=Checksum)


def _noop(_event: BatchEvent) -> None:
    return None


@dataclass
class _Batch:
    """One source batch, read and checksummed, waiting to be written: rows or COPY text."""

    lo: Key | None
    hi: Key | None  # None: the open end of a delta range
    checksum: Checksum
    rows: list[Any] = field(default_factory=list)
    buf: io.StringIO | None = None


_DONE = object()


def _prefetch(batches: Iterator[_Batch], depth: int = 2) -> Iterator[_Batch]:
    """Run ``batches`` in a worker thread, ``depth`` items ahead; errors surface in the consumer."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)

    worker = threading.Thread(target=produce, name="migration-reader", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()  # consumer failed or finished: let the reader exit instead of blocking on put
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            worker.join(timeout=0.05)


class TenantDataMover:
    """Moves one tenant's rows from a shared database to a dedicated one.

    ``source``/``target``: SQLAlchemy URLs or Engines (SQLite, PostgreSQL, SQL Server via
    mssql+pyodbc). The plan is discovered lazily by reflection of the source. ``fast_path``: move
    and verify rows inside SQLite when both are SQLite files (``self.fast_path`` says whether it
    is in use); False forces the generic engine.
    """

    def __init__(
        self,
        source: str | sa.URL | Engine,
        target: str | sa.URL | Engine,
        tenant_id: Any,
        *,
        tenant_column: str = "tenant_id",
        schema: str | None = None,
        exclude: Iterable[str] = (),
        shared_tables: Iterable[str] = (),
        batch_size: int | None = None,
        progress: bool | None = None,
        fast_path: bool = True,
    ) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.source = as_engine(source)
        self.target = as_engine(target)
        self.tenant_id = tenant_id
        self.tenant_column = tenant_column
        self.schema = schema
        self.exclude = tuple(exclude)
        self.shared_tables = tuple(shared_tables)
        self._batch_size = batch_size
        self.progress = progress
        self.raw = is_raw_pair(self.source, self.target)
        self.pg_copy = uses_pg_copy(self.source, self.target)
        src_file, tgt_file = native.sqlite_file(self.source), native.sqlite_file(self.target)
        self._source_file = src_file
        self.fast_path = bool(fast_path and src_file and tgt_file and src_file != tgt_file and schema is None)
        self.batch_size = batch_size or (FAST_BATCH_SIZE if self.fast_path else DEFAULT_BATCH_SIZE)
        self.method = (
            SQLITE_EXACT if self.fast_path else checksum_method(self.source.dialect.name, self.target.dialect.name)
        )
        self._plan: MigrationPlan | None = None
        self._io: dict[str, tuple[TableIO, TableIO]] = {}
        self._native_tables: dict[str, native.NativeTable] = {}
        self._conn: sqlite3.Connection | None = None
        self._prepared = False
        self._pull_report: Callable[[str, Checksum], None] | None = None
        self._bulk_states: dict[str, TableCopyState] = {}

    def disable_fast_path(self) -> None:
        """Use the generic engine from now on (e.g. to finish a migration its journal began with it)."""
        self.fast_path = False
        self.batch_size = self._batch_size or DEFAULT_BATCH_SIZE
        self.method = checksum_method(self.source.dialect.name, self.target.dialect.name)

    # ------------------------------------------------------------------ plan & schema

    @property
    def plan(self) -> MigrationPlan:
        if self._plan is None:
            self._plan = discover(
                self.source,
                tenant_column=self.tenant_column,
                schema=self.schema,
                exclude=self.exclude,
                shared_tables=self.shared_tables,
            )
        return self._plan

    def preflight(self, *, target: bool = True) -> None:
        """What can be checked before anything is provisioned or copied; raises PreflightError (or
        DiscoveryError) with a message naming the database, table or column.

        Connects to the source (and the target), discovers the plan, refuses values the generic engine
        cannot carry exactly, and — with ``target`` — refuses a target that is the source under another
        name or that holds rows of another tenant.
        """
        _reachable(self.source, "source")
        problems = native.unmovable_values(self.source, self.plan, self.tenant_id) if not self.fast_path else []
        if problems:
            raise PreflightError(
                "the source holds values this migration cannot copy exactly: " + "; ".join(problems)
            )
        orphans = self.orphan_rows()
        if orphans:
            # The target enforces its foreign keys, so these rows would stop the copy half-way (after
            # the CELL was provisioned); dropping them silently would lose rows. The owner decides.
            raise PreflightError(
                "the tenant's rows reference parent rows the source does not hold for it: " + "; ".join(orphans)
                + ". Restore the missing parents or delete (or re-point) those rows in the source, then re-run"
            )
        if target:
            _reachable(self.target, "target")
            try:
                self.identities()
            except IdentityError as exc:
                # Same refusal as any other preflight finding: exit 4, nothing provisioned.
                raise PreflightError(f"the target is not another database: {exc}") from None
            self.check_target_owned()

    def orphan_rows(self) -> list[str]:
        """Foreign keys of the tenant's rows that point at no parent row within the parent's scope, one
        line per foreign key: "table (columns) → parent: N row(s), e.g. key K".

        Such a row (written while the source did not enforce its keys, or pointing at another tenant's
        row) cannot exist in a target that enforces them; the copy would stop at it.
        """
        found = []
        with self.source.connect() as conn:
            for tp in self.plan.tables:
                child = tp.table.alias("c")
                for parent, ccols, pcols in self._parents(tp):
                    ptab = parent.table.alias("p")
                    pairs = zip(ccols, pcols, strict=True)
                    match: list[sa.ColumnElement[bool]] = [ptab.c[pc] == child.c[cc] for cc, pc in pairs]
                    if parent.scope_column is not None:
                        match.append(ptab.c[parent.scope_column] == self.tenant_id)
                    where: list[sa.ColumnElement[bool]] = [child.c[cc].is_not(None) for cc in ccols]
                    if tp.scope_column is not None:
                        where.append(child.c[tp.scope_column] == self.tenant_id)
                    where.append(~sa.exists().where(*match))
                    n = conn.execute(sa.select(sa.func.count()).select_from(child).where(*where)).scalar_one()
                    if not n:
                        continue
                    example = conn.execute(
                        sa.select(*(child.c[k] for k in tp.pk)).where(*where).order_by(*(child.c[k] for k in tp.pk))
                        .limit(1)
                    ).one()
                    key = example[0] if len(example) == 1 else tuple(example)
                    found.append(
                        f"{tp.fullname} ({', '.join(ccols)}) → {parent.fullname}: {n} row(s), e.g. "
                        f"{'/'.join(tp.pk)} = {key!r}"
                    )
        return found

    def check_target_owned(self) -> None:
        """Refuse a target holding rows of another tenant: a dedicated database admits one tenant."""
        existing = set(sa.inspect(self.target).get_table_names(schema=self.schema))
        found = []
        with self.target.connect() as conn:
            for tp in self.plan.tables:
                if tp.scope_column is None or tp.name not in existing:
                    continue
                t = sa.table(tp.name, sa.column(tp.scope_column), schema=tp.table.schema)
                col = t.c[tp.scope_column]
                n = conn.execute(
                    sa.select(sa.func.count()).select_from(t).where(sa.or_(col != self.tenant_id, col.is_(None)))
                ).scalar_one()
                if n:
                    found.append(f"{tp.fullname}: {n} row(s)")
        if found:
            raise PreflightError(
                f"the target {redact(self.target)} holds rows of other tenants ({', '.join(found)}); a dedicated "
                f"database admits only tenant {self.tenant_id!r}'s rows. Use an empty database, or the one "
                "this tenant's own migration began"
            )

    def _owner_table(self) -> sa.Table:
        md = sa.MetaData(schema=self.schema)
        return sa.Table(
            OWNER_TABLE,
            md,
            sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("tenant_id", sa.String(200), nullable=False),
            sa.CheckConstraint("slot = 1", name=f"ck_{OWNER_TABLE}_one_row"),
        )

    def claim_target(self) -> None:
        """Write this tenant's claim into the target (one row, slot 1) or refuse another tenant's.

        The database enforces "one tenant per dedicated database" even for two migrations that start
        at the same moment (both pass the content check on an empty target): the second insert of
        slot 1 fails its primary key, and that migration refuses before copying a row.
        """
        owner_table = self._owner_table()
        owner = None
        for _attempt in range(2):
            try:
                owner_table.create(self.target, checkfirst=True)
                with self.target.begin() as conn:
                    owner = conn.execute(sa.select(owner_table.c.tenant_id)).scalar()
                    if owner is None:
                        conn.execute(owner_table.insert().values(slot=1, tenant_id=str(self.tenant_id)))
                        owner = str(self.tenant_id)
                break
            except sa.exc.DBAPIError:  # a concurrent claim (table or row) won: read what it wrote
                continue
        if owner != str(self.tenant_id):
            raise PreflightError(
                f"the target {redact(self.target)} is claimed by tenant {owner!r} ({OWNER_TABLE}); a dedicated "
                f"database admits one tenant. Abandon that migration first (stamps-ops migrate-abandon {owner})"
            )

    def identities_match(self, expected: Identities) -> Identities:
        """Both identities, checked distinct and equal to ``expected`` (the journal's record)."""
        ids = self.identities()
        _same_identities(ids, expected)
        return ids

    def prepare_target(self) -> list[str]:
        """Create missing tables in the target, check existing ones; returns created table names."""
        self.check_target_owned()
        self.claim_target()
        created = ensure_target_schema(self.plan, self.target, self.source.dialect.name)
        self._io.clear()  # typed target tables must be re-reflected after DDL
        self._native_tables.clear()
        self._prepared = True
        return created

    def _pair(self, tp: TablePlan) -> tuple[TableIO, TableIO]:
        pair = self._io.get(tp.fullname)
        if pair is None:
            kw: dict[str, Any] = {"tenant_id": self.tenant_id, "raw": self.raw}
            pair = (TableIO(tp, self.source, **kw), TableIO(tp, self.target, **kw))
            self._io[tp.fullname] = pair
        return pair

    @contextlib.contextmanager
    def _native(self) -> Iterator[sqlite3.Connection]:
        """The target connection with the source attached, shared by one bulk or delta copy."""
        if self._conn is not None:
            yield self._conn
            return
        assert self._source_file is not None
        with native.attached(self.target, self._source_file) as conn:
            self._conn = conn
            try:
                yield conn
            finally:
                self._conn = None

    def _session(self) -> AbstractContextManager[Any]:
        """One attached connection for a whole bulk or delta copy instead of one per range.

        The target keeps its own journal mode and ``synchronous`` setting (a new target: rollback
        journal, FULL), so every committed batch is on disk before the journal records its mark.
        WAL with synchronous=NORMAL was faster per commit but writes every page twice (the log, then
        the checkpoint) and may lose the last commits on a power loss: with batches of
        ``FAST_BATCH_SIZE`` rows the rollback journal's fsyncs cost less (benchmark: copy 0.19 s
        against 0.24 s) and nothing committed is ever lost.
        """
        return self._native() if self.fast_path else contextlib.nullcontext()

    def _nt(self, tp: TablePlan, conn: sqlite3.Connection) -> native.NativeTable:
        nt = self._native_tables.get(tp.fullname)
        if nt is None:
            nt = self._native_tables[tp.fullname] = native.NativeTable(tp, self.tenant_id, conn)
        return nt

    def _snapshot(self) -> AbstractContextManager[Connection]:
        # One consistent snapshot for "read rows + checksum them" on PostgreSQL; other dialects
        # hash the rows they read, so a plain connection suffices.
        if self.source.dialect.name == "postgresql":
            return self.source.connect().execution_options(isolation_level="REPEATABLE READ")
        return self.source.connect()

    def _display(self, phase: str, tables: Iterable[TablePlan]) -> tuple[ProgressDisplay, dict[str, int | None]]:
        display = ProgressDisplay(self.progress)
        totals: dict[str, int | None] = {}
        if display.enabled:
            with self.source.connect() as conn:
                for tp in tables:
                    totals[tp.fullname] = self._pair(tp)[0].count(conn)
        return display, totals

    # ------------------------------------------------------------------ bulk copy

    def bulk_copy(
        self,
        resume: Mapping[str, TableCopyState] | None = None,
        on_batch: BatchCallback | None = None,
    ) -> dict[str, TableCopyState]:
        """Copy the tenant's rows (and reference tables) parents first; returns per-table state.

        ``resume``: states from the journal; done tables are skipped, others continue after their
        high-water mark. ``on_batch`` is called after every committed batch. Prepares the target
        schema first if :meth:`prepare_target` was not called.
        """
        emit = on_batch or _noop
        if not self._prepared:
            self.prepare_target()
        states = {tp.fullname: _copy_state(resume, tp.fullname) for tp in self.plan.tables}

        def pulled(name: str, cs: Checksum) -> None:
            # Parents fetched for a child batch count as copied rows of their (finished) table, so
            # the pre-freeze verification's record of that table still matches the target exactly.
            st = states[name]
            st.checksum += cs
            emit(BatchEvent("bulk_copy", name, cs.count, st.high_water_mark, st.checksum, done=st.done))

        self._bulk_states = states
        display, totals = self._display("bulk_copy", self.plan.tables)
        with display, self._session(), self._reporting_pulls(pulled):
            for tp in self.plan.tables:
                state = states[tp.fullname]
                if state.done:
                    continue
                display.start(f"copy {tp.fullname}", totals.get(tp.fullname))
                self._bulk_table(tp, state, emit, display)
                display.finish()
        self.sync_sequences()
        return states

    @contextlib.contextmanager
    def _reporting_pulls(self, report: Callable[[str, Checksum], None]) -> Iterator[None]:
        self._pull_report = report
        try:
            yield
        finally:
            self._pull_report = None

    def _report_pulls(self, pulled: Mapping[str, Checksum]) -> None:
        """Called after the transaction that inserted ``pulled`` committed."""
        for name, cs in pulled.items():
            if cs.count and self._pull_report is not None:
                self._pull_report(name, cs)

    # ------------------------------------------------------------------ parents of rows written while live

    def _parents(self, tp: TablePlan) -> list[tuple[TablePlan, list[str], list[str]]]:
        """(parent plan, child columns, parent columns) of each foreign key of ``tp``."""
        out = []
        for fk in tp.table.foreign_key_constraints:
            parent = self.plan.table(fk.referred_table.fullname)
            out.append((parent, [c.name for c in fk.columns], [e.column.name for e in fk.elements]))
        return out

    def _pull_parents(self, tp: TablePlan, rows: Sequence[Any], tc: Connection) -> dict[str, Checksum]:
        """Insert into the target (transaction ``tc``) the parents ``rows`` reference that it lacks.

        A tenant that keeps writing creates parents after their table was copied and children that
        point at them; the child batch would fail its foreign key. Parents (and theirs, recursively)
        are read from the source within the parent's scope, and only the absent ones are inserted;
        returns what was inserted per table, to be recorded once the transaction commits.
        """
        pulled: dict[str, Checksum] = {}
        for parent, ccols, pcols in self._parents(tp):
            idx = [tp.columns.index(c) for c in ccols]
            wanted = {tuple(r[i] for i in idx) for r in rows}
            wanted = {w for w in wanted if None not in w}
            if not wanted:
                continue
            src, tgt = self._pair(parent)
            with self._snapshot() as sc, sc.begin():
                found = src.fetch_matching(sc, pcols, sorted(wanted, key=repr))
                present = set(tgt.existing_keys(tc, [src.key_of(r) for r in found]))
                missing = [r for r in found if src.key_of(r) not in present]
                if not missing:
                    continue
                keys = [src.key_of(r) for r in missing]
                cs = src.checksum_keys(sc, keys) if self.method == PG_MD5 else src.hasher.checksum(missing)
            for name, more in self._pull_parents(parent, missing, tc).items():
                pulled[name] = pulled.get(name, Checksum()) + more
            tgt.insert_missing(tc, missing, None, None, absent=True)
            pulled[parent.fullname] = pulled.get(parent.fullname, Checksum()) + cs
        return pulled

    def _native_pull(
        self, conn: sqlite3.Connection, tp: TablePlan, selection: str, params: list[Any], pulled: dict[str, int]
    ) -> None:
        """The fast path's :meth:`_pull_parents`: ``selection`` is SQL selecting the child rows."""
        for parent, ccols, pcols in self._parents(tp):
            nt = self._nt(parent, conn)
            psel, pparams = nt.referenced_by(selection, params, ccols, pcols)
            self._native_pull(conn, parent, psel, pparams, pulled)
            pulled[parent.fullname] = pulled.get(parent.fullname, 0) + nt.insert_selected(conn, psel, pparams)

    def _native_write(
        self, conn: sqlite3.Connection, tp: TablePlan, write: Callable[[], _T], selection: tuple[str, list[Any]]
    ) -> _T:
        """Run ``write`` in a transaction; on a foreign-key failure, redo it after pulling the parents
        of ``selection``'s rows, in the same transaction (so from the same source snapshot)."""
        try:
            with native.transaction(conn):
                return write()
        except sqlite3.IntegrityError as exc:
            if not _fk_violation(exc):
                raise
        pulled: dict[str, int] = {}
        try:
            with native.transaction(conn):
                self._native_pull(conn, tp, *selection, pulled)
                result = write()
        except sqlite3.IntegrityError as exc:
            if not _fk_violation(exc):
                raise
            raise _ForeignKeyStuck(tp) from None
        self._report_pulls({name: Checksum(n, 0) for name, n in pulled.items()})
        return result

    def _write_with_parents(
        self,
        tp: TablePlan,
        lo: Key | None,
        hi: Key | None,
        first: _Batch | None,
        write: Callable[[Connection, list[Any]], None],
    ) -> tuple[Checksum, list[Any]]:
        """Generic engine: write ``first`` (a batch as read); if a child's parent is missing, re-read
        the range lo < key <= hi and write it again after pulling the parents, a few times if the
        tenant keeps deleting what it just created. Returns (checksum of what was written, rows)."""
        src = self._pair(tp)[0]
        if first is not None:
            try:
                with self.target.begin() as tc:
                    write(tc, first.rows)
                return first.checksum, first.rows
            except Exception as exc:  # SQLAlchemy-wrapped, or raw psycopg2 from COPY
                if not _fk_violation(exc):
                    raise
        for _attempt in range(5):
            with self._snapshot() as sc, sc.begin():
                rows = src.fetch_rows(sc, lo, hi)
                cs = (
                    src.checksum_range(sc, PG_MD5, lo, hi, self.batch_size)
                    if self.method == PG_MD5
                    else src.hasher.checksum(rows)
                )
            try:
                with self.target.begin() as tc:
                    pulled = self._pull_parents(tp, rows, tc)
                    write(tc, rows)
            except Exception as exc:
                if not _fk_violation(exc):
                    raise
                continue
            self._report_pulls(pulled)
            return cs, rows
        raise _ForeignKeyStuck(tp)

    def _bulk_table(self, tp: TablePlan, state: TableCopyState, emit: BatchCallback, display: ProgressDisplay) -> None:
        n = self.batch_size

        def record(cs: Checksum, hi: Key) -> None:
            state.checksum += cs
            state.high_water_mark = hi
            display.advance(cs.count)
            emit(BatchEvent("bulk_copy", tp.fullname, cs.count, hi, state.checksum))

        # 1. A batch may have been committed to the target but not journaled before a crash:
        #    reconcile everything the target holds past the mark against the current source.
        if self.fast_path:  # (no SQLAlchemy table I/O to build unless the target has a tail)
            with self._native() as conn:
                tail = self._nt(tp, conn).target_last_key(conn, state.high_water_mark)
        else:
            with self.target.connect() as tc:
                tail = self._pair(tp)[1].last_key(tc, state.high_water_mark)
        if tail is not None:
            self._delete_vanished_below(tp)
        retried = False
        while tail is not None:
            with self.target.connect() as tc:
                keys = self._pair(tp)[1].fetch_keys(tc, state.high_water_mark, tail, n)
            if not keys:
                break
            try:
                cs, _stats = self._sync_range(tp, state.high_water_mark, keys[-1], deletes=True)
            except _ForeignKeyStuck:
                if retried:
                    raise _orphans(tp) from None
                # The tenant deleted a parent and its children after the pass below: once more.
                self._delete_vanished_below(tp)
                retried = True
                continue
            record(cs, keys[-1])

        if self.fast_path:
            # 2. Keyset batches, each one INSERT … SELECT inside SQLite in its own transaction.
            with self._native() as conn:
                nt = self._nt(tp, conn)
                while True:
                    lo = state.high_water_mark
                    checked = self._checked_batch(conn, nt, lo, n)
                    read, hi = checked or self._native_write(
                        conn, tp, lambda nt=nt, lo=lo: nt.copy_batch(conn, lo, n), nt.batch_selection(lo, n)  # type: ignore[misc]  # defaults bind this batch's values
                    )
                    if hi is None:
                        break
                    record(Checksum(read, 0), hi)
                    if read < n:
                        break
        else:
            # 2. Plain keyset batches. Reading (and checksumming) the next batch from the source runs
            #    in a helper thread while this one writes the current batch to the target: the two
            #    databases work in parallel and the drivers release the GIL while they wait.
            tgt = self._pair(tp)[1]
            for batch in _prefetch(self._read_batches(tp, state.high_water_mark)):

                def write(tc: Connection, rows: list[Any], b: _Batch = batch) -> None:
                    if b.buf is not None and rows is b.rows:  # the batch as read: COPY it
                        tgt.copy_in(tc, b.buf)
                    else:
                        tgt.insert_missing(tc, rows, b.lo, b.hi)

                cs, _rows = self._write_with_parents(tp, batch.lo, batch.hi, batch, write)
                assert batch.hi is not None  # a keyset batch always ends at its last key
                record(cs, batch.hi)
        state.done = True
        emit(BatchEvent("bulk_copy", tp.fullname, 0, state.high_water_mark, state.checksum, done=True))

    def _checked_batch(
        self, conn: sqlite3.Connection, nt: native.NativeTable, lo: Key | None, n: int
    ) -> tuple[int, Key | None] | None:
        """A batch copied with its parents checked by a join (``copy_batch_checked``), or None: the
        table has no such check, or the batch could not prove itself exact (rolled back, to be redone
        with the target's foreign keys on, which fetch missing parents). After a few doubts the
        table's batches go the plain way: each doubt costs its batch twice."""
        if nt.doubts >= MAX_DOUBTS or nt.parent_check(conn) is None:
            return None
        try:
            with native.foreign_keys_off(conn), native.transaction(conn):
                return nt.copy_batch_checked(conn, lo, n)
        except native.Doubt:
            nt.doubts += 1
            return None

    def _delete_vanished_below(self, tp: TablePlan) -> None:
        """Children first, delete the target rows of ``tp`` and of the tables after it that the source
        no longer has, past their marks: reconciling ``tp`` may then delete a vanished parent without
        tripping over its children (those tables are not copied yet, so no recorded row is touched)."""
        states = self._bulk_states
        after = self.plan.tables[self.plan.tables.index(tp) :]
        for child in reversed(after):
            st = states.get(child.fullname)
            if st is not None and st.done:
                continue
            start = st.high_water_mark if st is not None else None
            if self.fast_path:
                self._native_delete(child, _noop, start)
            else:
                self._generic_delete(child, _noop, start)

    def _read_batches(self, tp: TablePlan, lo: Key | None) -> Iterator[_Batch]:
        src = self._pair(tp)[0]
        n = self.batch_size
        while True:
            if self.pg_copy:
                # Bound, rows and checksum from one snapshot, so the checksum describes exactly
                # the rows shipped even while the tenant keeps writing.
                with self._snapshot() as sc, sc.begin():
                    hi = src.batch_end(sc, lo, n)
                    if hi is None:
                        return
                    buf = src.copy_out(sc, lo, hi)
                    cs = src.checksum_range(sc, self.method, lo, hi, n)
                yield _Batch(lo, hi, cs, buf=buf)
            else:
                with self._snapshot() as sc, sc.begin():
                    rows = src.fetch_rows(sc, lo, None, n)
                    if not rows:
                        return
                    hi = src.key_of(rows[-1])
                    # pg-md5 pairs on a driver without COPY support still need server checksums.
                    cs = (
                        src.checksum_range(sc, PG_MD5, lo, hi, n)
                        if self.method == PG_MD5
                        else src.hasher.checksum(rows)
                    )
                yield _Batch(lo, hi, cs, rows=rows)
            if cs.count < n:
                return
            lo = hi

    def _sync_range(
        self, tp: TablePlan, lo: Key | None, hi: Key | None, *, deletes: bool
    ) -> tuple[Checksum, dict[str, int]]:
        """Make target rows with lo < key <= hi equal to the source's; returns the source checksum."""
        if self.fast_path:
            assert hi is not None
            with self._native() as conn:
                nt = self._nt(tp, conn)
                count, stats = self._native_write(
                    conn, tp, lambda: nt.sync(conn, lo, hi, deletes=deletes), nt.range_selection(lo, hi)
                )
            return Checksum(count, 0), stats
        src, tgt = self._pair(tp)
        with self._snapshot() as sc, sc.begin():
            src_rows = src.fetch_rows(sc, lo, hi)
            cs = (
                src.checksum_range(sc, PG_MD5, lo, hi, self.batch_size)
                if self.method == PG_MD5
                else src.hasher.checksum(src_rows)
            )
        stats = {"inserted": 0, "updated": 0, "deleted": 0}

        def write(tc: Connection, rows: list[Any]) -> None:
            tgt_rows = tgt.fetch_rows(tc, lo, hi)
            tgt_hash = dict(zip(map(tgt.key_of, tgt_rows), tgt.hasher.hashes(tgt_rows), strict=True))
            inserts, updates, seen = [], [], set()
            for r, h in zip(rows, src.hasher.hashes(rows), strict=True):
                k = src.key_of(r)
                seen.add(k)
                th = tgt_hash.get(k)
                if th is None:
                    inserts.append(r)
                elif th != h:
                    updates.append(r)
            if deletes:  # first, so a unique value that moved to a new row never collides
                stats["deleted"] = tgt.delete_keys(tc, [k for k in tgt_hash if k not in seen])
            tgt.insert_missing(tc, inserts, lo, hi)
            tgt.update_rows(tc, updates)
            stats["inserted"], stats["updated"] = len(inserts), len(updates)

        cs, _rows = self._write_with_parents(tp, lo, hi, _Batch(lo, hi, cs, rows=src_rows), write)
        return cs, stats

    # ------------------------------------------------------------------ delta copy

    def delta_copy(
        self,
        resume: Mapping[str, DeltaState] | None = None,
        on_batch: BatchCallback | None = None,
    ) -> dict[str, DeltaState]:
        """After the freeze: make the target equal to the source (inserts, updates, deletes)."""
        emit = on_batch or _noop
        states = {tp.fullname: _delta_state(resume, tp.fullname) for tp in self.plan.tables}

        def pulled(name: str, cs: Checksum) -> None:
            states[name].inserted += cs.count
            emit(BatchEvent("delta_upsert", name, cs.count, None, stats={"inserted": cs.count}))

        display, totals = self._display("delta", self.plan.tables)
        with display, self._session(), self._reporting_pulls(pulled):
            for tp in self.plan.tables:  # pass 1: parents first, so inserted children find parents
                state = states[tp.fullname]
                if not state.upserted:
                    display.start(f"delta {tp.fullname}", totals.get(tp.fullname))
                    self._delta_upsert(tp, state, emit, display)
                    display.finish()
            for tp in reversed(self.plan.tables):  # pass 2: children first, so deletes never orphan
                state = states[tp.fullname]
                if not state.done:
                    self._delta_delete(tp, state, emit)
        self.sync_sequences()
        return states

    def _delta_upsert(self, tp: TablePlan, state: DeltaState, emit: BatchCallback, display: ProgressDisplay) -> None:
        src, tgt = self._pair(tp)
        n = self.batch_size
        while True:
            with self.source.connect() as sc:
                keys = src.fetch_keys(sc, state.high_water_mark, None, n)
            if not keys:
                break
            lo, hi = state.high_water_mark, keys[-1]
            stats = {"inserted": 0, "updated": 0, "deleted": 0}
            if self.method == PG_MD5:
                # Per-range checksums computed by both servers: unchanged ranges never leave them.
                with self.source.connect() as sc, sc.begin():
                    cs = src.checksum_range(sc, PG_MD5, lo, hi, n)
                with self.target.connect() as tc, tc.begin():
                    same = tgt.checksum_range(tc, PG_MD5, lo, hi, n) == cs
                if not same:
                    cs, stats = self._sync_range(tp, lo, hi, deletes=False)
            else:
                cs, stats = self._sync_range(tp, lo, hi, deletes=False)
            state.high_water_mark = hi
            state.checksum += cs
            state.inserted += stats["inserted"]
            state.updated += stats["updated"]
            display.advance(cs.count)
            emit(BatchEvent("delta_upsert", tp.fullname, cs.count, hi, state.checksum, stats=stats))
            if len(keys) < n:
                break
        state.upserted = True
        emit(BatchEvent("delta_upsert", tp.fullname, 0, state.high_water_mark, state.checksum, done=True))

    def _delta_delete(self, tp: TablePlan, state: DeltaState, emit: BatchCallback) -> None:
        deleted = self._native_delete(tp, emit) if self.fast_path else self._generic_delete(tp, emit)
        state.deleted = deleted
        state.done = True
        emit(BatchEvent("delta_delete", tp.fullname, 0, None, state.checksum, done=True, stats={"deleted": deleted}))

    def _native_delete(self, tp: TablePlan, emit: BatchCallback, start: Key | None = None) -> int:
        # Walks the target's keys rather than the source's: every target key is still checked once.
        lo: Key | None = start
        deleted = 0
        while True:
            with self._native() as conn, native.transaction(conn):
                nt = self._nt(tp, conn)
                hi = nt.target_key_after(conn, lo, self.batch_size)  # None: the range runs to the end
                gone = nt.delete_vanished(conn, lo, hi)
            deleted += gone
            if gone:
                emit(BatchEvent("delta_delete", tp.fullname, gone, hi, stats={"deleted": gone}))
            if hi is None:
                return deleted
            lo = hi

    def _generic_delete(self, tp: TablePlan, emit: BatchCallback, start: Key | None = None) -> int:
        src, tgt = self._pair(tp)
        n = self.batch_size
        lo: Key | None = start
        deleted = 0
        while True:
            with self.source.connect() as sc:
                keys = src.fetch_keys(sc, lo, None, n)
            hi = keys[-1] if len(keys) == n else None  # None: last range runs to the end of the target
            with self.target.begin() as tc:
                wanted = set(keys)
                extra = [k for k in tgt.fetch_keys(tc, lo, hi) if k not in wanted]
                deleted += tgt.delete_keys(tc, extra)
            if extra:
                emit(BatchEvent("delta_delete", tp.fullname, len(extra), hi, stats={"deleted": len(extra)}))
            if hi is None:
                return deleted
            lo = hi

    # ------------------------------------------------------------------ verification

    def _checksum(self, engine: Engine, tp: TablePlan) -> Checksum:
        io_ = self._pair(tp)[0 if engine is self.source else 1]
        with engine.connect() as conn, conn.begin():
            return io_.checksum_range(conn, self.method, None, None, max(self.batch_size, 10_000))

    def _compare(self, tables: Iterable[TablePlan]) -> dict[TablePlan, native.Comparison]:
        """In-SQLite comparison of source and target, on ``VERIFY_WORKERS`` connections in parallel.

        The work is, per table, one count of the source's in-scope rows and the target cut into
        slices of about ``COMPARE_RANGE_ROWS`` rows, each paired row by row with the source
        (``NativeTable.compare_slice``). Each item runs in one read transaction, so the shared
        source's writers wait at most one slice. Items of one table read in different transactions
        are as exact as one transaction when nothing writes the tenant's rows, which the final
        verification ensures (the tenant is frozen); while the tenant still writes, no comparison
        with the live source is final anyway. SQLite releases the GIL while it steps, so the
        connections run on separate cores (1.7x faster on two, benchmark).
        """
        tables = list(tables)
        work: queue.SimpleQueue[tuple[TablePlan, bool, Any, Any]] = queue.SimpleQueue()
        with self._native() as conn, native.transaction(conn):
            for tp in tables:
                work.put((tp, True, None, None))  # the source count
                for lo, hi in self._nt(tp, conn).target_slices(conn, COMPARE_RANGE_ROWS):
                    work.put((tp, False, lo, hi))
        source_file = self._source_file
        assert source_file is not None
        out = {tp: native.Comparison() for tp in tables}
        failed = threading.Event()
        lock = threading.Lock()

        def worker() -> None:
            # A connection per thread: SQLite connections are not shared across threads.
            with native.attached(self.target, source_file, scans=True) as conn:
                mine: dict[str, native.NativeTable] = {}
                while not failed.is_set():
                    try:
                        tp, source, lo, hi = work.get_nowait()
                    except queue.Empty:
                        return
                    nt = mine.get(tp.fullname)
                    if nt is None:
                        nt = mine[tp.fullname] = native.NativeTable(tp, self.tenant_id, conn)
                    try:
                        with native.transaction(conn):
                            if source:
                                result = native.Comparison(source_rows=nt.source_rows(conn))
                            else:
                                result = nt.compare_slice(conn, lo, hi)
                    except BaseException:
                        failed.set()  # the other workers stop at their next item
                        raise
                    with lock:
                        out[tp] += result

        workers = min(VERIFY_WORKERS, work.qsize())
        if workers == 1:
            worker()
            return out
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stamps-verify") as pool:
            for fut in [pool.submit(worker) for _ in range(workers)]:
                fut.result()
        return out

    def verify(self, *, raise_on_mismatch: bool = True, on_batch: BatchCallback | None = None) -> VerificationReport:
        """Final verification: tenant rows in the live source vs the target, table by table.

        Both sides are read concurrently (two threads: the databases do most of the work while
        the other side's rows are hashed); on the SQLite fast path SQLite compares the rows itself
        (``_compare``). Raises VerificationError naming the tables that differ.
        """
        emit = on_batch or _noop
        started = utcnow()
        results = []
        if self.fast_path:
            for tp, cmp in self._compare(self.plan.tables).items():
                actual = Checksum(cmp.target_rows, 0)
                results.append(
                    TableVerification(tp.fullname, tp.kind, Checksum(cmp.source_rows, 0), actual, cmp.differing)
                )
                emit(BatchEvent("verify", tp.fullname, actual.count, None, actual, done=True))
            report = VerificationReport("final", str(self.tenant_id), self.method, tuple(results), started)
            return report.raise_for_mismatch() if raise_on_mismatch else report
        with ThreadPoolExecutor(max_workers=2) as pool:
            for tp in self.plan.tables:
                fut_src = pool.submit(self._checksum, self.source, tp)
                fut_tgt = pool.submit(self._checksum, self.target, tp)
                expected, actual = fut_src.result(), fut_tgt.result()
                results.append(TableVerification(tp.fullname, tp.kind, expected, actual))
                emit(BatchEvent("verify", tp.fullname, actual.count, None, actual, done=True))
        report = VerificationReport("final", str(self.tenant_id), self.method, tuple(results), started)
        return report.raise_for_mismatch() if raise_on_mismatch else report

    def verify_snapshot(
        self,
        expected: Mapping[str, Checksum],
        *,
        raise_on_mismatch: bool = True,
        on_batch: BatchCallback | None = None,
    ) -> VerificationReport:
        """Pre-freeze verification: the target vs the checksums the bulk copy recorded.

        Reads only the target, so live writes to the source cannot cause false alarms; it proves
        the copy landed intact (nothing lost, duplicated or altered on the way). On the SQLite fast
        path the records are row counts (each batch was proven exact as it was copied), so this
        compares counts: see the module docstring for what that leaves to ``verify()``.
        """
        emit = on_batch or _noop
        started = utcnow()
        results = []
        for tp in self.plan.tables:
            if tp.fullname not in expected:
                raise KeyError(f"no bulk-copy checksum recorded for table {tp.fullname!r}")
            if self.fast_path:  # the bulk copy proved each batch exact and recorded its row count
                with self.target.connect() as conn:
                    actual = Checksum(self._pair(tp)[1].count(conn), 0)
            else:
                actual = self._checksum(self.target, tp)
            results.append(TableVerification(tp.fullname, tp.kind, expected[tp.fullname], actual))
            emit(BatchEvent("verify", tp.fullname, actual.count, None, actual, done=True))
        report = VerificationReport("snapshot", str(self.tenant_id), self.method, tuple(results), started)
        return report.raise_for_mismatch() if raise_on_mismatch else report

    # ------------------------------------------------------------------ purge

    def identities(self) -> Identities:
        """(source, target) identities as the servers report them; refuses if they are one database."""
        src, tgt = _reachable(self.source, "source"), _reachable(self.target, "target")
        require_distinct(src, tgt)
        return src, tgt

    def purge_source(
        self,
        final_report: VerificationReport,
        *,
        expected: tuple[DatabaseIdentity, DatabaseIdentity] | None = None,
        on_batch: BatchCallback | None = None,
    ) -> dict[str, int]:
        """Delete the tenant's rows from the source, children first. Reference tables are kept.

        Deletes only what provably exists elsewhere, all or nothing:

        * ``final_report`` must be a passing *final* verification of this tenant covering exactly
          the plan's tables with this mover's method;
        * source and target must be different databases by the servers' own identity, and the
          ones in ``expected`` (the journal's record) when given — checked before anything else and
          again inside the purge transaction;
        * inside one source transaction (rows locked on PostgreSQL and SQL Server, the file's write
          lock on SQLite) every source row is compared with the target row of the same key, every
          column, and deleted only if identical; the deleted count must equal the verified one.
          Any difference rolls the whole purge back and raises PurgeRefusedError.

        On SQLite the shared database's other writers wait for the purge to commit: run it in a quiet
        hour for big tenants.
        """
        emit = on_batch or _noop
        ids, verified = self._purge_checks(final_report, expected)
        deleted = self._purge_native(ids, verified) if self.fast_path else self._purge_generic(ids, verified)
        for name, count in deleted.items():
            emit(BatchEvent("purge", name, count, None, done=True))
        return deleted

    def purge_preview(
        self, final_report: VerificationReport, *, expected: tuple[DatabaseIdentity, DatabaseIdentity] | None = None
    ) -> dict[str, int]:
        """What :meth:`purge_source` would delete (rows per tenant table, children first), after the same checks;
        reads only (a dry run)."""
        _, verified = self._purge_checks(final_report, expected)
        return {tp.fullname: verified[tp.fullname] for tp in reversed(self.plan.tenant_tables)}

    def _purge_checks(
        self, final_report: VerificationReport, expected: tuple[DatabaseIdentity, DatabaseIdentity] | None
    ) -> tuple[Identities, dict[str, int]]:
        names = {tp.fullname for tp in self.plan.tables}
        if final_report.kind != "final" or not final_report.ok:
            raise PurgeRefusedError("purge requires a passing final verification report")
        if final_report.tenant_id != str(self.tenant_id):
            raise PurgeRefusedError(f"report is for tenant {final_report.tenant_id!r}, not {self.tenant_id!r}")
        if {t.table for t in final_report.tables} != names or final_report.method != self.method:
            raise PurgeRefusedError("report does not cover this plan's tables with this checksum method")
        ids = self.identities()
        if expected is not None:
            _same_identities(ids, expected)
        return ids, {t.table: t.expected.count for t in final_report.tables}

    def _purge_native(self, ids: Identities, verified: Mapping[str, int]) -> dict[str, int]:
        deleted: dict[str, int] = {}
        with self._native() as conn, native.transaction(conn):
            # The identities again, from the very connection that deletes: ATTACH opened the files.
            _same_identities((sqlite_identity(conn, native.SRC), sqlite_identity(conn, "main")), ids)
            for tp in reversed(self.plan.tenant_tables):
                gone, left = self._nt(tp, conn).purge_identical(conn)
                _check_purged(tp, gone, left, verified)
                deleted[tp.fullname] = gone
        return deleted

    def _purge_generic(self, ids: Identities, verified: Mapping[str, int]) -> dict[str, int]:
        deleted: dict[str, int] = {}
        with self.source.begin() as sc, self.target.connect() as tc:
            if self.source.dialect.name == "sqlite":
                # pysqlite would only BEGIN at the first DELETE: take the write lock before the first
                # read, so no writer can change a row between its comparison and its deletion.
                sc.exec_driver_sql("BEGIN IMMEDIATE")
            _same_identities((identity_of(sc), identity_of(tc)), ids)
            for tp in reversed(self.plan.tenant_tables):
                src, tgt = self._pair(tp)
                lo: Key | None = None
                gone = differing = 0
                while True:
                    rows = src.fetch_rows(sc, lo, None, self.batch_size, lock=True)
                    if not rows:
                        break
                    hi = src.key_of(rows[-1])
                    theirs = dict(zip(map(tgt.key_of, t_rows := tgt.fetch_rows(tc, lo, hi)),
                                      tgt.hasher.canonical_rows(t_rows), strict=True))
                    keys = []
                    for row, text in zip(rows, src.hasher.canonical_rows(rows), strict=True):
                        k = src.key_of(row)
                        if theirs.get(k) == text:
                            keys.append(k)
                        else:
                            differing += 1
                    if differing:
                        break
                    gone += src.delete_keys(sc, keys)
                    if len(rows) < self.batch_size:
                        break
                    lo = hi
                _check_purged(tp, gone, differing, verified)
                deleted[tp.fullname] = gone
        return deleted

    # ------------------------------------------------------------------ abandon

    def clear_target(self, expected: Identities | None = None) -> dict[str, int]:
        """Delete the tenant's rows from the target, children first (a migration given up before its
        switch leaves nothing of the tenant behind). Shared reference tables stay: they are nobody's.
        ``expected``: the journal's record; the target must be that database and not the source."""
        ids = self.identities()
        if expected is not None:
            _same_identities(ids, expected)
        deleted: dict[str, int] = {}
        for tp in reversed(self.plan.tables):
            if tp.scope_column is None:
                continue
            tgt = self._pair(tp)[1]
            total = 0
            while True:
                with self.target.begin() as tc:
                    keys = tgt.fetch_keys(tc, None, None, self.batch_size)
                    total += tgt.delete_keys(tc, keys)
                if len(keys) < self.batch_size:
                    break
            deleted[tp.fullname] = total
        owner_table = self._owner_table()
        if sa.inspect(self.target).has_table(OWNER_TABLE, schema=self.schema):
            with self.target.begin() as conn:
                conn.execute(owner_table.delete().where(owner_table.c.tenant_id == str(self.tenant_id)))
        return deleted

    # ------------------------------------------------------------------ sequences

    def sync_sequences(self) -> None:
        """Move target sequences/identities past the copied keys so the app's next insert works."""
        dialect = self.target.dialect.name
        if dialect == "postgresql":
            with self.target.begin() as conn:
                for tp in self.plan.tables:
                    _pg_sync_sequences(conn, tp)
        elif dialect == "mssql":
            with self.target.begin() as conn:
                for tp in self.plan.tables:
                    cols = sa.inspect(conn).get_columns(tp.name, schema=tp.table.schema)
                    if any(c.get("identity") for c in cols):
                        # Without a new value CHECKIDENT raises the seed to the column's max if behind.
                        conn.exec_driver_sql(f"DBCC CHECKIDENT ('{tp.fullname}') WITH NO_INFOMSGS")


def _pg_sync_sequences(conn: Connection, tp: TablePlan) -> None:
    q = conn.dialect.identifier_preparer
    table = q.format_table(tp.table)
    for col in tp.columns:
        seq = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": col}
        ).scalar_one_or_none()
        if seq is None:
            continue
        c = q.quote(col)
        conn.exec_driver_sql(
            f"SELECT setval('{seq}', m) FROM (SELECT max({c}) AS m FROM {table}) s "
            f"WHERE m IS NOT NULL AND m > (SELECT last_value FROM {seq})"
        )


def _fk_violation(exc: BaseException) -> bool:
    """A foreign-key violation, by SQLSTATE 23503 (PostgreSQL), error 547 (SQL Server) or SQLite's text."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "pgcode", None) == "23503":
        return True
    text = str(orig)
    return "FOREIGN KEY constraint failed" in text or ("547" in text and "FOREIGN KEY" in text)


class _ForeignKeyStuck(MigrationError):
    """A write still fails a foreign key after its parents were fetched."""

    def __init__(self, tp: TablePlan) -> None:
        super().__init__(str(_orphans(tp)))


def _orphans(tp: TablePlan) -> MigrationError:
    return MigrationError(
        f"rows of {tp.fullname!r} reference parent rows that are not the tenant's (or keep vanishing while "
        "the tenant writes); fix the source's foreign keys, or re-run once the writes calm down"
    )


def _reachable(engine: Engine, role: str) -> DatabaseIdentity:
    """Connect once and read the identity; an unreachable database is a clean PreflightError."""
    try:
        return engine_identity(engine)
    except sa.exc.DBAPIError as exc:
        detail = scrub(str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__,
                       engine.url)
        raise PreflightError(f"cannot connect to the {role} database {redact(engine)}: {detail}") from None


def _same_identities(
    found: tuple[DatabaseIdentity, DatabaseIdentity], expected: tuple[DatabaseIdentity, DatabaseIdentity] | None
) -> None:
    require_distinct(*found)
    if expected is not None and found != expected:
        raise IdentityError(
            f"the databases are not the ones this migration recorded: source {found[0]} (recorded "
            f"{expected[0]}), target {found[1]} (recorded {expected[1]}); refusing to delete"
        )


def _check_purged(tp: TablePlan, gone: int, left: int, verified: Mapping[str, int]) -> None:
    if left:
        raise PurgeRefusedError(
            f"source table {tp.fullname!r}: {left} row(s) have no identical row in the target (changed or "
            "added since the final verification); nothing was deleted"
        )
    if gone != verified[tp.fullname]:
        raise PurgeRefusedError(
            f"source table {tp.fullname!r} holds {gone} rows of the tenant, the final verification counted "
            f"{verified[tp.fullname]}; nothing was deleted"
        )


def _copy_state(resume: Mapping[str, TableCopyState] | None, name: str) -> TableCopyState:
    prev = (resume or {}).get(name)
    return TableCopyState(prev.high_water_mark, prev.checksum, prev.done) if prev else TableCopyState()


def _delta_state(resume: Mapping[str, DeltaState] | None, name: str) -> DeltaState:
    prev = (resume or {}).get(name)
    if prev is None:
        return DeltaState()
    return DeltaState(**{f: getattr(prev, f) for f in DeltaState.__dataclass_fields__})
