"""A workspace lock: one holder at a time, released by the kernel when the holder dies (``flock``)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from netsentry.pipeline.core.errors import LockHeldError


@contextlib.contextmanager
def exclusive_lock(path: str | Path, what: str) -> Iterator[Path]:
    """Hold ``path`` exclusively for the block; :class:`LockHeldError` at once when another process holds it.

    The file records the holder (pid, start time) for the message a second caller gets. A holder killed at any
    point releases the lock with its file descriptor, so a crash never leaves a stale lock behind.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise LockHeldError(f"another {what} is running ({holder}); try again when it has finished",
                                path=str(p)) from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                             time.gmtime())}).encode(), 0)  # fmt: skip
        try:
            yield p
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} since {info['since']}"
    except (ValueError, KeyError, OSError):
        return "holder unknown"
