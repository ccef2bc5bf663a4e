"""Migration journal, per-tenant lock and the step runner — including real SIGKILLs mid-step.

Run as ``python -m tests.test_migration_journal child ...`` this module is also the child process
the kill tests start and SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ops.migration import (
    STEPS,
    BatchEvent,
    JournalError,
    MigrationJournal,
    MigrationLockedError,
    PlaybookHooks,
    Step,
    StepContext,
    StepStatus,
    TenantDataMover,
    VerificationError,
    as_engine,
    open_migration,
)
from ops.migration.checksum import CANONICAL, PG_MD5, SQLITE_EXACT
from ops.migration.journal import decode_key, encode_key
from tests import pg
from tests.test_datacopy import (
    SHARED,
    TENANT,
    Sizes,
    assert_target_matches_source,
    mutate_source,
    populate,
    scratch_dir,
    tamper_target,
)

ROOT = Path(__file__).resolve().parents[1]
HOOK_STEPS = (Step.PROVISION, Step.FREEZE, Step.SWITCH, Step.UNFREEZE, Step.HEALTH_CHECK)
ENGINE_PHASES = {
    Step.BULK_COPY: ("bulk_copy",),
    Step.VERIFY: ("verify",),
    Step.DELTA_COPY: ("delta_upsert", "delta_delete"),
    Step.VERIFY_FINAL: ("verify",),
}
SMALL = Sizes(customers=40, orders_per_customer=4, items_per_order=3, audit=80)
BATCH = 150


# --------------------------------------------------------------------------- the playbook stand-in


@dataclass
class Scenario:
    """Everything a migration run needs; serialisable so a child process can rebuild it."""

    source: str
    target: str
    journal: Path
    calls: Path
    kill_at: str | None = None
    ready: Path | None = None
    fast_path: bool = True  # TenantDataMover(fast_path=...): SQLite→SQLite inside SQLite, or the generic engine

    @property
    def method(self) -> str:
        if self.source.startswith("postgresql"):
            return PG_MD5
        return SQLITE_EXACT if self.fast_path else CANONICAL

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "tests.test_migration_journal", "child", self.source, self.target,
            str(self.journal), str(self.calls), self.kill_at or "", str(self.ready or ""), str(int(self.fast_path)),
        ]  # fmt: skip

    def called(self) -> list[str]:
        return self.calls.read_text().split() if self.calls.exists() else []


def _signal_and_sleep(ready: Path) -> None:
    # Tell the test we are inside the step, then wait to be SIGKILLed (bounded, so a broken test
    # cannot leave a process behind forever).
    ready.write_text(str(os.getpid()))
    time.sleep(60)
    raise SystemExit("not killed within 60 s")


def make_hooks(sc: Scenario) -> PlaybookHooks:
    def hook(step: Step) -> Any:
        def run(ctx: StepContext) -> dict[str, str]:
            with sc.calls.open("a") as fh:
                fh.write(f"{step.value}\n")
            if step == Step.FREEZE:
                _late_writes_once(ctx.mover.source, sc.journal.with_suffix(".mutated"))
            if sc.kill_at == step.value and sc.ready is not None:
                _signal_and_sleep(sc.ready)
            return {"hook": step.value}

        return run

    return PlaybookHooks(*(hook(s) for s in HOOK_STEPS))


def _late_writes_once(source: sa.Engine, marker: Path) -> None:
    """Writes that landed while the bulk copy ran, so the delta has real work (idempotent)."""
    if marker.exists():
        return
    with source.begin() as conn:
        mutate_source(conn)
    marker.write_text("done")


def make_mover(sc: Scenario) -> TenantDataMover:
    return TenantDataMover(
        sc.source, sc.target, TENANT, batch_size=BATCH, progress=False, fast_path=sc.fast_path, shared_tables=SHARED
    )


def run_scenario(sc: Scenario, stop_after: Step | None = None) -> MigrationJournal:
    mover = make_mover(sc)
    events: list[BatchEvent] = []

    def on_batch(event: BatchEvent) -> None:
        events.append(event)
        step = runner.journal.data["current_step"]
        wanted = ENGINE_PHASES.get(Step(step), ())
        # In bulk_copy wait for a few committed batches so the kill lands mid-table.
        mid_table = step != Step.BULK_COPY.value or sum(e.phase == "bulk_copy" for e in events) >= 4
        if sc.kill_at == step and event.phase in wanted and sc.ready is not None and mid_table:
            _signal_and_sleep(sc.ready)

    runner = open_migration(sc.journal, mover, make_hooks(sc), on_batch=on_batch)
    with runner.journal:
        runner.run(stop_after=stop_after)
    mover.source.dispose()
    mover.target.dispose()
    return runner.journal


def child_main(argv: list[str]) -> None:
    source, target, journal, calls, kill_at, ready, fast_path = argv
    run_scenario(
        Scenario(
            source,
            target,
            Path(journal),
            Path(calls),
            kill_at or None,
            Path(ready) if ready else None,
            fast_path == "1",
        )
    )


# --------------------------------------------------------------------------- fixtures


def _sqlite_scenario(root: Path, fast_path: bool = True) -> Scenario:
    root.mkdir(parents=True, exist_ok=True)
    src, tgt = f"sqlite:///{root / 'shared.db'}", f"sqlite:///{root / 'dedicated.db'}"
    engine = as_engine(src)
    populate(engine, SMALL)
    engine.dispose()
    return Scenario(src, tgt, root / "journals" / f"{TENANT}.json", root / "calls.txt", fast_path=fast_path)


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_dir() as d:
        yield d


@pytest.fixture(params=[True, False], ids=["sqlite", "sqlite-generic"])
def scenario(request: pytest.FixtureRequest, scratch: Path) -> Scenario:
    return _sqlite_scenario(scratch, fast_path=request.param)


@pytest.fixture(scope="module")
def reference_checksums() -> Iterator[dict[str, dict[str, str]]]:
    """verify_final checksums of an uninterrupted migration of the same data, per checksum method."""
    out = {}
    for fast_path in (True, False):
        with scratch_dir() as d:
            sc = _sqlite_scenario(d, fast_path)
            report = run_scenario(sc).verification(Step.VERIFY_FINAL)
            assert report is not None and report.ok and report.method == sc.method
            out[sc.method] = {t.table: str(t.actual) for t in report.tables}
    yield out


@pytest.fixture
def pg_scenario(scratch: Path) -> Iterator[Scenario]:
    with pg.get_server().databases(2) as (src, tgt):
        engine = as_engine(src)
        populate(engine, SMALL)
        engine.dispose()
        yield Scenario(
            src.render_as_string(hide_password=False),
            tgt.render_as_string(hide_password=False),
            scratch / "journals" / f"{TENANT}.json",
            scratch / "calls.txt",
        )


# --------------------------------------------------------------------------- journal basics


def test_key_encoding_round_trips_every_key_type() -> None:
    key = (
        1,
        "ü",
        None,
        True,
        1.5,
        decimal.Decimal("10.50"),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        dt.date(2024, 1, 2),
        dt.time(3, 4, 5),
        b"\x00\xff",
        uuid.UUID(int=7),
    )
    encoded = encode_key(key)
    assert decode_key(json.loads(json.dumps(encoded))) == key
    assert str(decode_key(encoded)[5]) == "10.50"  # scale survives
    with pytest.raises(TypeError):
        encode_key((object(),))


def test_journal_is_written_atomically_and_resumes(scratch: Path) -> None:
    path = scratch / "j" / "acme.json"
    with MigrationJournal.open(path, tenant_id=TENANT, source="sqlite:///a", target="sqlite:///b") as j:
        assert j.next_step() == Step.PROVISION
        j.mark_started(Step.PROVISION)
        j.mark_done(Step.PROVISION, {"stack": "dedicated-acme"})
        j.mark_started(Step.BULK_COPY)
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".acme-" + _digest(TENANT) + ".migration.lock",
        "acme.json",
    ]
    data = MigrationJournal.read(path)
    assert data["format"] == 1 and data["tenant_id"] == TENANT
    assert data["steps"]["provision"]["status"] == "done"
    assert data["steps"]["provision"]["result"] == {"stack": "dedicated-acme"}
    assert data["steps"]["bulk_copy"]["status"] == "running"
    assert [e["event"] for e in data["events"]] == ["started", "done", "started"]
    with MigrationJournal.open(path, tenant_id=TENANT) as j:
        assert j.next_step() == Step.BULK_COPY and j.status(Step.PROVISION) == StepStatus.DONE
        j.reset_from(Step.PROVISION)
        assert j.next_step() == Step.PROVISION
    with pytest.raises(JournalError, match="belongs to tenant 'acme'"):
        MigrationJournal.open(path, tenant_id="globex")
    path.write_text("{not json")
    with pytest.raises(JournalError, match=r"is damaged \(not JSON.*restore it from a backup"):
        MigrationJournal.open(path, tenant_id=TENANT)


def _digest(tenant: str) -> str:
    return hashlib.sha256(tenant.encode()).hexdigest()[:8]


def test_second_migration_of_the_same_tenant_is_refused(scratch: Path) -> None:
    path = scratch / "acme.json"
    with MigrationJournal.open(path, tenant_id=TENANT):
        with pytest.raises(MigrationLockedError, match=rf"already running \(pid {os.getpid()} on .*started 20"):
            MigrationJournal.open(scratch / "acme-retry.json", tenant_id=TENANT)  # another journal, same tenant
        with MigrationJournal.open(scratch / "globex.json", tenant_id="globex"):
            pass  # other tenants are not blocked
    with MigrationJournal.open(path, tenant_id=TENANT):
        pass  # released on close


# --------------------------------------------------------------------------- runner


def test_runner_drives_all_steps_once_and_skips_them_on_rerun(
    scenario: Scenario, reference_checksums: dict[str, dict[str, str]]
) -> None:
    journal = run_scenario(scenario)
    assert scenario.called() == ["provision", "freeze", "switch", "unfreeze", "health_check"]
    data = MigrationJournal.read(scenario.journal)
    assert all(data["steps"][s.value]["status"] == "done" for s in STEPS)
    assert data["checksum_method"] == scenario.method
    assert data["tables"]["order_items"]["bulk"]["done"] is True
    assert data["tables"]["orders"]["delta"]["deleted"] == 1
    assert data["steps"]["switch"]["result"] == {"hook": "switch"}
    report = journal.verification(Step.VERIFY_FINAL)
    assert report is not None and {t.table: str(t.actual) for t in report.tables} == reference_checksums[report.method]
    run_scenario(scenario)  # nothing left to do: no hook runs again
    assert scenario.called() == ["provision", "freeze", "switch", "unfreeze", "health_check"]


def lose_target_row(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM order_items WHERE rowid = (SELECT max(rowid) FROM order_items)")


def test_failed_verification_stops_before_switch_and_leaves_source_untouched(scenario: Scenario) -> None:
    run_scenario(scenario, stop_after=Step.BULK_COPY)
    # sqlite-exact's pre-freeze check compares row counts (a row edited in the target is left to the
    # delta and the final verification, see the next test); a lost row fails it on either path.
    (tamper_target if not scenario.fast_path else lose_target_row)(as_engine(scenario.target))
    before = make_mover(scenario).verify(raise_on_mismatch=False)
    with pytest.raises(VerificationError, match="order_items"):
        run_scenario(scenario)
    assert scenario.called() == ["provision"]  # no freeze, no switch
    data = MigrationJournal.read(scenario.journal)
    assert data["steps"]["verify"]["status"] == "failed" and "order_items" in data["steps"]["verify"]["error"]
    assert data["verifications"]["verify"]["ok"] is False
    after = make_mover(scenario).verify(raise_on_mismatch=False)
    assert [t.expected for t in after.tables] == [t.expected for t in before.tables]  # source unchanged
    # A plain re-run converges: the failed verification's copy is redone (it reconciles every row the
    # target holds against the source), then verified again, exactly, before anything is switched.
    run_scenario(scenario)
    data = MigrationJournal.read(scenario.journal)
    assert data["steps"]["done"]["status"] == "done"
    assert {"step": "bulk_copy", "event": "reset"}.items() <= next(
        e for e in data["events"] if e["event"] == "reset"
    ).items()
    assert data["steps"]["bulk_copy"]["attempts"] == 2 and data["steps"]["verify"]["attempts"] == 2
    assert_target_matches_source(as_engine(scenario.source), as_engine(scenario.target))


def test_fast_path_target_edit_after_the_copy_is_rewritten_by_the_delta(scratch: Path) -> None:
    sc = _sqlite_scenario(scratch)
    run_scenario(sc, stop_after=Step.BULK_COPY)
    tamper_target(as_engine(sc.target))
    journal = run_scenario(sc)
    data = MigrationJournal.read(sc.journal)
    assert data["steps"]["done"]["status"] == "done"
    assert data["tables"]["order_items"]["delta"]["updated"] == 1  # the edited row, rewritten under the freeze
    report = journal.verification(Step.VERIFY_FINAL)
    assert report is not None and report.ok
    assert_target_matches_source(as_engine(sc.source), as_engine(sc.target))


def test_failed_final_verification_calls_on_failure_and_never_switches(scenario: Scenario) -> None:
    run_scenario(scenario, stop_after=Step.DELTA_COPY)
    tamper_target(as_engine(scenario.target))
    failures: list[tuple[Step, str]] = []
    hooks = make_hooks(scenario)
    hooks = PlaybookHooks(
        hooks.provision, hooks.freeze, hooks.switch, hooks.unfreeze, hooks.health_check,
        on_failure=lambda ctx, exc: failures.append((ctx.step, type(exc).__name__)),
    )  # fmt: skip
    runner = open_migration(scenario.journal, make_mover(scenario), hooks)
    with runner.journal, pytest.raises(VerificationError, match="order_items"):
        runner.run()
    assert failures == [(Step.VERIFY_FINAL, "VerificationError")]
    assert "switch" not in scenario.called()


def test_schema_change_mid_migration_is_refused(scenario: Scenario) -> None:
    run_scenario(scenario, stop_after=Step.BULK_COPY)
    with as_engine(scenario.source).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE orders ADD COLUMN coupon TEXT")
    with pytest.raises(JournalError, match="schema changed"):
        run_scenario(scenario)


# --------------------------------------------------------------------------- kill -9 and resume


def _start_and_kill(sc: Scenario, step: Step) -> int:
    sc.kill_at, sc.ready = step.value, sc.journal.parent.parent / f"ready-{step.value}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(sc.argv(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not sc.ready.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"child exited with {proc.returncode} before reaching {step}: {out}")
            if time.monotonic() > deadline:
                pytest.fail(f"child never reached {step}")
            time.sleep(0.02)
        data = MigrationJournal.read(sc.journal)
        assert data["steps"][step.value]["status"] == "running"
        if step == Step.FREEZE:
            # While the child runs, a second migration of the tenant is refused and names it.
            with pytest.raises(MigrationLockedError, match=rf"pid {proc.pid} on "):
                MigrationJournal.open(sc.journal, tenant_id=TENANT)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    sc.kill_at = sc.ready = None
    return proc.pid


def _assert_resumed_cleanly(sc: Scenario, killed: Step, reference: dict[str, dict[str, str]] | None) -> None:
    journal = run_scenario(sc)  # resume in-process
    data = MigrationJournal.read(sc.journal)
    assert all(data["steps"][s.value]["status"] == "done" for s in STEPS)
    assert data["steps"][killed.value]["attempts"] == 2
    assert all(data["steps"][s.value]["attempts"] == 1 for s in STEPS if s != killed)
    expected_calls = [s.value for s in HOOK_STEPS]
    if killed in HOOK_STEPS:  # the interrupted hook runs again (hooks are idempotent by contract)
        expected_calls.insert(expected_calls.index(killed.value), killed.value)
    assert sc.called() == expected_calls
    report = journal.verification(Step.VERIFY_FINAL)
    assert report is not None and report.ok and report.method == data["checksum_method"]
    if reference is not None:
        assert {t.table: str(t.actual) for t in report.tables} == reference[report.method]
    # No duplicates, nothing missing, nothing altered: row for row equal to the source.
    assert_target_matches_source(as_engine(sc.source), as_engine(sc.target))


KILL_CASES = [
    # Every step on the default path; the steps that move or compare rows on the generic one too.
    *[pytest.param(s, True, id=f"sqlite-{s.value}") for s in STEPS if s != Step.DONE],
    *[pytest.param(s, False, id=f"sqlite-generic-{s.value}") for s in ENGINE_PHASES],
]


@pytest.mark.parametrize(("step", "fast_path"), KILL_CASES)
def test_sigkill_at_each_step_then_resume(
    scratch: Path, step: Step, fast_path: bool, reference_checksums: dict[str, dict[str, str]]
) -> None:
    sc = _sqlite_scenario(scratch, fast_path)
    _start_and_kill(sc, step)
    _assert_resumed_cleanly(sc, step, reference_checksums)
    assert MigrationJournal.read(sc.journal)["checksum_method"] == sc.method


def test_migration_begun_on_the_generic_engine_finishes_there(
    scratch: Path, reference_checksums: dict[str, dict[str, str]]
) -> None:
    """A journal written with canonical checksums (older version, or fast_path=False) is resumed by a
    mover that would pick the fast path: it follows the journal instead of refusing it."""
    sc = _sqlite_scenario(scratch, fast_path=False)
    _start_and_kill(sc, Step.BULK_COPY)
    sc.fast_path = True
    _assert_resumed_cleanly(sc, Step.BULK_COPY, reference_checksums)
    assert MigrationJournal.read(sc.journal)["checksum_method"] == CANONICAL


@pytest.mark.parametrize("step", [Step.BULK_COPY, Step.DELTA_COPY], ids=lambda s: s.value)
def test_sigkill_and_resume_on_postgresql(pg_scenario: Scenario, step: Step) -> None:
    _start_and_kill(pg_scenario, step)
    _assert_resumed_cleanly(pg_scenario, step, None)
    assert MigrationJournal.read(pg_scenario.journal)["checksum_method"] == "pg-md5"


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child_main(sys.argv[2:])
