"""The per-stack lock: one playbook at a time per stack, refused (never queued) with who holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stamps.atomicfile import PRIVATE
from stamps.config.stackfile import bare_stack
from stamps.errors import SafetyRefusal


class StackLockedError(SafetyRefusal):
    """Another playbook holds the stack lock; the message says who, since when, and where the lock file is."""

    def __init__(self, stack: str, path: Path, holder: dict[str, Any] | None) -> None:
        self.stack = stack
        self.path = path
        self.holder = holder or {}
        if holder:
            who = (
                f"playbook '{holder.get('holder', '?')}' (pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
            )
        else:
            who = "another process (it has not recorded who it is yet)"
        super().__init__(
            f"stack '{stack}' is locked by {who}; wait for it to finish, then rerun. "
            f"Playbooks on one stack never interleave (lock file: {path})."
        )


@dataclass(frozen=True)
class LockInfo:
    """Who holds a stack lock; written into the lock file only so a refused playbook can say who."""

    holder: str
    pid: int
    host: str
    since: str
    path: Path


def lock_path(project_dir: str | Path, stack: str) -> Path:
    safe = re.sub(r"[^\w.-]", "_", bare_stack(stack))
    return Path(project_dir) / ".stamps" / "locks" / f"{safe}.lock"


@contextlib.contextmanager
def stack_lock(project_dir: str | Path, stack: str, holder: str = "playbook") -> Iterator[LockInfo]:
    """Hold the per-stack lock for the duration of a playbook, or fail at once with StackLockedError.

    `flock` on `.stamps/locks/<stack>.lock`: the kernel drops it when the holder dies, so a lock file left by
    a crashed playbook never blocks. It is per open file: a second attempt in the same process is refused too.
    """
    path = lock_path(project_dir, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 in one open (the record names who runs what), never through a planted symlink.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise StackLockedError(stack, path, _read_holder(fd)) from None
        os.fchmod(fd, PRIVATE)  # also tightens a lock file an older version created 0644
        info = LockInfo(holder, os.getpid(), socket.gethostname(),
                        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), path)
        payload = (json.dumps({"holder": info.holder, "pid": info.pid, "host": info.host, "since": info.since})
                   + "\n").encode()
        # One write, then cut what a longer stale record left behind: a reader sees a whole record, never a
        # half-written one.
        os.pwrite(fd, payload, 0)
        os.ftruncate(fd, len(payload))
        os.fsync(fd)
        try:
            yield info
        finally:
            # Clear the holder record before unlocking so nobody reads a stale "who".
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int, wait: float = 0.5) -> dict[str, Any] | None:
    """The holder's record; the lock is taken a moment before it is written, so an empty file is re-read
    for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            data = os.pread(fd, 4096, 0)
            info = json.loads(data.decode() or "null")
        except (OSError, ValueError):
            return None
        if info is not None or time.monotonic() >= deadline:
            return info if isinstance(info, dict) else None
        time.sleep(0.02)
