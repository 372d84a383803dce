"""The store's reads for queries: allowed ids under a condition, vectors and rows of given ids or
images, labels and counts. A mixin of :class:`segindex.store.sql.Store` (kept apart so neither
file grows past a few hundred lines); every method is ONE query (or one read transaction).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Engine, func, select

from segindex.store.schema import images, index_meta, regions, tracks

#: the ``segindex_meta`` key of the write generation
GENERATION_KEY = "generation"


@dataclass(frozen=True)
class RegionWhere:
    """A condition on region rows (made from a query's kind and filters by
    :mod:`segindex.search.conditions`): the WHERE ``clause`` over ``regions``, and the joins it
    reads: ``images`` (on ``image_id``), ``tracks`` (outer, on ``track_id``). ``key`` names the
    condition (equal keys, equal conditions): the allowed-ids cache is keyed by it."""

    key: Hashable
    clause: ColumnElement[bool] = field(compare=False)
    images: bool = False
    tracks: bool = False


class QueryReads:
    """Read-only query helpers over ``self.engine`` (see :class:`~segindex.store.sql.Store`)."""

    engine: Engine

    def vectors_by_id(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # the store reads its vector files

    #: condition -> (generation, read-only sorted ids), reset by the store's constructor
    _allowed: dict[RegionWhere, tuple[int, np.ndarray]]

    def generation(self) -> int:
        """A counter bumped by every committed write or delete (readers use it to resync)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                select(index_meta.c.value).where(index_meta.c.key == GENERATION_KEY)
            ).scalar_one_or_none()
        return 0 if value is None else int(value)

    def filtered_region_ids(self, where: RegionWhere | None) -> np.ndarray | None:
        """Sorted ``(N,)`` int64 ids of the regions passing ``where``, in ONE query (kept, as a
        shared read-only array, until the next write); ``None`` when ``where`` is ``None``
        (every region is allowed)."""
        if where is None:
            return None
        generation = self.generation()
        cached = self._allowed.get(where)
        if cached is not None and cached[0] == generation:
            return cached[1]
        stmt = select(regions.c.id).where(where.clause)  # sorted below (see region_ids)
        if where.images:
            stmt = stmt.join(images, images.c.id == regions.c.image_id)
        if where.tracks:
            stmt = stmt.outerjoin(tracks, tracks.c.id == regions.c.track_id)
        with self.engine.connect() as conn:
            found = conn.execute(stmt).scalars().all()
        ids = np.fromiter(found, dtype=np.int64, count=len(found))
        ids.sort()
        ids.flags.writeable = False
        if len(self._allowed) >= 32:
            self._allowed.pop(next(iter(self._allowed)))
        self._allowed[where] = (generation, ids)
        return ids

    def image_region_vectors(
        self, image_ids: Sequence[int], where: RegionWhere | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(region ids (n,) int64, image ids (n,) int64, vectors (n, D) float32)`` of the
        regions of these images passing ``where``, ordered by region id (ONE query, then the
        vector files)."""
        cond = regions.c.image_id.in_([int(i) for i in image_ids])
        stmt = (
            select(regions.c.id, regions.c.image_id)
            .join(images, images.c.id == regions.c.image_id)
            .where(cond if where is None else cond & where.clause)
            .order_by(regions.c.id)
        )
        if where is not None and where.tracks:
            stmt = stmt.outerjoin(tracks, tracks.c.id == regions.c.track_id)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return self.with_vectors(rows, "image_id")

    def with_vectors(
        self, rows: Sequence[Any], owner: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(region ids (n,) int64, owner ids (n,) int64, vectors (n, D) float32)`` of rows with
        ``id`` and the ``owner`` column (``image_id``, ``track_id``), sorted by id, vectors read
        from the vector files (a row whose vector is missing is left out); ``D`` is 0 when
        there are no rows."""
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.asarray([r.id for r in rows], dtype=np.int64)
        owners = np.asarray([getattr(r, owner) for r in rows], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids, owners = ids[order], owners[order]
        found, vecs = self.vectors_by_id(ids)
        keep = np.isin(ids, found)
        return ids[keep], owners[keep], vecs

    def region_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """``region id -> (D,) float32`` stored vector, for the ids whose vector is stored."""
        if len(ids) == 0:
            return {}
        found, vecs = self.vectors_by_id(np.asarray(list(ids), dtype=np.int64))
        return {int(i): vecs[j] for j, i in enumerate(found.tolist())}

    def image_row(self, image_id: int) -> Any | None:
        """The image's row, or ``None``."""
        with self.engine.connect() as conn:
            return conn.execute(select(images).where(images.c.id == int(image_id))).first()

    def image_id_for_path(self, path: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(images.c.id).where(images.c.path == path)
            ).scalar_one_or_none()

    def image_with_regions(self, image_id: int) -> tuple[Any | None, Sequence[Any]]:
        """The image's row and its region rows (without vectors, ordered by id), read in ONE
        transaction so they always belong together."""
        cols = [c for c in regions.c if c.name != "vector"]
        with self.engine.connect() as conn, conn.begin():
            image = conn.execute(select(images).where(images.c.id == int(image_id))).first()
            if image is None:
                return None, []
            rows = conn.execute(
                select(*cols, images.c.path, images.c.width, images.c.height)
                .join(images, images.c.id == regions.c.image_id)
                .where(regions.c.image_id == int(image_id))
                .order_by(regions.c.id)
            ).all()
        return image, rows

    def labels(self) -> list[tuple[str, int]]:
        """``(label, number of segment regions)`` pairs, most frequent first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(regions.c.label, func.count())
                .where(regions.c.kind == "segment")
                .group_by(regions.c.label)
                .order_by(func.count().desc(), regions.c.label)
            ).all()
        return [(r[0], int(r[1])) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            by_status: dict[str, int] = dict(
                conn.execute(select(images.c.status, func.count()).group_by(images.c.status)).all()
            )
            by_kind: dict[str, int] = dict(
                conn.execute(select(regions.c.kind, func.count()).group_by(regions.c.kind)).all()
            )
        return {
            "images_indexed": int(by_status.get("indexed", 0)),
            "images_failed": int(by_status.get("failed", 0)),
            "regions": int(by_kind.get("segment", 0)),
            "whole_image_regions": int(by_kind.get("image", 0)),
        }
