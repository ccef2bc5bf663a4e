"""Progress reporting: a rich progress bar (rows, rows/s) on a terminal, silence otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ops.migration.checksum import Checksum


@dataclass(frozen=True)
class BatchEvent:
    """One committed unit of work; the journal records ``high_water_mark`` and ``checksum``.

    ``phase`` is one of bulk_copy, delta_upsert, delta_delete, verify, purge. For bulk_copy the
    checksum is the running total of everything copied into the table so far (it is what the
    pre-freeze verification compares the target against).
    """

    phase: str
    table: str
    rows: int
    high_water_mark: tuple[Any, ...] | None
    checksum: Checksum | None = None
    done: bool = False
    stats: dict[str, int] = field(default_factory=dict)


BatchCallback = Callable[[BatchEvent], None]


class _RowsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Any) -> Any:  # rich's Task is untyped enough that Any is honest here
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "– rows/s", style="progress.data.speed")


class ProgressDisplay:
    """Context manager; ``enabled=None`` means "only when stderr is a terminal"."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RowsPerSecond(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def start(self, description: str, total: int | None) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total)

    def advance(self, rows: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, rows)

    def finish(self) -> None:
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, total=task.completed)
            self._task = None
