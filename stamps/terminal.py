"""How both CLIs talk to a terminal, a pipe or a CI log: width, broken pipes, one-line errors.

Width: the real terminal width on a TTY; off a TTY (CI logs, `| less`) `$COLUMNS` if set, else
`READABLE_WIDTH`, wide enough that type tokens and resource names stay whole. A closed pipe (`| head`) ends
the command quietly with exit 0, as `cat` does.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from rich.console import Console

READABLE_WIDTH = 160


def width_for(stream: IO[str]) -> int | None:
    """None (let rich measure) on a terminal; a readable fixed width anywhere else."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):
        pass
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    return columns if 40 <= columns <= 1000 else READABLE_WIDTH


class PipeConsole(Console):
    """A rich console that hands a closed pipe to the CLI's handler as BrokenPipeError.

    rich's own `on_broken_pipe` raises SystemExit(1), which the CLIs' handlers never see: `stamps alerts
    --catalog | head` exited 1 while `stamps schema | head` exited 0.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more to write: later prints (a summary line) must not raise again
        raise BrokenPipeError(32, "Broken pipe")


def make_console(*, stderr: bool = False, record: bool = False, **kwargs: Any) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return PipeConsole(width=width_for(stream), stderr=stderr, record=record, soft_wrap=False, **kwargs)


def quiet_broken_pipe() -> int:
    """After BrokenPipeError: point stdout at /dev/null so the interpreter's final flush cannot raise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 0
