"""SQL metadata store: images, regions and the index settings; the region vectors live in the
vector segment files beside it (:mod:`segindex.store.vector_store`), one copy each.

SQLite file by default; any SQLAlchemy URL (e.g. ``postgresql+psycopg2://...``) works the same.
Writes happen in bulk, one transaction per batch of images (:meth:`Store.transaction`: vectors
appended and fsynced, then rows inserted by one executemany, then the commit).
The reads that queries use live in :mod:`segindex.store.query_reads` (a mixin of
:class:`Store`); videos are written by :mod:`segindex.store.video`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)

from segindex.regions import Regions
from segindex.store.claim import already_written, find_image, insert_image
from segindex.store.migrate import upgrade
from segindex.store.query_reads import GENERATION_KEY, QueryReads, RegionWhere
from segindex.store.region_writer import RegionWriter, draw_ids
from segindex.store.schema import crops, images, index_meta, regions, tracks, video_progress
from segindex.store.vector_files import DEFAULT_DTYPE
from segindex.store.vector_store import VectorStore

#: the setting holding how new vectors are stored (``float16``, ``float32``, ``int8``)
VECTOR_DTYPE_KEY = "vector_dtype"
#: the folder of vector segment files inside an index directory
VECTORS_DIR = "vectors"


@dataclass
class ImageWrite:
    """Everything to store for one image: its regions and their vectors, or why it failed.

    ``regions`` and ``kinds`` ((N,) str: "segment" | "image") are parallel to ``vectors``
    ((N, D) float32, L2-normalised).
    """

    path: str
    sha256: str | None
    width: int | None = None
    height: int | None = None
    regions: Regions | None = None
    kinds: Sequence[str] = ()
    vectors: np.ndarray | None = None
    crop: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    media: str = "image"  # "image" | "video" (a failed video is recorded through here too)
    #: region rows made beforehand by :meth:`packed` (without ``image_id`` and ``vector``), in
    #: place of ``regions``: how a Ray worker ships an image (RLE, not ``NxHxW`` masks)
    rows: list[dict[str, Any]] | None = None

    @property
    def count(self) -> int:
        """The number of regions (rows) this write stores."""
        if self.rows is not None:
            return len(self.rows)
        return 0 if self.regions is None else len(self.regions)

    def packed(self) -> ImageWrite:
        """The same write with its regions as rows (RLE masks): compact to send between
        processes, written exactly as this one would be."""
        if self.regions is None or self.vectors is None:
            return self
        made = region_insert_rows(0, self)
        rows = [{k: v for k, v in r.items() if k != "image_id"} for r in made]
        return replace(self, regions=None, rows=rows)


@dataclass
class WriteResult:
    """What a committed batch changed, for mirroring into the vector index."""

    added_ids: np.ndarray  # (M,) int64 new region ids
    added_vectors: np.ndarray  # (M, D) float32
    removed_ids: np.ndarray  # (R,) int64 region ids deleted (replaced or failed images)

    @classmethod
    def of(cls, ids: list[int], vectors: list[np.ndarray], removed: list[int]) -> WriteResult:
        """From the new region ids, their ``(n_i, D)`` float32 vector blocks in the same order,
        and the removed region ids."""
        dim = vectors[0].shape[1] if vectors else 0
        return cls(
            added_ids=np.asarray(ids, dtype=np.int64),
            added_vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
            removed_ids=np.asarray(removed, dtype=np.int64),
        )


@dataclass(frozen=True)
class ImageState:
    id: int
    sha256: str | None
    status: str


def db_path(path: str) -> str:
    """The path as stored: file names that are not valid UTF-8 keep their bytes as ``\\xNN``.

    SQL text columns cannot hold the lone surrogates Python uses for such names, and one odd name
    must not stop an ingest. The mapping is deterministic, so re-ingesting recognises the file.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def bump_generation(conn: Any) -> None:
    """Increment the write generation inside the caller's transaction."""
    current = conn.execute(
        select(index_meta.c.value).where(index_meta.c.key == GENERATION_KEY)
    ).scalar_one_or_none()
    if current is None:
        conn.execute(insert(index_meta).values(key=GENERATION_KEY, value="1"))
    else:
        conn.execute(
            update(index_meta)
            .where(index_meta.c.key == GENERATION_KEY)
            .values(value=str(int(current) + 1))
        )


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def clear_images(conn: Any, image_ids: Sequence[int]) -> list[int]:
    """Inside the caller's transaction: delete these images' regions (and videos' tracks and
    resume points), before they are replaced or deleted; returns the removed region ids."""
    ids = list(image_ids)
    removed = list(conn.execute(select(regions.c.id).where(regions.c.image_id.in_(ids))).scalars())
    conn.execute(delete(regions).where(regions.c.image_id.in_(ids)))
    conn.execute(delete(tracks).where(tracks.c.image_id.in_(ids)))
    conn.execute(delete(video_progress).where(video_progress.c.image_id.in_(ids)))
    return removed


