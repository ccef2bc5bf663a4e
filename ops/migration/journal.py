"""Migration journal, per-tenant lock and the step runner the playbook drives.

Journal file (JSON, one per migration, path chosen by the caller), rewritten atomically
(temp file in the same directory + fsync + ``os.replace`` + directory fsync) on every change::

    {
      "format": 1,
      "tenant_id": "acme", "tenant_column": "tenant_id",
      "source": "postgresql+psycopg2://u:***@h/shared", "target": "...",   # passwords redacted
      "source_identity": "postgresql:<system_identifier>/<db oid>", "target_identity": "...",
                # what the servers said they are (identity.py), recorded when the run first connects;
                # a resume or purge reaching other databases is refused
      "source_cell": "shared-smb", "target_cell": "acme",            # set by the playbook
      "created_at": "...", "updated_at": "...",
      "current_step": "delta_copy",
      "checksum_method": "canonical" | "pg-md5" | "sqlite-exact",   # how copy and verify compared rows
      "plan": [{"name", "kind", "pk", "columns", "depends_on"}, ...],          # parents first
      "steps": {"provision": {"status": "pending|running|done|failed", "attempts": 1,
                              "started_at", "finished_at", "error", "result"}, ...},
      "tables": {"orders": {"bulk":  {"high_water_mark": [..], "checksum": "rows:hex64", "rows", "done"},
                # sqlite-exact: the digest is always 0, the row count is what verify compares
                            "delta": {"high_water_mark": [..], "upserted", "done",
                                      "inserted", "updated", "deleted", "checksum"}}},
                # progress is flushed at most every ``progress_interval`` s (see below); the
                # delta counters therefore count journaled work only
      "verifications": {"verify": {...report...}, "verify_final": {...report...}},
                # per table: expected/actual "rows:hex64", ok, and "differing" (rows an exact
                # sqlite-exact comparison found missing, extra or changed; 0 for checksums)
      "events": [{"at", "step", "event": "started|done|failed|reset", "detail"}]
    }

Key values that JSON cannot carry natively are tagged: {"$decimal": "1.50"}, {"$datetime": iso},
{"$date": iso}, {"$time": iso}, {"$bytes": base64}, {"$uuid": "..."}.

Journal and lock files are created 0600: they name databases and tenants.

Locking: ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``.<tenant>.migration.lock`` next to the journal,
so two migrations of one tenant refuse each other when their journals share a directory (the
playbook keeps one journal directory). The holder writes its pid/host/start time into the lock
file; the kernel drops the lock when the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import fcntl
import hashlib
import json
import os
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from ops.migration.checksum import CANONICAL, SQLITE_EXACT, Checksum
from ops.migration.copy import DeltaState, TableCopyState, TenantDataMover
from ops.migration.db import redact, redact_url, scrub
from ops.migration.discovery import MigrationPlan
from ops.migration.errors import (
    DamagedJournalError,
    DatabasesChangedError,
    JournalError,
    MigrationError,
    MigrationLockedError,
)
from ops.migration.identity import DatabaseIdentity
from ops.migration.progress import BatchCallback, BatchEvent
from ops.migration.verify import VerificationReport, utcnow
from stamps.atomicfile import write_atomic

JOURNAL_FORMAT = 1


class Step(enum.StrEnum):
    """Migration steps in execution order. Engine steps: bulk_copy, verify, delta_copy, verify_final."""

    PROVISION = "provision"
    BULK_COPY = "bulk_copy"
    VERIFY = "verify"
    FREEZE = "freeze"
    DELTA_COPY = "delta_copy"
    VERIFY_FINAL = "verify_final"
    SWITCH = "switch"
    UNFREEZE = "unfreeze"
    HEALTH_CHECK = "health_check"
    DONE = "done"


STEPS: tuple[Step, ...] = tuple(Step)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# --------------------------------------------------------------------------- value encoding


def encode_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if v == v and v not in (float("inf"), float("-inf")) else {"$float": repr(v)}
    if isinstance(v, decimal.Decimal):
        return {"$decimal": str(v)}
    if isinstance(v, dt.datetime):
        return {"$datetime": v.isoformat()}
    if isinstance(v, dt.date):
        return {"$date": v.isoformat()}
    if isinstance(v, dt.time):
        return {"$time": v.isoformat()}
    if isinstance(v, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, uuid.UUID):
        return {"$uuid": str(v)}
    raise TypeError(f"cannot journal key value of type {type(v).__name__}")


_DECODERS: dict[str, Callable[[str], Any]] = {
    "$float": float,
    "$decimal": decimal.Decimal,
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
}


def decode_value(v: Any) -> Any:
    if isinstance(v, dict):
        ((tag, text),) = v.items()
        return _DECODERS[tag](text)
    return v


def encode_key(key: tuple[Any, ...] | None) -> list[Any] | None:
    return None if key is None else [encode_value(v) for v in key]


def decode_key(data: list[Any] | None) -> tuple[Any, ...] | None:
    return None if data is None else tuple(decode_value(v) for v in data)


def _damage(data: dict[str, Any]) -> str | None:
    """What is structurally wrong with a parsed journal, or None."""
    if not isinstance(data.get("tenant_id"), str):
        return "no tenant_id"
    steps = data.get("steps")
    if not isinstance(steps, dict):
        return "no steps"
    for step in STEPS:
        entry = steps.get(step.value)
        if not isinstance(entry, dict) or entry.get("status") not in {s.value for s in StepStatus}:
            return f"step {step.value!r} has no valid status"
    if data.get("current_step") not in {s.value for s in STEPS}:
        return f"unknown current_step {data.get('current_step')!r}"
    if not isinstance(data.get("tables", {}), dict) or not isinstance(data.get("verifications", {}), dict):
        return "tables/verifications are not objects"
    if data.get("plan") is not None and not isinstance(data["plan"], list):
        return "plan is not a list"
    if not isinstance(data.get("events", []), list):
        return "events is not a list"
    try:
        for entry in data.get("tables", {}).values():
            bulk, delta = entry.get("bulk"), entry.get("delta")
            if bulk:
                decode_key(bulk["high_water_mark"])
                Checksum.parse(bulk["checksum"])
                bool(bulk["done"])
            if delta:
                decode_key(delta["high_water_mark"])
                Checksum.parse(delta["checksum"])
                int(delta["inserted"]) + int(delta["updated"]) + int(delta["deleted"])
        for report in data.get("verifications", {}).values():
            VerificationReport.from_dict(report)
        for key in ("source_identity", "target_identity"):
            if data.get(key):
                DatabaseIdentity.parse(data[key])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        return f"unreadable progress record: {type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- lock


class MigrationLock:
    """Non-blocking exclusive flock; refusal names the holder (pid, host, start time)."""

    def __init__(self, path: Path, tenant_id: Any) -> None:
        self.path = path
        self.tenant_id = tenant_id
        self._fd: int | None = None

    def acquire(self) -> MigrationLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # also tightens a lock file an older version created 0644
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise MigrationLockedError(str(self.tenant_id), str(self.path), holder) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": utcnow(),
            "tenant_id": str(self.tenant_id),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    @staticmethod
    def _read_holder(fd: int) -> dict[str, object] | None:
        try:
            data = os.pread(fd, 4096, 0)
            return json.loads(data) if data else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # stale holder info would mislead the next refusal message
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def lock_path_for(journal_path: Path, tenant_id: Any) -> Path:
    text = str(tenant_id)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64]
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]  # sanitising must not merge tenants
    return journal_path.parent / f".{safe}-{digest}.migration.lock"


# --------------------------------------------------------------------------- journal


class MigrationJournal:
    """The state of one tenant migration on disk. Open with :meth:`open` (takes the lock)."""

    #: Batch progress is flushed at most this often (step transitions and finished tables always
    #: are). Lagging is safe by construction: on resume the bulk copy reconciles whatever the
    #: target holds past the journaled mark and the delta re-compares ranges, so an older mark
    #: costs a little re-work, never a duplicate. It spares two fsyncs per batch.
    progress_interval: float = 1.0

    def __init__(self, path: Path, data: dict[str, Any], lock: MigrationLock) -> None:
        self.path = path
        self.data = data
        self.lock = lock
        self._last_flush = 0.0

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        tenant_id: Any,
        source: str = "",
        target: str = "",
        tenant_column: str = "tenant_id",
        cells: tuple[str, str] | None = None,
    ) -> MigrationJournal:
        """Lock the tenant, then load the journal at ``path`` or start a new one there.

        Raises MigrationLockedError if another live process migrates this tenant, JournalError if
        the file belongs to another tenant or cannot be parsed. ``cells``: (source CELL, target CELL),
        recorded once; the recorded ones win on resume (``source_cell``/``target_cell``).
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        lock = MigrationLock(lock_path_for(p, tenant_id), tenant_id).acquire()
        try:
            if p.exists():
                data = cls.read(p)
                if data.get("tenant_id") != str(tenant_id):
                    raise JournalError(f"journal {p} belongs to tenant {data.get('tenant_id')!r}, not {tenant_id!r}")
            else:
                now = utcnow()
                data = {
                    "format": JOURNAL_FORMAT,
                    "tenant_id": str(tenant_id),
                    "tenant_column": tenant_column,
                    "source": redact_url(source) if source else "",
                    "target": redact_url(target) if target else "",
                    "source_identity": None,
                    "target_identity": None,
                    "source_cell": cells[0] if cells else None,
                    "target_cell": cells[1] if cells else None,
                    "created_at": now,
                    "updated_at": now,
                    "current_step": STEPS[0].value,
                    "checksum_method": None,
                    "plan": None,
                    "steps": {s.value: {"status": StepStatus.PENDING.value, "attempts": 0} for s in STEPS},
                    "tables": {},
                    "verifications": {},
                    "events": [],
                }
            journal = cls(p, data, lock)
            journal.save()
            return journal
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def read(path: str | os.PathLike[str]) -> dict[str, Any]:
        """Parse and check a journal without locking (for status displays and purge).

        A journal that parses but is damaged (hand-edited, truncated by a tool, written by a bug)
        raises JournalError naming what is wrong, never a KeyError/TypeError later.
        """
        advice = "move it aside and start the migration again (the copy is idempotent), or restore it from a backup"
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise JournalError(f"cannot read journal {path}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:  # truncated or overwritten: not JSON any more (UnicodeDecodeError too)
            raise DamagedJournalError(str(path), f"not JSON: {exc}", advice) from None
        if not isinstance(data, dict):
            raise DamagedJournalError(str(path), "not a JSON object", advice)
        if data.get("format") != JOURNAL_FORMAT:
            raise JournalError(f"journal {path} has unsupported format {data.get('format')!r}")
        problem = _damage(data)
        if problem:
            raise DamagedJournalError(str(path), problem, advice)
        return data

    def bind_identities(self, source: DatabaseIdentity, target: DatabaseIdentity) -> None:
        """Record which databases this migration moves between; refuse others on resume."""
        found = {"source_identity": str(source), "target_identity": str(target)}
        recorded = {k: self.data.get(k) for k in found}
        if recorded == found:
            return
        if any(recorded.values()):
            changed = [
                f"{role} is now {found[key]} (recorded {recorded[key]})"
                for role, key in (("source", "source_identity"), ("target", "target_identity"))
                if found[key] != recorded[key]
            ]
            raise DatabasesChangedError(
                f"this migration began between other databases than the URLs now reach: {'; '.join(changed)}. "
                f"Nothing was copied. Resume with the URLs that reach the recorded databases (journal {self.path}: "
                f"source {self.data.get('source') or '?'}, target {self.data.get('target') or '?'}), or give "
                "this migration up with `stamps-ops migrate-abandon` and start again"
            )
        self.data.update(found)
        self.save()

    def identities(self) -> tuple[DatabaseIdentity, DatabaseIdentity] | None:
        src, tgt = self.data.get("source_identity"), self.data.get("target_identity")
        if not src or not tgt:
            return None
        return DatabaseIdentity.parse(src), DatabaseIdentity.parse(tgt)

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> MigrationJournal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def save(self) -> None:
        if not self.lock.held:
            raise JournalError("journal is closed (lock released); reopen it to record progress")
        self.data["updated_at"] = utcnow()
        write_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=False).encode(), mode=0o600)
        self._last_flush = time.monotonic()

    def _save_progress(self, force: bool) -> None:
        if force or time.monotonic() - self._last_flush >= self.progress_interval:
            self.save()

    # ------------------------------------------------------------------ steps

    def status(self, step: Step) -> StepStatus:
        return StepStatus(self.data["steps"][step.value]["status"])

    def next_step(self) -> Step | None:
        return next((s for s in STEPS if self.status(s) != StepStatus.DONE), None)

    @property
    def finished(self) -> bool:
        return self.next_step() is None

    def _event(self, step: Step, event: str, detail: Any = None) -> None:
        self.data["events"].append({"at": utcnow(), "step": step.value, "event": event, "detail": detail})

    def mark_started(self, step: Step) -> None:
        entry = self.data["steps"][step.value]
        entry.update(status=StepStatus.RUNNING.value, started_at=utcnow(), finished_at=None, error=None)
        entry["attempts"] = entry.get("attempts", 0) + 1
        self.data["current_step"] = step.value
        self._event(step, "started", {"attempt": entry["attempts"]})
        self.save()

    def mark_done(self, step: Step, result: Mapping[str, Any] | None = None) -> None:
        entry = self.data["steps"][step.value]
        entry.update(status=StepStatus.DONE.value, finished_at=utcnow(), result=dict(result or {}))
        self._event(step, "done")
        self.save()

    def mark_failed(self, step: Step, error: BaseException) -> None:
        entry = self.data["steps"][step.value]
        message = f"{type(error).__name__}: {error}"
        entry.update(status=StepStatus.FAILED.value, finished_at=utcnow(), error=message)
        self._event(step, "failed", message)
        self.save()

    def reset_from(self, step: Step) -> None:
        """Mark ``step`` and every later step pending again, dropping their recorded progress.

        E.g. after a failed ``verify``: ``reset_from(Step.BULK_COPY)`` re-copies; the copy
        reconciles what the target already holds, so nothing is duplicated.
        """
        idx = STEPS.index(step)
        for s in STEPS[idx:]:
            self.data["steps"][s.value].update(status=StepStatus.PENDING.value, error=None)
            self.data["verifications"].pop(s.value, None)
        for tables in self.data["tables"].values():
            if idx <= STEPS.index(Step.BULK_COPY):
                tables.pop("bulk", None)
            if idx <= STEPS.index(Step.DELTA_COPY):
                tables.pop("delta", None)
        self.data["current_step"] = step.value
        self._event(step, "reset")
        self.save()

    # ------------------------------------------------------------------ plan

    def check_plan(self, plan: MigrationPlan, method: str) -> None:
        """Record the plan on first use; afterwards refuse to continue if the schema changed."""
        described = plan.describe()
        if self.data["plan"] is None:
            self.data["plan"] = described
            self.data["checksum_method"] = method
            self.save()
            return
        if self.data["plan"] != described:
            raise JournalError(
                "the source schema changed since this migration started; journal plan "
                f"{[t['name'] for t in self.data['plan']]} vs now {[t['name'] for t in described]}"
            )
        if self.data["checksum_method"] != method:
            raise JournalError(f"checksum method changed from {self.data['checksum_method']} to {method}")

    # ------------------------------------------------------------------ table progress

    def _table(self, name: str) -> dict[str, Any]:
        return self.data["tables"].setdefault(name, {})

    def bulk_states(self) -> dict[str, TableCopyState]:
        out = {}
        for name, entry in self.data["tables"].items():
            b = entry.get("bulk")
            if b:
                out[name] = TableCopyState(decode_key(b["high_water_mark"]), Checksum.parse(b["checksum"]), b["done"])
        return out

    def bulk_checksums(self) -> dict[str, Checksum]:
        return {name: s.checksum for name, s in self.bulk_states().items()}

    def record_bulk(self, event: BatchEvent) -> None:
        assert event.checksum is not None
        self._table(event.table)["bulk"] = {
            "high_water_mark": encode_key(event.high_water_mark),
            "checksum": str(event.checksum),
            "rows": event.checksum.count,
            "done": event.done,
            "updated_at": utcnow(),
        }
        self._save_progress(force=event.done)

    def delta_states(self) -> dict[str, DeltaState]:
        out = {}
        for name, entry in self.data["tables"].items():
            d = entry.get("delta")
            if d:
                out[name] = DeltaState(
                    high_water_mark=decode_key(d["high_water_mark"]),
                    upserted=d["upserted"],
                    done=d["done"],
                    inserted=d["inserted"],
                    updated=d["updated"],
                    deleted=d["deleted"],
                    checksum=Checksum.parse(d["checksum"]),
                )
        return out

    def record_delta(self, event: BatchEvent) -> None:
        d = self._table(event.table).setdefault(
            "delta",
            {
                "high_water_mark": None,
                "upserted": False,
                "done": False,
                "inserted": 0,
                "updated": 0,
                "deleted": 0,
                "checksum": str(Checksum()),
            },
        )
        if event.phase == "delta_upsert":
            if event.high_water_mark is not None:
                d["high_water_mark"] = encode_key(event.high_water_mark)
            if event.checksum is not None:
                d["checksum"] = str(event.checksum)
            d["inserted"] += event.stats.get("inserted", 0)
            d["updated"] += event.stats.get("updated", 0)
            d["upserted"] = d["upserted"] or event.done
        elif event.phase == "delta_delete" and event.done:
            d["deleted"] = event.stats.get("deleted", 0)
            d["done"] = True
        else:
            return  # intermediate delete batches: the pass restarts per table anyway
        d["updated_at"] = utcnow()
        self._save_progress(force=event.done)

    # ------------------------------------------------------------------ verification

    def record_verification(self, step: Step, report: VerificationReport) -> None:
        self.data["verifications"][step.value] = report.to_dict()
        self.save()

    def verification(self, step: Step) -> VerificationReport | None:
        data = self.data["verifications"].get(step.value)
        return VerificationReport.from_dict(data) if data else None


