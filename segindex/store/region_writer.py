"""One write transaction of region rows: ids drawn up front, vectors appended and made durable
before the SQL commit that references them (the commit point), rows inserted in bulk.

:meth:`RegionWriter.insert` takes region rows (column dicts, no id, the crop policy as JSON in
``crop``) and their vectors; it draws ids (:func:`draw_ids`), appends the vectors to the open
vector segment, and inserts the rows with those ids in one ``executemany``. :meth:`finish` (run
by :meth:`Store.transaction <segindex.store.sql.Store.transaction>` just before the commit)
fsyncs the vectors and records the segment's new committed row count in the same transaction.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sqlalchemy import Table, func, insert, select, text

from segindex import failpoints
from segindex.store.schema import crops, regions
from segindex.store.vector_files import SegmentAppender, as_stored
from segindex.store.vector_store import VectorStore

__all__ = ["RegionWriter", "draw_ids"]


def draw_ids(conn: Any, table: Table, n: int) -> np.ndarray:
    """``n`` ascending ids of ``table`` never used before, inside ``conn``'s transaction: SQLite's
    AUTOINCREMENT counter (explicit ids move it), a PostgreSQL sequence in one round trip, else
    past the largest id. The caller holds the writer lock (SQLite, other databases)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        seq = conn.execute(
            text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}
        ).scalar_one()
        got = conn.execute(
            text("SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)"),
            {"s": seq, "n": n},
        ).scalars()
        return np.sort(np.fromiter(got, dtype=np.int64, count=n))
    last = 0
    if dialect == "sqlite":
        seq = conn.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (table.name,)
        ).scalar_one_or_none()
        last = int(seq or 0)
    top = conn.execute(select(func.max(table.c.id))).scalar_one_or_none()
    last = max(last, int(top or 0))
    return np.arange(last + 1, last + 1 + n, dtype=np.int64)


#: every column of a region row, in the order the bulk insert binds them
_COLUMNS: tuple[str, ...] = tuple(c.name for c in regions.c)


class RegionWriter:
    """Region inserts of one transaction ``conn`` (see the module doc).

    known_crops: the store's committed crop policy ids (JSON -> id); new ones are added to it by
                 :meth:`committed`
    """

    def __init__(self, conn: Any, vectors: VectorStore, known_crops: dict[str, int]) -> None:
        self.conn = conn
        self.vectors = vectors
        self._known = known_crops
        self._new_crops: dict[str, int] = {}
        self._appender: SegmentAppender | None = None
        self._next: int | None = None  # SQLite/other: the next id to hand out

    def insert(self, rows: list[dict[str, Any]], vectors: np.ndarray) -> list[int]:
        """Insert ``rows`` (their ``crop`` JSON is replaced by ``crop_id`` in place) with the
        ``(n, D)`` float32 ``vectors``; returns the new ids in the order of ``rows``. Ids are
        drawn, unless every row brings its own (a bulk load that links rows by id: they must
        be new and above every id stored)."""
        n = len(rows)
        if n == 0:
            return []
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != n:
            raise ValueError(f"{n} region rows need {n} vectors, got shape {vectors.shape}")
        if self._appender is None:  # first the segment (locked), then ids above its last one
            self._appender = self.vectors.appender(self.conn, int(vectors.shape[1]))
        given = [row.get("id") for row in rows]
        if all(i is not None for i in given):
            ids = np.asarray(given, dtype=np.int64)
            order = np.argsort(ids, kind="stable")
            self._appender.append(ids[order], vectors[order])
            if self._next is not None:
                self._next = max(self._next, int(ids.max()) + 1)
        else:
            ids = self._draw(n)
            self._appender.append(ids, vectors)
        id_list = ids.tolist()
        for row, rid in zip(rows, id_list, strict=True):
            row["id"] = rid
            if "crop" in row:
                row["crop_id"] = self._crop_id(row.pop("crop"))
        names = _COLUMNS
        values = [tuple(map(row.get, names)) for row in rows]
        mark = "?" if self.conn.dialect.paramstyle == "qmark" else "%s"
        self.conn.exec_driver_sql(  # the DBAPI's executemany: no per-row statement building
            f"INSERT INTO {regions.name} ({', '.join(names)}) "
            f"VALUES ({', '.join([mark] * len(names))})",
            values,
        )
        return [int(i) for i in id_list]

    def as_stored(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as they read back from the segment files (what the FAISS mirror must
        hold, so a rebuild from the files changes no score)."""
        return as_stored(np.asarray(vectors, dtype=np.float32), self.vectors.dtype)

    def finish(self) -> None:
        """Before the commit: the vectors are made durable, then their rows counted as
        committed in this transaction."""
        if self._appender is None:
            return
        self._appender.flush()
        failpoints.point("vectors-flushed")
        self.vectors.commit(self.conn, self._appender)

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None

    def committed(self) -> None:
        """After the commit: the crop policies added are known for good."""
        self._known.update(self._new_crops)

    def _draw(self, n: int) -> np.ndarray:
        if self.conn.dialect.name == "postgresql":
            return draw_ids(self.conn, regions, n)
        if self._next is None:
            self._next = int(draw_ids(self.conn, regions, 1)[0])
        out = np.arange(self._next, self._next + n, dtype=np.int64)
        self._next += n
        return out

    def _crop_id(self, policy: str | dict[str, Any] | None) -> int | None:
        if policy is None:
            return None
        key = policy if isinstance(policy, str) else json.dumps(policy, sort_keys=True)
        found = self._known.get(key) or self._new_crops.get(key)
        if found is not None:
            return found
        got = self.conn.execute(
            select(crops.c.id).where(crops.c.policy == key)
        ).scalar_one_or_none()
        if got is None:
            got = self.conn.execute(
                insert(crops).values(policy=key).returning(crops.c.id)
            ).scalar_one()
        self._new_crops[key] = int(got)
        return int(got)
