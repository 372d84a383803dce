"""Region vectors in segment files (:mod:`segindex.store.vector_files`), registered in SQL.

:class:`VectorStore` reads them by id for every process (re-rank, exact filtered search, track
vectors, reindex, export, check), and gives a write transaction the segment to append to
(:meth:`VectorStore.appender`) and the statement that commits the appended rows
(:meth:`VectorStore.commit`). Compaction (:meth:`VectorStore.compact`) rewrites segments whose
vectors are mostly tombstones, and :meth:`VectorStore.stale` lists what a crash or a deletion
left behind; none of it is damage: the SQL rows never reference a vector that is not committed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, delete, insert, select, update

from segindex.errors import IndexNotFoundError
from segindex.store.schema import vector_files
from segindex.store.vector_files import (
    Segment,
    SegmentAppender,
    SegmentBusy,
    SegmentReader,
    fsync_dir,
    gather,
    segment_files,
)

#: a segment takes new rows until it holds this many (1M x 512 float16 = 1 GB)
SEGMENT_ROWS = 1 << 20
#: a segment whose dead (deleted) rows are at least this share of it is rewritten by compact()
COMPACT_DEAD_FRACTION = 0.25

__all__ = ["COMPACT_DEAD_FRACTION", "SEGMENT_ROWS", "Stale", "VectorStore"]


@dataclass
class Stale:
    """What is stored but no longer referenced (never damage: repair or compaction removes it).

    tail_rows:      rows past a segment's committed count (a crash between the vector flush and
                    the SQL commit)
    orphan_files:   segment files not registered in SQL (a crash before the registering commit,
                    or after a compaction's commit, before the old files were removed)
    dead_rows:      committed rows whose region was deleted (tombstones)
    """

    tail_rows: int = 0
    orphan_files: list[str] = field(default_factory=list)
    dead_rows: int = 0

    @property
    def any(self) -> bool:
        return bool(self.tail_rows or self.orphan_files or self.dead_rows)


class VectorStore:
    """The segment files in ``directory`` registered in ``engine``'s ``segindex_vector_files``.

    dtype: how new segments store vectors (``float16``, ``float32`` or ``int8``)
    """

    def __init__(self, directory: Path | None, engine: Engine, dtype: str = "float16") -> None:
        self.directory = directory
        self.engine = engine
        self.dtype = dtype
        self._readers: dict[str, SegmentReader] = {}
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        if self.directory is None:
            raise IndexNotFoundError(
                "this store has no vector directory (open it through its index directory)"
            )
        return self.directory

    # -- reading ---------------------------------------------------------------------------

    def segments(self, conn: Any | None = None) -> list[Segment]:
        """The registered segments, oldest first."""
        stmt = select(vector_files).order_by(vector_files.c.id)
        if conn is not None:
            rows = conn.execute(stmt).all()
        else:
            with self.engine.connect() as c:
                rows = c.execute(stmt).all()
        return [Segment(r.id, r.name, r.dtype, r.dim, r.rows) for r in rows]

    def readers(self, conn: Any | None = None) -> list[SegmentReader]:
        """A reader per registered segment, reused while its committed rows did not change."""
        segments = self.segments(conn)
        if not segments:
            return []
        with self._lock:
            out = []
            for seg in segments:
                reader = self._readers.get(seg.name)
                if reader is None or reader.segment != seg:
                    reader = SegmentReader(self.path, seg)
                    self._readers[seg.name] = reader
                out.append(reader)
            live = {s.name for s in segments}
            for name in [n for n in self._readers if n not in live]:
                del self._readers[name]
            return out

    def get(
        self, ids: np.ndarray | list[int], dim: int, conn: Any | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(found ids ascending, (m, D) float32)`` for the ids stored (dead ones included:
        callers ask for ids they read from SQL)."""
        for attempt in (0, 1):
            try:
                return gather(self.readers(conn), np.asarray(ids, dtype=np.int64), dim)
            except FileNotFoundError:  # a compaction removed a segment we had just listed
                if attempt:
                    raise
                with self._lock:
                    self._readers.clear()
        raise AssertionError("unreachable")

    def chunks(
        self, live: np.ndarray | None, size: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids ascending, (n, D) float32)`` of the stored vectors whose id is in ``live``
        (sorted; ``None``: all), segment by segment."""
        for reader in self.readers():
            for ids, vecs in reader.chunks(size):
                if live is not None:
                    keep = _member(ids, live)
                    ids, vecs = ids[keep], vecs[keep]
                if len(ids):
                    order = np.argsort(ids, kind="stable")
                    yield ids[order], vecs[order]

    # -- writing (inside the caller's transaction) -------------------------------------------

    def appender(self, conn: Any, dim: int) -> SegmentAppender:
        """The segment new vectors go to: the newest one of this dtype while it has room, else
        a new one registered in ``conn``'s transaction."""
        segments = self.segments(conn)
        last = segments[-1] if segments else None
        if (
            last is not None
            and last.dtype == self.dtype
            and last.dim == dim
            and last.rows < SEGMENT_ROWS
        ):
            try:
                return SegmentAppender(self.path, last)
            except SegmentBusy:  # another process appends to it: this writer takes its own
                pass
        return SegmentAppender(self.path, self.register(conn, dim))

    def register(self, conn: Any, dim: int, dtype: str | None = None) -> Segment:
        """A new empty segment (files created), registered in ``conn``'s transaction."""
        self.path.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex[:16]
        seg_id = conn.execute(
            insert(vector_files)
            .values(name=name, dtype=dtype or self.dtype, dim=dim, rows=0)
            .returning(vector_files.c.id)
        ).scalar_one()
        seg = Segment(int(seg_id), name, dtype or self.dtype, dim, 0)
        for p in seg.paths(self.path):
            p.touch()
        fsync_dir(self.path)
        return seg

    @staticmethod
    def commit(conn: Any, appender: SegmentAppender) -> None:
        """Record the appended rows as committed, in ``conn``'s transaction (after
        :meth:`SegmentAppender.flush`)."""
        conn.execute(
            update(vector_files)
            .where(vector_files.c.id == appender.segment.id)
            .values(rows=appender.rows)
        )

    # -- upkeep ----------------------------------------------------------------------------

    def stale(self, live: np.ndarray) -> Stale:
        """What is stored but not referenced by the sorted SQL region ids ``live``."""
        out = Stale()
        registered = {s.name: s for s in self.segments()}
        on_disk = segment_files(self.directory) if self.directory is not None else {}
        for name, files in on_disk.items():
            seg = registered.get(name)
            if seg is None:
                out.orphan_files.extend(p.name for p in files)
                continue
            ids_path, _ = seg.paths(self.path)
            out.tail_rows += max(0, ids_path.stat().st_size // 8 - seg.rows)
        for reader in self.readers():
            out.dead_rows += int(len(reader.ids) - np.count_nonzero(_member(reader.ids, live)))
        return out

    def clean(self, live: np.ndarray, *, compact_all: bool = False) -> Stale:
        """Remove what :meth:`stale` finds: orphan files are deleted, stale tails truncated, and
        segments with many dead rows (all with ``compact_all``) rewritten without them. Run by
        the writer (inside the writer lock). Returns what was found before."""
        found = self.stale(live)
        for name in found.orphan_files:
            (self.path / name).unlink(missing_ok=True)
        for seg in self.segments():  # opening an appender truncates the stale tail
            try:
                SegmentAppender(self.path, seg).close()
            except SegmentBusy:  # being appended to: its writer truncates it
                continue
        self.compact(live, min_dead_fraction=0.0 if compact_all else COMPACT_DEAD_FRACTION)
        if self.directory is not None and self.directory.exists():
            fsync_dir(self.directory)
        return found

    def compact(self, live: np.ndarray, *, min_dead_fraction: float = COMPACT_DEAD_FRACTION) -> int:
        """Rewrite every segment whose dead rows are at least ``min_dead_fraction`` of it (and
        at least one), keeping its live rows in a new segment; the swap is one SQL commit, the
        old files are removed after it. Returns the number of dead rows dropped."""
        dropped = 0
        for reader in self.readers():
            seg = reader.segment
            keep = _member(reader.ids, live)
            dead = len(keep) - int(np.count_nonzero(keep))
            if dead == 0 or dead < min_dead_fraction * len(keep):
                continue
            try:
                SegmentAppender(self.path, seg).close()  # not being appended to (and no tail)
            except SegmentBusy:
                continue
            with self.engine.begin() as conn:
                new = self.register(conn, seg.dim, seg.dtype)
                out = SegmentAppender(self.path, new)
                try:
                    for ids, vecs in reader.chunks(50_000):
                        mask = _member(ids, live)
                        out.append(ids[mask], vecs[mask])
                    out.flush()
                    self.commit(conn, out)
                finally:
                    out.close()
                conn.execute(delete(vector_files).where(vector_files.c.id == seg.id))
            for p in seg.paths(self.path):
                p.unlink(missing_ok=True)
            dropped += dead
        with self._lock:
            self._readers.clear()
        return dropped


def _member(ids: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``ids`` are in the sorted array ``sorted_set``."""
    if len(sorted_set) == 0:
        return np.zeros(len(ids), dtype=bool)
    at = np.searchsorted(sorted_set, ids)
    return np.asarray(sorted_set[np.minimum(at, len(sorted_set) - 1)] == ids)
