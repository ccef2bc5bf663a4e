"""Atomic file writes: readers see the old file or the new one, never half of either, even after a crash.

Temp file in the same directory, fsync, `os.replace`, then fsync of the directory so the rename itself
survives a power cut. Every file stamps and its playbooks write (plans, stack config, journals, reports,
the tenant directory stand-in) goes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

# The mode of every file that holds operator data (who ran what and when, tenants, lock holders, logs,
# journals, incident and scaling records, reports): the owner alone reads it. Plans and the stack file
# keep the mode they have (0o644 when new): they are meant to be shared and reviewed.
PRIVATE = 0o600


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *, mode: int | None = None) -> None:
    """Replace `path` with `data`. `mode` defaults to the existing file's mode (0o644 for a new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o644
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, mode: int | None = None) -> None:
    """`data` as indented JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", mode=mode)