# --------------------------------------------------------------------------- runner


@dataclass
class StepContext:
    """What a playbook hook gets: the step, the tenant, the journal and the data mover."""

    step: Step
    tenant_id: Any
    journal: MigrationJournal
    mover: TenantDataMover


StepHook = Callable[[StepContext], Mapping[str, Any] | None]
FailureHook = Callable[[StepContext, BaseException], None]


@dataclass(frozen=True)
class PlaybookHooks:
    """Callbacks for the steps only the playbook can do. Each must be idempotent: after a crash
    the interrupted step runs again. A returned mapping is stored as the step's ``result``."""

    provision: StepHook
    freeze: StepHook
    switch: StepHook
    unfreeze: StepHook
    health_check: StepHook
    on_failure: FailureHook | None = None  # e.g. unfreeze the source if a post-freeze step failed


class MigrationRunner:
    """Drives the steps in order, journaling each before and after; skips completed steps.

    Any exception stops the run with the step marked failed (verification failures included,
    so nothing after a failed verify — in particular ``switch`` — runs, and the source is never
    written). Re-running resumes at the first step not done.
    """

    def __init__(
        self,
        journal: MigrationJournal,
        mover: TenantDataMover,
        hooks: PlaybookHooks,
        *,
        on_batch: BatchCallback | None = None,
    ) -> None:
        if journal.data["tenant_id"] != str(mover.tenant_id):
            raise JournalError("journal and mover are for different tenants")
        self.journal = journal
        self.mover = mover
        self.hooks = hooks
        self.on_batch = on_batch

    def run(self, *, stop_after: Step | None = None) -> Step | None:
        """Run pending steps; returns the last step completed in this call (None if none ran)."""
        last: Step | None = None
        self.bind_databases()
        self._reset_failed_verification()
        for step in STEPS:
            if self.journal.status(step) == StepStatus.DONE:
                continue
            ctx = StepContext(step, self.mover.tenant_id, self.journal, self.mover)
            self.journal.mark_started(step)
            try:
                result = self._execute(step, ctx)
            except Exception as exc:
                error = _as_migration_error(exc, self.mover)
                self.journal.mark_failed(step, error)
                if self.hooks.on_failure is not None:
                    self.hooks.on_failure(ctx, error)
                if error is exc:
                    raise
                raise error from exc
            self.journal.mark_done(step, result)
            last = step
            if step == stop_after:
                break
        return last

    def bind_databases(self) -> None:
        """Before any step (or a ``reset_from``): the URLs must reach two different databases, the
        recorded ones on resume (DatabasesChangedError otherwise). Idempotent."""
        if not self.journal.finished:
            self.journal.bind_identities(*self.mover.identities())

    def _reset_failed_verification(self) -> None:
        """Make a plain re-run converge after a failure, without ``--restart-from``.

        A failed snapshot verification redoes the bulk copy (it reconciles what the target holds, so
        nothing is duplicated). A failed delta copy or final verification redoes the freeze too: the
        playbook's failure hook unfroze the tenant, so its writes may have resumed.
        """
        if self.journal.status(Step.VERIFY) == StepStatus.FAILED:
            self.journal.reset_from(Step.BULK_COPY)
        elif StepStatus.FAILED in (self.journal.status(Step.DELTA_COPY), self.journal.status(Step.VERIFY_FINAL)):
            self.journal.reset_from(Step.FREEZE)

    def _observer(self, record: Callable[[BatchEvent], None]) -> BatchCallback:
        def observe(event: BatchEvent) -> None:
            record(event)  # journal first: an observer that dies must not lose recorded progress
            if self.on_batch is not None:
                self.on_batch(event)

        return observe

    def _execute(self, step: Step, ctx: StepContext) -> Mapping[str, Any] | None:
        m, j = self.mover, self.journal
        if j.data["checksum_method"] == CANONICAL and m.method == SQLITE_EXACT:
            # Begun on the generic engine (older version, or fast_path=False): its recorded checksums
            # are canonical, so it finishes there rather than failing check_plan.
            m.disable_fast_path()
        if step == Step.BULK_COPY:
            j.check_plan(m.plan, m.method)
            created = m.prepare_target()
            states = m.bulk_copy(resume=j.bulk_states(), on_batch=self._observer(j.record_bulk))
            return {"created_tables": created, "rows": {n: s.checksum.count for n, s in states.items()}}
        if step in (Step.VERIFY, Step.VERIFY_FINAL):
            j.check_plan(m.plan, m.method)
            if step == Step.VERIFY:
                report = m.verify_snapshot(
                    j.bulk_checksums(), raise_on_mismatch=False, on_batch=self._observer(_ignore)
                )
            else:
                report = m.verify(raise_on_mismatch=False, on_batch=self._observer(_ignore))
            j.record_verification(step, report)
            report.raise_for_mismatch()
            return {"ok": True, "rows": {t.table: t.actual.count for t in report.tables}}
        if step == Step.DELTA_COPY:
            j.check_plan(m.plan, m.method)
            deltas = m.delta_copy(resume=j.delta_states(), on_batch=self._observer(j.record_delta))
            return {n: {"inserted": s.inserted, "updated": s.updated, "deleted": s.deleted} for n, s in deltas.items()}
        if step == Step.DONE:
            return None
        hook: StepHook = getattr(self.hooks, step.value)
        return hook(ctx)


