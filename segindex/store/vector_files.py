"""The one durable copy of every region vector: append-only segment files beside the index.

    vectors/
      000001.ids   int64 little-endian region ids, ascending within the file
      000001.vec   the rows, in the same order: float16 or float32 ``(D,)``, or int8 ``(D,)``
                   with a float32 per-row scale (``x ~ q * scale``)

Why plain arrays (and not Arrow/Parquet or Lance): a re-rank reads a few hundred vectors by
position, which a memory-mapped fixed-width array serves with one page read each and no
decoding; appending is a ``write`` at the end; and a worker can write a whole segment of its own
as one object, which is all that sharded writers and object storage need. Parquet pages are
compressed and read whole, and Lance would add a storage engine beside the SQL one.

**SQL is the commit point.** The ``segindex_vector_files`` table registers each segment and its
COMMITTED row count, updated in the same transaction as the region rows that the vectors belong
to. A writer appends and fsyncs the vectors first, then commits; so a crash leaves at most rows
past the committed count (a stale tail, truncated by the next writer) or a segment file that was
never registered (an orphan), never a region without its vector. A deleted region's vector stays
until its segment is compacted (a tombstone: an id with no SQL row).

This module knows files only; :mod:`segindex.store.vector_store` ties them to SQL.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DTYPES: tuple[str, ...] = ("float16", "float32", "int8")
DEFAULT_DTYPE = "float16"
IDS_SUFFIX = ".ids"
VEC_SUFFIX = ".vec"

__all__ = [
    "DEFAULT_DTYPE",
    "DTYPES",
    "Segment",
    "SegmentAppender",
    "SegmentReader",
    "as_stored",
    "decode",
    "encode",
    "row_dtype",
]


def row_dtype(dtype: str, dim: int) -> np.dtype:
    """The numpy dtype of one stored row."""
    if dtype == "float16":
        return np.dtype(("<f2", (dim,)))
    if dtype == "float32":
        return np.dtype(("<f4", (dim,)))
    if dtype == "int8":
        return np.dtype([("scale", "<f4"), ("q", "i1", (dim,))])
    raise ValueError(f"vector dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def encode(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """``(n, D)`` float32 -> the stored rows of ``dtype`` (float: ``(n, D)``; int8: ``(n,)``
    records)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if dtype in ("float16", "float32"):
        return np.ascontiguousarray(vectors, dtype="<f2" if dtype == "float16" else "<f4")
    out = np.empty(n, dtype=row_dtype(dtype, dim))
    if dtype == "int8":
        peak = np.abs(vectors).max(axis=1) if n else np.zeros(0, np.float32)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        out["scale"] = scale
        out["q"] = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
        return out
    raise ValueError(f"vector dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def decode(rows: np.ndarray, dtype: str) -> np.ndarray:
    """Stored rows -> ``(n, D)`` float32; float16 and int8 rows are L2-normalised again (their
    rounding moves the norm by ~1e-4), so a vector's similarity to itself stays 1."""
    if dtype == "float32":
        return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    if dtype == "int8":
        out = rows["q"].astype(np.float32) * rows["scale"][:, None]
    else:
        out = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=out, where=norms > 0)


def as_stored(vectors: np.ndarray, dtype: str) -> np.ndarray:
    """``(n, D)`` float32 vectors as they read back once stored as ``dtype``."""
    return decode(encode(vectors, dtype), dtype)


@dataclass(frozen=True)
class Segment:
    """One registered segment: its files ``<name>.ids`` / ``<name>.vec`` and committed rows."""

    id: int
    name: str
    dtype: str
    dim: int
    rows: int

    def paths(self, directory: Path) -> tuple[Path, Path]:
        return directory / f"{self.name}{IDS_SUFFIX}", directory / f"{self.name}{VEC_SUFFIX}"

    @property
    def row_bytes(self) -> int:
        return row_dtype(self.dtype, self.dim).itemsize


