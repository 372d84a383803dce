"""One writer per index: an exclusive ``flock`` on ``write.lock`` in the index directory and,
when the store is PostgreSQL, a PostgreSQL advisory lock keyed by the database and schema.

The lock file holds the writer's PID so a second writer can say who holds it. The kernel drops a
``flock`` when its process dies, however it dies, so a lock left by a killed writer is simply
taken over by the next one; the PID in the file is only informative. Readers never lock.

The file lock covers one directory; two machines with separate index directories pointing at one
database are kept apart by the advisory lock (:class:`DatabaseLock`), held on a dedicated
connection whose ``application_name`` names the writer (host, PID, directory), so a refused
writer can say who holds it. PostgreSQL drops it when that connection ends, so a killed writer's
lock goes with its connection.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from pathlib import Path
from typing import Any

from segindex.errors import IndexLockedError

LOCK_FILE = "write.lock"


class WriterLock:
    """Re-entrant (per object) exclusive writer lock on an index directory (and, given a
    PostgreSQL ``engine``, on its database: :class:`DatabaseLock`)."""

    def __init__(self, directory: Path, engine: Any | None = None) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        self._depth = 0
        self._db: DatabaseLock | None = None
        if engine is not None and engine.dialect.name == "postgresql":
            self._db = DatabaseLock(engine, f"{socket.gethostname()}:{os.getpid()} {directory}")

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
        if self._db is not None:
            try:
                self._db.acquire()
            except BaseException:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise
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
        if self._db is not None:
            self._db.release()
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


class DatabaseLock:
    """A PostgreSQL session advisory lock keyed by the index's database and schema (the
    ``segindex_*`` tables), held on its own connection (no pool) while the writer runs.

    ``who`` (e.g. ``"host:pid /path/to/index"``) becomes the connection's ``application_name``,
    which a refused writer reads back from ``pg_stat_activity`` to name the holder."""

    def __init__(self, engine: Any, who: str) -> None:
        self.url = engine.url
        name = f"segindex {who}"  # PostgreSQL keeps 63 bytes of application_name
        self.who = name if len(name) <= 63 else f"{name[:28]}...{name[-32:]}"
        self._engine: Any | None = None
        self._conn: Any | None = None
        self.key: int | None = None

    def acquire(self) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(
            self.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": self.who},
        )
        conn = engine.connect()
        try:
            where = conn.execute(text("SELECT current_database(), current_schema()")).one()
            self.key = advisory_key(f"segindex-writer:{where[0]}:{where[1]}")
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            if not got:
                holder = _holder(conn, self.key)
                raise IndexLockedError(
                    f"the index database {where[0]!r} (schema {where[1]!r}) is being written by "
                    f"another segindex writer: {holder}; wait for it to finish (searches still "
                    "work), or stop it"
                )
        except BaseException:
            conn.close()
            engine.dispose()
            raise
        self._engine, self._conn = engine, conn

    def release(self) -> None:
        if self._conn is None or self._engine is None:  # both are set together, or neither
            return
        conn, engine, self._conn, self._engine = self._conn, self._engine, None, None
        try:
            from sqlalchemy import text

            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        finally:  # closing the connection releases it in any case
            conn.close()
            engine.dispose()

    @property
    def held(self) -> bool:
        return self._conn is not None


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _holder(conn: Any, key: int) -> str:
    """Who holds advisory lock ``key``: the writer's name, backend PID, client address."""
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT a.application_name, a.pid, a.client_addr::text AS addr, a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = :hi AND l.objid = :lo "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
    ).first()
    if row is None:
        return "unknown (it may just have finished)"
    name = row.application_name or "unnamed"
    since = row.backend_start.isoformat(timespec="seconds") if row.backend_start else "?"
    return (
        f"{name!r} (PostgreSQL backend PID {row.pid}, client {row.addr or 'local'}, since {since})"
    )
