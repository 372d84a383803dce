"""One writer per index: an exclusive ``flock`` on ``write.lock`` in the index directory.

The lock file holds the writer's PID so a second writer can say who holds it. The kernel drops a
``flock`` when its process dies, however it dies, so a lock left by a killed writer is simply
taken over by the next one; the PID in the file is only informative. Readers never lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from segindex.errors import IndexLockedError

LOCK_FILE = "write.lock"


class WriterLock:
    """Re-entrant (per object) exclusive writer lock on an index directory."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise IndexLockedError(
                f"index {str(self.path.parent)!r} is locked by PID {holder} (another segindex "
                "writer is ingesting or deleting); wait for it to finish, searches still work"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd, self._depth = fd, 1

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
