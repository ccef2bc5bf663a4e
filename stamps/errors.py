"""One error root for both CLIs: library code raises a `StampsError`; only `stamps` and `stamps-ops` turn it
into an exit code and a one-line message (no traceback).

Exit codes (both CLIs): 0 done, 1 an operation ran and failed (undone where possible), 2 bad input, 3 a
mandatory policy refused the change (nothing changed), 4 refused by a safety check, 5 the change is deployed
but a notification channel failed (the audit line is written; re-send by hand), 130 interrupted.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_POLICY, EXIT_REFUSED, EXIT_NOTIFY_FAILED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130


class StampsError(Exception):
    """Base of every error the tools report to a person; `exit_code` says what kind of failure it is."""

    exit_code = EXIT_USAGE


class UsageError(StampsError):
    """Bad input (an argument, a config file, a plan file): the message names it and what is valid."""

    exit_code = EXIT_USAGE


class OperationFailed(StampsError):
    """An operation ran and failed; anything it could undo has been undone (the message says what is left)."""

    exit_code = EXIT_FAILED


class PolicyViolation(StampsError):
    """A mandatory policy of the pack refused the change; nothing was changed."""

    exit_code = EXIT_POLICY


class SafetyRefusal(StampsError):
    """A safety check said no (healthy primary without --force, concurrent playbook, invalid result)."""

    exit_code = EXIT_REFUSED


def clip_message(text: str, line_limit: int = 1000, lines: int = 40) -> str:
    """An error message as printed: every line clipped, at most `lines` lines (values may be huge)."""
    out = [clip(line, line_limit) for line in text.splitlines()[:lines]]
    if len(text.splitlines()) > lines:
        out.append(f"… ({len(text.splitlines()) - lines} more lines in the log)")
    return "\n".join(out)


def clip(text: object, limit: int = 120) -> str:
    """A value as it may appear in a message: never more than `limit` characters (a 50 MB id stays out)."""
    s = str(text)
    return s if len(s) <= limit else f"{s[: limit - 30]}… ({len(s):,} characters)"
