"""A log file per CLI run under `<project>/.stamps/logs/`, secrets redacted; `-v/--verbose` on the console.

The log holds the command line, every log record at INFO (at DEBUG with `-v`: the Automation API's and the
Azure SDK's included), the run's console output, the verdict and, for an unexpected error, its traceback, which the
console never shows. Redaction runs on every line: `secure:` ciphertexts, URL query secrets (SAS `sig=`,
`code=`, `key=`), bearer tokens, Slack webhook paths, and whatever the caller registers (`redactors`).
Only the newest `KEEP` logs are kept.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from stamps.atomicfile import PRIVATE, write_atomic
from stamps.errors import clip

KEEP = 50

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(\bsecure:\s*)([^\s,}\]]+)"), r"\1[redacted]"),
    (re.compile(r"(?i)([?&](?:sig|code|key|token|password|secret|client_secret)=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"(hooks\.slack\.com/services/)[^\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:password|passwd|secret|routing_key|api_key)[\"']?\s*[:=]\s*[\"']?)[^\s,\"'}]+"),
     r"\1[redacted]"),
)


def redact(text: str, extra: Sequence[Callable[[str], str]] = ()) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    for fn in extra:
        text = fn(text)
    return text


class _Redacting(logging.Formatter):
    def __init__(self, extra: Sequence[Callable[[str], str]]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.extra = extra

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.extra)


class _OneLine(logging.Formatter):
    """Warnings on the console without `-v`: the first line only (an Azure credential chain failure is a
    13-line dump; the log file and `-v` keep it whole)."""

    def __init__(self, extra: Sequence[Callable[[str], str]], where: str) -> None:
        super().__init__("%(message)s")  # as Python prints a warning with no logging set up
        self.extra, self.where = extra, where

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = None
        record.stack_info = None
        lines = record.getMessage().splitlines() or [""]
        more = f" (+{len(lines) - 1} lines: {self.where})" if len(lines) > 1 else ""
        record.msg, record.args = clip(lines[0].rstrip(), 1000) + more, None
        return redact(super().format(record), self.extra)


class RunLog:
    """One run's log file; `None` path when the run must write nothing (dry runs)."""

    def __init__(self, log_dir: Path | None, tool: str, command: str, argv: Sequence[str], *, verbose: int = 0,
                 redactors: Sequence[Callable[[str], str]] = ()) -> None:
        self.redactors = tuple(redactors)
        self.verbose = verbose
        self.path: Path | None = None
        self._handlers: list[logging.Handler] = []
        self._argv = list(argv)
        root = logging.getLogger()
        self._level = root.level
        console = logging.StreamHandler()
        console.addFilter(lambda r: r.name != "stamps.run")  # the run's own record is for the file
        if verbose:
            console.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
            console.setFormatter(_Redacting(self.redactors))
        else:
            console.setLevel(logging.WARNING)
            # azure-identity warns with its whole credential chain; the error that chain causes is summarised on
            # the console by the code that reads Azure (ops.azure_monitor.token_failure): the chain is for the file.
            console.addFilter(lambda r: not r.name.startswith("azure.identity"))
        self._handlers.append(console)
        if log_dir is not None:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            safe = re.sub(r"[^\w.-]", "_", f"{tool}-{command}")
            self.path = Path(log_dir) / f"{stamp}-{safe}-{os.getpid()}.log"
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, PRIVATE))  # 0600 from the first line on
                handler = logging.FileHandler(self.path, encoding="utf-8")
            except OSError:
                self.path = None  # a read-only checkout must not stop a run; the console still has it all
            else:
                handler.setLevel(logging.DEBUG)
                handler.setFormatter(_Redacting(self.redactors))
                self._handlers.append(handler)
                _prune(self.path.parent)
        if not verbose:
            where = f"see {self.path}" if self.path is not None else "re-run with -v"
            console.setFormatter(_OneLine(self.redactors, where))
        for h in self._handlers:
            root.addHandler(h)
        # INFO by default (DEBUG from the SDKs is large and slow to write); -v: everything, in the file too.
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        logging.getLogger("stamps.run").info("%s %s", tool, " ".join(clip(a, 500) for a in self._argv))
        self._finished = False
        # `stamps plan` may end the process with os._exit after the atexit handlers (stamps.speedup.exit_fast).
        atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        if not self._finished:
            self.finish(0, error="(the process ended through the fast exit path)")

    def finish(self, code: int, console_text: str = "", error: str = "") -> None:
        if self._finished:
            return
        self._finished = True
        atexit.unregister(self._at_exit)
        log = logging.getLogger("stamps.run")
        if console_text:
            log.info("console output:\n%s", console_text.rstrip())
        if error:
            log.info("%s", error.rstrip())
        log.info("exit %d", code)
        root = logging.getLogger()
        for h in self._handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(self._level)
        if self.path is not None and self.path.exists():
            # Rewrite once through the redactor: console text and tracebacks may quote anything.
            text = self.path.read_text(encoding="utf-8", errors="replace")
            write_atomic(self.path, redact(text, self.redactors), mode=PRIVATE)


def _prune(log_dir: Path) -> None:
    logs = sorted(log_dir.glob("*.log"))
    for old in logs[:-KEEP]:
        with contextlib.suppress(OSError):
            old.unlink()
