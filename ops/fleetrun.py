"""Running a fleet's unit stacks through the Automation API: in dependency order, bounded parallel, resumable.

Stacks whose units depend on nothing still pending run together, at most `parallel` at a time (each is its own
`pulumi` process and its own backend lock). The first failure stops the run: stacks already running finish,
nothing new starts, and the report says which stacks are done, failed, or never started. A journal
(`.stamps/fleetrun-<fleet>-<verb>.json`, written atomically after every stack) lets a re-run with the same fleet
file skip what already succeeded; a changed fleet file starts over, because the done stacks were done with the
old one. This is the Automation API's documented multi-stack pattern (promote in order, stop at the first
failure, `CommandError` per stack), with one subprocess per stack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stamps.atomicfile import write_atomic
from stamps.environment import Environment
from stamps.errors import OperationFailed
from stamps.stacks.units import Unit, waves

StackAction = Callable[[str], str]  # stack name -> one-line summary of what it did; raises on failure


@dataclass
class StackRun:
    unit: Unit
    stack: str
    status: str = "pending"  # pending | running | done | failed | not started | done earlier
    summary: str = ""
    seconds: float = 0.0


@dataclass
class Journal:
    path: Path
    fleet_digest: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, path: Path, fleet_file: Path, restart: bool = False) -> tuple[Journal, bool]:
        """The journal for this fleet file; (journal, resumed) — a changed fleet file starts over."""
        digest = hashlib.sha256(fleet_file.read_bytes()).hexdigest()
        if path.is_file() and not restart:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if data.get("fleetDigest") == digest and isinstance(data.get("done"), dict):
                return cls(path, digest, dict(data["done"])), bool(data["done"])
        return cls(path, digest), False

    def record(self, run: StackRun) -> None:
        with self._lock:
            self.done[run.stack] = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                    "summary": run.summary}
            write_atomic(self.path, json.dumps({"fleetDigest": self.fleet_digest, "done": self.done}, indent=2),
                         mode=0o600)

    def finish(self) -> None:
        """A complete run leaves no journal: the next run deploys everything it is asked to."""
        self.path.unlink(missing_ok=True)


def run_stacks(env: Environment, fleet: str, chosen: Sequence[Unit], action: StackAction, *, parallel: int,
               console: Console, journal: Journal | None = None, verb: str = "up",
               finish: bool = True) -> list[StackRun]:
    """Run `action` on each chosen unit's stack, wave by wave; raises OperationFailed at the first failure
    (after the running stacks finished), with the per-stack report printed. `finish=False` keeps the journal
    when this is one part of a longer run (a rollout's wave)."""
    runs = {u: StackRun(u, u.stack(fleet)) for u in chosen}
    if journal is not None:
        for run in runs.values():
            if run.stack in journal.done:
                run.status, run.summary = "done earlier", journal.done[run.stack].get("summary", "")
    plan = waves(env, chosen)
    total = len(runs)
    finished = sum(1 for r in runs.values() if r.status == "done earlier")
    failed: list[StackRun] = []
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="stack") as pool:
        for wave in plan:
            queue = [runs[u] for u in wave if runs[u].status == "pending"]
            futures: dict[Future[str], StackRun] = {}
            while queue or futures:
                # The first failure stops the run: nothing new starts, the running stacks finish.
                while queue and not failed and len(futures) < parallel:
                    run = queue.pop(0)
                    run.status = "running"
                    console.print(f"[{finished + len(futures) + 1}/{total}] {verb} {run.stack} …")
                    run.seconds = time.monotonic()
                    futures[pool.submit(action, run.stack)] = run
                if not futures:
                    break
                done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for fut in done:
                    run = futures.pop(fut)
                    run.seconds = time.monotonic() - run.seconds
                    try:
                        run.summary = fut.result()
                    except Exception as err:  # every failure is reported per stack, then raised
                        text = str(err).strip()
                        run.status, run.summary = "failed", (text.splitlines()[0][:300] if text else repr(err))
                        failed.append(run)
                        console.print(f"  ✗ {run.stack}: {run.summary}")
                        continue
                    run.status = "done"
                    finished += 1
                    if journal is not None:
                        journal.record(run)
                    console.print(f"  ✓ {run.stack}: {run.summary} ({run.seconds:.0f} s)")
            if failed:
                break
    for run in runs.values():
        if run.status == "pending":
            run.status = "not started"
    console.print(report(list(runs.values()), verb))
    if failed:
        raise OperationFailed(f"{verb} stopped: {', '.join(r.stack for r in failed)} failed; "
                              f"{sum(r.status in ('done', 'done earlier') for r in runs.values())} of {total} stacks "
                              "are done. Fix the cause and re-run the same command: it resumes after the done stacks")
    if journal is not None and finish:
        journal.finish()
    return list(runs.values())


def report(runs: list[StackRun], verb: str) -> Table:
    table = Table(title=f"{verb}: {len(runs)} stacks")
    for col in ("stack", "status", "result", "time"):
        table.add_column(col, no_wrap=col != "result")
    style = {"done": "green", "done earlier": "green", "failed": "red", "not started": "yellow"}
    for r in runs:
        table.add_row(r.stack, f"[{style.get(r.status, '')}]{r.status}[/]", r.summary,
                      f"{r.seconds:.0f} s" if r.status in ("done", "failed") else "")
    return table
