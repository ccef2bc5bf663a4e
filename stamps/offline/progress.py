"""A progress line for long offline work, on a terminal only: `planning <stack>: N resources registered` for
plans, `checking policies on <stack>: N of M resources analyzed` for policy checks.

A large fleet takes tens of seconds to plan (or to check) and prints nothing until the end, which looks hung. After
`delay` seconds the line appears on the (terminal) stream and is rewritten in place a few times a second;
it is erased before anything else is printed, so the plan's own output is unchanged. Off a terminal (a
pipe, a file, CI logs) nothing at all is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

DELAY_S = 2.0  # plans shorter than this never show the line
INTERVAL_S = 0.2
_ERASE = "\r\x1b[K"


class ProgressLine:
    """Counts registrations per stack (set from any thread) and draws them from a daemon thread."""

    def __init__(self, stream: TextIO, total_stacks: int, *, delay: float | None = None, verb: str = "planning",
                 noun: str = "resources registered") -> None:
        self._stream = stream
        self._verb, self._noun = verb, noun
        self._of: int | None = None
        self._total = total_stacks
        self._delay = DELAY_S if delay is None else delay
        self._label = ""
        self._index = 0
        self._count = 0
        self._shown = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._draw_loop, name="stamps-plan-progress", daemon=True)

    def stack(self, label: str, of: int | None = None) -> Callable[[int], None]:
        """Start counting for the next stack (out of `of`, when known); returns the callback that sets the count
        (`plan_stack`'s `on_register`, `check_plan`'s `on_analyze`)."""
        self._index += 1
        self._label, self._count, self._of = label, 0, of

        def on_register(n: int) -> None:
            self._count = n

        return on_register

    def _text(self) -> str:
        where = f" ({self._index}/{self._total})" if self._total > 1 else ""
        of = f" of {self._of:,}" if self._of else ""
        return f"{self._verb} {self._label}{where}: {self._count:,}{of} {self._noun}"

    def _draw_loop(self) -> None:
        if self._stop.wait(self._delay):
            return
        last = ""
        while True:
            text = self._text()
            if text != last and self._index:  # nothing to say before the first stack starts
                self._write(_ERASE + text)
                self._shown, last = True, text
            if self._stop.wait(INTERVAL_S):
                return

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed terminal: the plan itself must not fail for it
            self._stop.set()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._shown:
            self._write(_ERASE)


@contextmanager
def progress_line(stream: TextIO, total_stacks: int, *, enabled: bool = True, verb: str = "planning",
                  noun: str = "resources registered") -> Iterator[ProgressLine]:
    """A ProgressLine that draws only when `enabled` and `stream` is a terminal; erased on exit."""
    line = ProgressLine(stream, total_stacks, verb=verb, noun=noun)
    if enabled and _is_terminal(stream):
        line.start()
    try:
        yield line
    finally:
        line.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