def _as_migration_error(exc: Exception, mover: TenantDataMover) -> Exception:
    """Database errors become MigrationError (the playbook's clean-stop contract), their text scrubbed
    of the URLs' secrets: drivers echo connection strings back."""
    if isinstance(exc, sa.exc.DBAPIError | sqlite3.Error):
        orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        text = scrub(f"{type(orig).__name__}: {first}", mover.source.url, mover.target.url)
        return MigrationError(f"database error: {text}")
    return exc


def _ignore(_event: BatchEvent) -> None:
    return None


def open_migration(
    journal_path: str | os.PathLike[str],
    mover: TenantDataMover,
    hooks: PlaybookHooks,
    *,
    on_batch: BatchCallback | None = None,
    cells: tuple[str, str] | None = None,
) -> MigrationRunner:
    """Convenience: lock + load/create the journal for ``mover``'s tenant and build the runner.

    The caller closes ``runner.journal`` (or uses it as a context manager) to release the lock.
    """
    journal = MigrationJournal.open(
        journal_path,
        tenant_id=mover.tenant_id,
        source=redact(mover.source),
        target=redact(mover.target),
        tenant_column=mover.tenant_column,
        cells=cells,
    )
    return MigrationRunner(journal, mover, hooks, on_batch=on_batch)
