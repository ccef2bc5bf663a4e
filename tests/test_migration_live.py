"""A tenant that keeps writing while it migrates: parents and children created during the copy, updates
and deletes, SIGKILLs of the migration at random points — on SQLite and PostgreSQL.

Run as ``python -m tests.test_migration_live writer|child ...`` this module is also the writer process
and the migration child the tests start (and kill).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ops.migration import (
    STEPS,
    BatchEvent,
    MigrationJournal,
    PlaybookHooks,
    TenantDataMover,
    VerificationError,
    as_engine,
    open_migration,
)
from tests import pg
from tests.test_datacopy import (
    SHARED,
    TENANT,
    Pair,
    Sizes,
    assert_target_matches_source,
    mover,
    pair,  # noqa: F401  (fixture)
    populate,
    scratch,  # noqa: F401  (fixture)
    scratch_dir,
)

ROOT = Path(__file__).resolve().parents[1]
SIZES = Sizes(customers=30, orders_per_customer=4, items_per_order=3, audit=60)
BATCH = 25


def add_order_tree(conn: sa.Connection, cid: int, oid: int, tenant: str = TENANT) -> None:
    """A new customer with an order and its lines: parent + child + grandchild rows in one transaction."""
    x = sa.text
    conn.execute(x("INSERT INTO customers VALUES (:t, :c, 'live', NULL, '2024-06-01 00:00:00', 1.5)"),
                 {"t": tenant, "c": cid})  # fmt: skip
    conn.execute(x("INSERT INTO orders VALUES (:o, :t, :c, '2024-06-01 00:00:00', 9.5, 'live')"),
                 {"o": oid, "t": tenant, "c": cid})  # fmt: skip
    for line in (1, 2):
        conn.execute(x("INSERT INTO order_items VALUES (:o, :l, :t, 'LIVE', 1, 2.5, NULL, NULL)"),
                     {"o": oid, "l": line, "t": tenant})  # fmt: skip


def test_parents_created_during_the_bulk_copy_are_fetched_with_their_children(pair: Pair) -> None:  # noqa: F811
    """Once customers is copied the tenant adds a customer with an order and lines: the orders batch
    must not fail its foreign key; the new customer is fetched with it and recorded, so the
    pre-freeze verification still matches and the final one is exact."""
    m = mover(pair)
    m.prepare_target()
    added: list[str] = []

    def write_new_tree(e: BatchEvent) -> None:
        if e.table == "customers" and e.done and not added:
            with pair.source.begin() as conn:
                add_order_tree(conn, 9500, 95000)
            added.append("tree")

    states = m.bulk_copy(on_batch=write_new_tree)
    assert added
    report = m.verify_snapshot({n: s.checksum for n, s in states.items()})
    assert report.ok, report.to_dict()
    with pair.target.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM order_items WHERE order_id = 95000")).scalar() == 2
    m.delta_copy()
    m.verify()
    assert_target_matches_source(pair.source, pair.target)


# --------------------------------------------------------------------------- writer process


def writer_main(url: str, stop: str, seed: str) -> None:
    """Parents + children, updates and deletes of the tenant (and of another tenant) until ``stop`` exists."""
    rnd = random.Random(int(seed))
    engine = as_engine(url)
    n = 0
    while not os.path.exists(stop):
        n += 1
        try:
            with engine.begin() as conn:
                add_order_tree(conn, 100_000 + n, 1_000_000 + n, TENANT if n % 4 else "globex")
                x = sa.text
                conn.execute(x("UPDATE orders SET total = total + 1, note = :n WHERE id = (SELECT min(id) FROM orders "
                               "WHERE tenant_id = :t) "), {"n": f"upd {n}", "t": TENANT})  # fmt: skip
                conn.execute(x("UPDATE customers SET name = :n WHERE tenant_id = :t AND id = :c"),
                             {"n": f"renamed {n}", "t": TENANT, "c": rnd.randint(1, SIZES.customers)})  # fmt: skip
                if n % 3 == 0:  # delete a whole order tree (children first), old or just created
                    oid = conn.execute(x("SELECT id FROM orders WHERE tenant_id = :t AND id NOT IN (SELECT order_id "
                                         "FROM order_items WHERE tenant_id <> :t) ORDER BY id LIMIT 1 OFFSET :k"),
                                       {"t": TENANT, "k": rnd.randint(0, 40)}).scalar()  # fmt: skip
                    if oid is not None:
                        conn.execute(x("DELETE FROM order_items WHERE order_id = :o"), {"o": oid})
                        conn.execute(x("DELETE FROM orders WHERE id = :o"), {"o": oid})
        except sa.exc.OperationalError:  # SQLite busy past its timeout: try again
            pass
        time.sleep(0.003)
    engine.dispose()


@contextmanager
def live_writer(url: str, workdir: Path, seed: int) -> Iterator[Path]:
    stop = workdir / f"stop-writer-{seed}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_migration_live", "writer", url, str(stop), str(seed)],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE)  # fmt: skip
    try:
        yield stop
    finally:
        stop.touch()
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err.decode()[-2000:]


# --------------------------------------------------------------------------- migration child


def run_migration(source: str, target: str, journal: Path, stop_writer: Path | None, slow: float) -> None:
    """The whole state machine; the freeze is honoured late on purpose: the writer stops only once the
    delta copy is under way, so the first final verification may see its last writes."""
    m = TenantDataMover(source, target, TENANT, batch_size=BATCH, progress=False, shared_tables=SHARED)

    def hook(_ctx: Any) -> dict[str, str]:
        return {}

    def on_batch(event: BatchEvent) -> None:
        if event.phase.startswith("delta") and stop_writer is not None and not stop_writer.exists():
            stop_writer.touch()
        time.sleep(slow)  # stretches the copy so the writer and the kills land inside it

    runner = open_migration(journal, m, PlaybookHooks(hook, hook, hook, hook, hook), on_batch=on_batch)
    try:
        with runner.journal:
            runner.run()
    finally:
        m.source.dispose()
        m.target.dispose()


def child_main(argv: list[str]) -> None:
    source, target, journal, stop = argv
    run_migration(source, target, Path(journal), Path(stop), slow=0.03)


def _kill_after(argv: list[str], delay: float) -> int | None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_migration_live", "child", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
    out = proc.communicate(timeout=30)[0].decode()
    if proc.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"migration child failed ({proc.returncode}):\n{out[-3000:]}")
    return proc.returncode


def _converge(source: str, target: str, journal: Path) -> int:
    """Plain re-runs (no --restart-from) until done; returns how many were needed."""
    for run in range(1, 4):
        try:
            run_migration(source, target, journal, None, slow=0)
            return run
        except VerificationError:
            continue  # the late writes: the next plain run redoes the delta under the freeze
    pytest.fail("three plain re-runs did not converge")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_live_writer_and_sigkills_then_plain_reruns_converge_exactly(backend: str) -> None:
    seed = random.SystemRandom().randrange(1 << 30)
    rnd = random.Random(seed)
    with scratch_dir() as d, _databases(backend, d) as (source, target):
        populate(as_engine(source), SIZES)
        journal = d / "journals" / f"{TENANT}.json"
        kills = 0
        with live_writer(source, d, seed) as stop:
            for _ in range(3):  # SIGKILL at random points of whatever step the child has reached
                if _kill_after([source, target, str(journal), str(stop)], rnd.uniform(0.5, 2.5)) == -signal.SIGKILL:
                    kills += 1
                if stop.exists():
                    break
            stop.touch()
        runs = _converge(source, target, journal)
        data = MigrationJournal.read(journal)
        assert all(data["steps"][s.value]["status"] == "done" for s in STEPS), (seed, data["current_step"])
        assert runs <= 2, seed
        assert_target_matches_source(as_engine(source), as_engine(target))
        src = as_engine(source)
        with src.connect() as conn:
            live = conn.execute(sa.text("SELECT count(*) FROM customers WHERE name = 'live' AND tenant_id = :t"),
                                {"t": TENANT}).scalar()  # fmt: skip
        assert live, f"the writer never wrote (seed {seed}, {kills} kills)"
        tgt = as_engine(target)
        with tgt.connect() as conn:
            others = conn.execute(sa.text("SELECT count(*) FROM orders WHERE tenant_id <> :t"), {"t": TENANT})
            assert others.scalar() == 0
        src.dispose()
        tgt.dispose()


@contextmanager
def _databases(backend: str, d: Path) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield f"sqlite:///{d / 'shared.db'}", f"sqlite:///{d / 'dedicated.db'}"
        return
    with pg.get_server().databases(2) as (a, b):
        yield a.render_as_string(hide_password=False), b.render_as_string(hide_password=False)


if __name__ == "__main__" and sys.argv[1:2] == ["writer"]:
    writer_main(*sys.argv[2:])
elif __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child_main(sys.argv[2:])