class SegmentReader:
    """Reads the committed rows of one segment: ids in memory (8 bytes a row), vectors
    memory-mapped (a read touches only the pages of the rows asked for)."""

    def __init__(self, directory: Path, segment: Segment) -> None:
        self.segment = segment
        ids_path, vec_path = segment.paths(directory)
        n = segment.rows
        self.ids = np.fromfile(ids_path, dtype="<i8", count=n) if n else np.zeros(0, np.int64)
        if len(self.ids) < n:
            raise OSError(
                f"vector segment {segment.name}: {ids_path.name} holds {len(self.ids)} ids, "
                f"{n} are committed"
            )
        self._map: mmap.mmap | None = None
        self.rows: np.ndarray = np.zeros(0, dtype=row_dtype(segment.dtype, segment.dim))
        if n:
            with open(vec_path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < n * segment.row_bytes:
                    raise OSError(
                        f"vector segment {segment.name}: {vec_path.name} holds "
                        f"{size // segment.row_bytes} rows, {n} are committed"
                    )
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            rdt = row_dtype(segment.dtype, segment.dim)
            self.rows = np.frombuffer(self._map, dtype=rdt, count=n)
        self.lo = int(self.ids[0]) if n else 0
        self.hi = int(self.ids[-1]) if n else -1

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found ids, their positions)`` for sorted ``ids`` held here."""
        if len(ids) == 0 or self.hi < self.lo:
            return ids[:0], ids[:0]
        inside = ids[(ids >= self.lo) & (ids <= self.hi)]
        at = np.searchsorted(self.ids, inside)
        hit = self.ids[np.minimum(at, len(self.ids) - 1)] == inside
        return inside[hit], at[hit]

    def read(self, positions: np.ndarray) -> np.ndarray:
        """``(m, D)`` float32 vectors of these positions. Pages not in memory are asked for all
        at once first (``MADV_WILLNEED``: the disk serves them in parallel), so a re-rank of a
        few hundred candidates after a cold start costs about one disk round trip, not one
        per candidate."""
        if self._map is not None and len(positions) > 4 and hasattr(mmap, "MADV_WILLNEED"):
            step = self.segment.row_bytes
            for start in np.unique((np.asarray(positions) * step) // mmap.PAGESIZE).tolist():
                length = min(mmap.PAGESIZE * (1 + step // mmap.PAGESIZE + 1), len(self._map))
                offset = start * mmap.PAGESIZE
                self._map.madvise(mmap.MADV_WILLNEED, offset, min(length, len(self._map) - offset))
        return decode(np.asarray(self.rows[positions]), self.segment.dtype)

    def chunks(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, (n, D) float32)`` of every committed row, in file order."""
        for start in range(0, len(self.ids), size):
            stop = min(start + size, len(self.ids))
            rows = np.asarray(self.rows[start:stop])
            yield self.ids[start:stop], decode(rows, self.segment.dtype)


class SegmentBusy(Exception):
    """Another process is appending to this segment (it holds the segment's file lock)."""


class SegmentAppender:
    """Appends to one segment inside a write: drops a stale tail (rows past the committed count,
    from a crash), appends, and :meth:`flush` makes the rows durable before the commit.

    One appender per segment at a time, across processes: it holds an exclusive ``flock`` on the
    ``.ids`` file until :meth:`close` (after the commit); a second one raises
    :class:`SegmentBusy` and its writer takes a segment of its own."""

    def __init__(self, directory: Path, segment: Segment) -> None:
        self.segment = segment
        self.rows = segment.rows
        self._last = -1
        ids_path, vec_path = segment.paths(directory)
        self._ids = open(ids_path, "a+b")  # noqa: SIM115  # closed by close()
        try:
            _lock(self._ids.fileno())
        except BlockingIOError:
            self._ids.close()
            raise SegmentBusy(segment.name) from None
        self._vec = open(vec_path, "a+b")  # noqa: SIM115
        self._ids.truncate(self.rows * 8)
        self._vec.truncate(self.rows * segment.row_bytes)
        if self.rows:
            self._ids.seek((self.rows - 1) * 8)
            self._last = int(np.frombuffer(self._ids.read(8), dtype="<i8")[0])

    def append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Append ``(n,)`` ascending ids (above every id held) and their ``(n, D)`` vectors."""
        ids = np.ascontiguousarray(ids, dtype="<i8")
        if len(ids) == 0:
            return
        if ids[0] <= self._last or (len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all())):
            raise ValueError(
                f"vector segment {self.segment.name}: ids must ascend past {self._last}"
            )
        if vectors.shape != (len(ids), self.segment.dim):
            raise ValueError(
                f"vectors must be ({len(ids)}, {self.segment.dim}), got {vectors.shape}"
            )
        self._vec.write(encode(vectors, self.segment.dtype).tobytes())
        self._ids.write(ids.tobytes())
        self.rows += len(ids)
        self._last = int(ids[-1])

    def flush(self) -> None:
        """Make what was appended durable (vectors before ids, both before the SQL commit)."""
        self._vec.flush()
        os.fsync(self._vec.fileno())
        self._ids.flush()
        os.fsync(self._ids.fileno())

    def close(self) -> None:
        self._ids.close()
        self._vec.close()


def _lock(fd: int) -> None:
    """An exclusive, non-blocking ``flock`` (released when the file closes); none on platforms
    without ``fcntl``, where one writer process is the rule anyway."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def fsync_dir(directory: Path) -> None:
    """Make file creations and removals in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_files(directory: Path) -> dict[str, list[Path]]:
    """Segment name -> its files found in ``directory`` (registered or not)."""
    out: dict[str, list[Path]] = {}
    if not directory.is_dir():
        return out
    for p in sorted(directory.iterdir()):
        if p.suffix in (IDS_SUFFIX, VEC_SUFFIX):
            out.setdefault(p.stem, []).append(p)
    return out


def gather(
    readers: Sequence[SegmentReader], ids: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(found ids ascending, (m, D) float32)`` for ``ids`` across segments (the first segment
    holding an id wins; a compaction's old and new segments hold the same vector)."""
    want = np.unique(np.asarray(ids, dtype=np.int64))
    got_ids: list[np.ndarray] = []
    got_vecs: list[np.ndarray] = []
    for reader in readers:
        if len(want) == 0:
            break
        found, pos = reader.lookup(want)
        if len(found):
            got_ids.append(found)
            got_vecs.append(reader.read(pos))
            want = np.setdiff1d(want, found, assume_unique=True)
    if not got_ids:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    out_ids = np.concatenate(got_ids)
    out_vecs = np.concatenate(got_vecs)
    order = np.argsort(out_ids, kind="stable")
    return out_ids[order], out_vecs[order]
