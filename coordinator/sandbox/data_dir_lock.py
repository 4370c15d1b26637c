"""An exclusive lock on a data directory, so two `meshplane up` never share one.

Two sandboxes on one directory would fight over the same ports, the kubesim state file and the
coordinator's store. ``flock`` on ``<dir>/up.lock`` is released by the kernel when the holder
dies, so a crashed `up` never leaves a stale lock; the file keeps the holder's pid for the
message a second `up` prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["DataDirLock", "DataDirLocked"]

LOCK_FILE = "up.lock"


class DataDirLocked(RuntimeError):
    """Another process holds the directory; the message names it and the holder's pid."""


class DataDirLock:
    """Hold ``<directory>/up.lock`` from ``acquire`` until ``release`` (or process exit)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise DataDirLocked naming the directory and the holder's pid."""
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"{self.directory} is in use by another `meshplane up` (pid {holder}); stop "
                "it, or pass another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays: removing it would race with the next holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
