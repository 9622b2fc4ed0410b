"""What makes the daemon refuse to start, and the lock that keeps a queue to one collector."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "collector.lock"


class StartupError(Exception):
    """The daemon cannot start; the message names the cause and the key to change."""


class DirectoryLock:
    """An exclusive `flock` on `<directory>/collector.lock`, which holds the owner's pid.

    The kernel releases it when the process exits, however it exits (kill -9 too), so a
    stale file never blocks a restart.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.path = directory / LOCK_NAME
        self._key = key
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StartupError naming the directory and the holder's pid."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(
                f"cannot open {self.path} ({self._key}): {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupError(
                f"{self.path.parent} ({self._key}) is in use by another collector "
                f"(pid {holder}); stop it or give this one its own {self._key}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Unlock (closing the file unlocks it); safe twice."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