def make_engine(url: str) -> Engine:
    """Engine with the pragmas SQLite needs for safe concurrent use (WAL, FKs, busy wait)."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


class Store(QueryReads):
    """The metadata store of one index and its vector segment files.

    vectors_dir: the folder of the vector segment files (an index directory's ``vectors/``;
                 default for a bare SQLite file ``F``: ``F.vectors`` beside it; other databases:
                 required to write or read vectors)
    """

    def __init__(self, url: str, vectors_dir: Path | None = None) -> None:
        self.url = url
        self.engine = make_engine(url)
        if vectors_dir is None and self.engine.dialect.name == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                db_file = Path(database).resolve()
                vectors_dir = db_file.with_name(db_file.name + ".vectors")
        self.vectors = VectorStore(vectors_dir, self.engine)
        upgrade(self.engine, self.vectors)  # creates the tables; moves older layouts forward
        # condition -> (generation, read-only sorted ids): a search reuses the allowed set (and
        # FAISS the selector built on it) until a write bumps the generation
        self._allowed: dict[RegionWhere, tuple[int, np.ndarray]] = {}
        self._crops: dict[str, int] = {}  # crop policy JSON -> segindex_crops.id (committed)
        self._dim: int | None = None

    def close(self) -> None:
        self.engine.dispose()

    @property
    def dim(self) -> int:
        """The vector dimension (``vector_dim`` setting; 0 when not set yet)."""
        if not self._dim:
            self._dim = int(self.get_meta("vector_dim") or 0)
        return self._dim

    @contextmanager
    def transaction(self) -> Iterator[RegionWriter]:
        """ONE write transaction: the yielded writer inserts region rows (its ``conn`` runs any
        other statement); on leaving, the appended vectors are fsynced, their segment's committed
        row count is updated, and everything commits together (or nothing, on error)."""
        self.vectors.dtype = self.get_meta(VECTOR_DTYPE_KEY) or DEFAULT_DTYPE
        writer: RegionWriter | None = None
        try:
            with self.engine.begin() as conn:
                writer = RegionWriter(conn, self.vectors, self._crops)
                yield writer
                writer.finish()
            writer.committed()
        finally:
            if writer is not None:  # the segment is released only once its rows are committed
                writer.close()

    # -- settings ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(index_meta.c.value).where(index_meta.c.key == key)
            ).scalar_one_or_none()
        return None if value is None else json.loads(value)

    def set_meta(self, key: str, value: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(index_meta).where(index_meta.c.key == key))
            conn.execute(insert(index_meta).values(key=key, value=json.dumps(value)))

    # -- writes -----------------------------------------------------------------------------

    def write(self, batch: Sequence[ImageWrite], *, skip_done: bool = False) -> WriteResult:
        """Store a batch of images in ONE transaction; replaced images lose their old regions.

        ``skip_done``: an image already indexed with the same sha256 is left as it is (a repeated
        write changes nothing, :mod:`segindex.store.claim`): how engines that may run an image
        twice (Ray) write."""
        now = utc_now()
        removed: list[int] = []
        region_rows: list[dict[str, Any]] = []
        vectors: list[np.ndarray] = []
        with self.transaction() as tx:
            conn = tx.conn
            paths = [db_path(item.path) for item in batch]
            # the single writer looks its images up in one query and inserts the new ones in one
            # executemany; the claiming writer (Ray) decides image by image, rows locked
            bulk = not skip_done and len(set(paths)) == len(paths)
            known = _images_by_path(conn, paths) if bulk else {}
            fresh: list[dict[str, Any]] = []
            owners: list[tuple[ImageWrite, int | dict[str, Any]]] = []
            for item, path in zip(batch, paths, strict=True):
                n = item.count
                values = {
                    "sha256": item.sha256,
                    "width": item.width,
                    "height": item.height,
                    "status": "failed" if item.error is not None else "indexed",
                    "error": item.error,
                    "n_regions": n,
                    "updated_at": now,
                    "media": item.media,
                }
                if n and (item.vectors is None or len(item.vectors) != n or len(item.kinds) != n):
                    raise ValueError(
                        f"{item.path}: {n} regions need {n} vectors and kinds, got "
                        f"{0 if item.vectors is None else len(item.vectors)} and {len(item.kinds)}"
                    )
                row = known.get(path) if bulk else find_image(conn, path, lock=True)
                image_id: int | None = None
                if row is None and bulk:
                    new = {"path": path, "created_at": now, **values}
                    fresh.append(new)
                    if n:
                        owners.append((item, new))
                    continue
                if row is None:
                    new = {"path": path, "created_at": now, **values}
                    image_id = insert_image(conn, new, if_absent=True)
                    if image_id is None:  # another writer inserted it meanwhile
                        row = find_image(conn, path, lock=True)
                if row is not None:
                    if skip_done and already_written(row, values):
                        continue
                    image_id = row.id
                    removed.extend(clear_images(conn, [image_id]))
                    conn.execute(update(images).where(images.c.id == image_id).values(**values))
                if n:
                    assert image_id is not None  # inserted here, or by another writer, found
                    owners.append((item, image_id))
            if fresh:
                drawn = draw_ids(conn, images, len(fresh)).tolist()
                for new, image_id in zip(fresh, drawn, strict=True):
                    new["id"] = image_id
                conn.execute(insert(images), fresh)
            for item, owner in owners:
                image_id = owner if isinstance(owner, int) else int(owner["id"])
                region_rows.extend(region_insert_rows(image_id, item))
                vectors.append(np.asarray(item.vectors, dtype=np.float32))
            flat = np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)
            ids = tx.insert(region_rows, flat)
            bump_generation(conn)
        return WriteResult.of(ids, [tx.as_stored(flat)] if ids else [], removed)

    def delete_images(self, image_ids: Sequence[int]) -> np.ndarray:
        """Delete images and their regions; returns the removed region ids."""
        with self.engine.begin() as conn:
            out = np.asarray(clear_images(conn, image_ids), dtype=np.int64)
            conn.execute(delete(images).where(images.c.id.in_(list(image_ids))))
            bump_generation(conn)
        return out

    def relink(self, image_id: int, new_path: str) -> None:
        """Point an image (and so its regions and vectors) at the path its file moved to."""
        with self.engine.begin() as conn:
            conn.execute(
                update(images)
                .where(images.c.id == image_id)
                .values(path=db_path(new_path), updated_at=utc_now())
            )
            bump_generation(conn)

    # -- reads ------------------------------------------------------------------------------

    def image_states(self) -> dict[str, ImageState]:
        """``path -> (id, sha256, status)`` for every known image (one query)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(images.c.path, images.c.id, images.c.sha256, images.c.status)
            )
            return {r.path: ImageState(r.id, r.sha256, r.status) for r in rows}

    def region_rows(self, ids: Sequence[int]) -> dict[int, Any]:
        """Region rows joined with their image (and crop policy JSON as ``crop``), keyed by
        region id, in ONE query."""
        if len(ids) == 0:
            return {}
        stmt = (
            select(
                *regions.c,
                crops.c.policy.label("crop"),
                images.c.path,
                images.c.width,
                images.c.height,
            )
            .join(images, images.c.id == regions.c.image_id)
            .outerjoin(crops, crops.c.id == regions.c.crop_id)
            .where(regions.c.id.in_([int(i) for i in ids]))
        )
        with self.engine.connect() as conn:
            return {r.id: r for r in conn.execute(stmt)}

    def region_ids(self, kind: str | None = None) -> np.ndarray:
        """Sorted ``(N,)`` int64 ids of all regions (optionally of one kind).

        Sorted here, not by SQL: without ORDER BY, SQLite reads the ids from a small covering
        index instead of walking the table's rows."""
        stmt = select(regions.c.id)
        if kind is not None:
            stmt = stmt.where(regions.c.kind == kind)
        found: Sequence[int]
        with self.engine.connect() as conn:
            if kind is None:  # the open path: the DBAPI cursor directly, no Row objects
                dbapi = conn.connection.dbapi_connection
                cur = dbapi.cursor()  # type: ignore[union-attr]  # None only once detached
                try:
                    cur.execute(f"SELECT id FROM {regions.name}")
                    found = [r[0] for r in cur.fetchall()]
                finally:
                    cur.close()
            else:
                found = conn.execute(stmt).scalars().all()
        ids = np.fromiter(found, dtype=np.int64, count=len(found))
        ids.sort()
        return ids

    def optimize(self) -> None:
        """Refresh the query planner's statistics (SQLite ``ANALYZE``), so filters use the most
        selective index (e.g. ``label`` rather than ``kind``). Run by ``reindex``."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")

    def iter_vectors(self, chunk: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids (n,) int64 ascending, vectors (n, D) float32)`` chunks of every region's
        vector (deleted regions' tombstones skipped), segment by segment."""
        yield from self.vectors.chunks(self.region_ids(), chunk)

    def region_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(regions)).scalar_one())

    def vectors_by_id(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found ids (m,) int64 ascending, vectors (m, D) float32)`` for the ids stored; the
        ids come from SQL rows (a deleted region's vector may still be found until compacted)."""
        return self.vectors.get(np.asarray(ids, dtype=np.int64), self.dim)

    def sample_vectors(self, k: int, seed: int = 0) -> np.ndarray:
        """``(min(k, N), D)`` float32 vectors of regions drawn uniformly at random."""
        ids = self.region_ids()
        pick = np.random.default_rng(seed).choice(len(ids), size=min(k, len(ids)), replace=False)
        return self.vectors_by_id(ids[pick])[1]

    def iter_regions(self) -> Iterator[Any]:
        """All region rows (without vectors) joined with their image, ordered by id."""
        cols = [c for c in regions.c if c.name != "vector"]
        stmt = (
            select(*cols, images.c.path, images.c.width, images.c.height)
            .join(images, images.c.id == regions.c.image_id)
            .order_by(regions.c.id)
        )
        with self.engine.connect() as conn:
            yield from conn.execute(stmt)

    def indexed_images(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(images).where(images.c.status == "indexed").order_by(images.c.id)
                )
            )

    def failed_images(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(images.c.path, images.c.error)
                .where(images.c.status == "failed")
                .order_by(images.c.path)
            )
            return [(r.path, r.error or "") for r in rows]


def _images_by_path(conn: Any, paths: Sequence[str]) -> dict[str, Any]:
    """``path -> (id, sha256, status, path)`` row of the images stored at these paths."""
    out: dict[str, Any] = {}
    for start in range(0, len(paths), 10_000):
        chunk = list(paths[start : start + 10_000])
        stmt = select(images.c.id, images.c.sha256, images.c.status, images.c.path)
        for r in conn.execute(stmt.where(images.c.path.in_(chunk))):
            out[r.path] = r
    return out


def region_insert_rows(image_id: int, item: ImageWrite) -> list[dict[str, Any]]:
    """The region rows (column dicts; the crop policy as JSON in ``crop``) of ``item`` for the
    image ``image_id``; the vectors go to the vector files, in the same order."""
    if item.rows is not None:  # packed: made by the same code below, in another process
        return [{**row, "image_id": image_id} for row in item.rows]
    r = item.regions
    assert r is not None and item.vectors is not None  # checked by the caller
    rles = r.rles()
    areas = r.areas
    crop = json.dumps(item.crop, sort_keys=True)
    return [
        {
            "image_id": image_id,
            "kind": str(item.kinds[i]),
            "label_id": int(r.label_ids[i]),
            "label": str(r.labels[i]),
            "score": float(r.scores[i]),
            "is_thing": bool(r.is_thing[i]),
            "x0": float(r.boxes[i, 0]),
            "y0": float(r.boxes[i, 1]),
            "x1": float(r.boxes[i, 2]),
            "y1": float(r.boxes[i, 3]),
            "area": int(areas[i]),
            "rle": rles[i]["counts"],
            "crop": crop,
        }
        for i in range(len(r))
    ]
