"""Reading video tracks for queries: track rows, their frame rows and vectors, and the counts
``info`` shows.

Layout (see :mod:`segindex.store.schema`): a video is a ``segindex_images`` row with ``media =
"video"``; its sampled frames' regions are region rows with ``frame_index``, ``time_s`` and (for
tracked segments) ``track_id``; each track is one ``kind = "track"`` region row (its vector in
FAISS) plus one ``segindex_tracks`` row keyed by the stable track id. Every function is ONE
query (or one read transaction).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from segindex.store.schema import images, regions, tracks

if TYPE_CHECKING:
    from segindex.store.sql import Store

#: columns of a track row as the query side reads it (with its video's path and size)
_TRACK_COLS = (
    tracks.c.id,
    tracks.c.image_id,
    tracks.c.region_id,
    tracks.c.label,
    tracks.c.label_id,
    tracks.c.score,
    tracks.c.start_s,
    tracks.c.end_s,
    tracks.c.n_frames,
    images.c.path,
    images.c.width,
    images.c.height,
    images.c.fps,
    images.c.duration_s,
)


def track_rows(store: Store, track_ids: Sequence[int]) -> dict[int, Any]:
    """``track id -> row`` (tracks joined with their video: path, width, height, fps,
    duration_s) for the ids that exist, in ONE query."""
    if len(track_ids) == 0:
        return {}
    stmt = (
        select(*_TRACK_COLS)
        .join(images, images.c.id == tracks.c.image_id)
        .where(tracks.c.id.in_([int(t) for t in track_ids]))
    )
    with store.engine.connect() as conn:
        return {int(r.id): r for r in conn.execute(stmt)}


def track_region_ids(store: Store, track_ids: Sequence[int]) -> dict[int, int]:
    """``track id -> its current kind="track" region id`` (the row whose vector is in FAISS)."""
    return {t: int(r.region_id) for t, r in track_rows(store, track_ids).items() if r.region_id}


def tracks_of_regions(store: Store, region_ids: Sequence[int]) -> dict[int, int]:
    """``region id -> track id`` for the given regions that belong to a track."""
    if len(region_ids) == 0:
        return {}
    stmt = select(regions.c.id, regions.c.track_id).where(
        regions.c.id.in_([int(i) for i in region_ids]), regions.c.track_id.is_not(None)
    )
    with store.engine.connect() as conn:
        return {int(r.id): int(r.track_id) for r in conn.execute(stmt)}


def frame_region_ids(store: Store, track_ids: Sequence[int]) -> list[int]:
    """Region ids of every sampled frame region of these tracks."""
    if len(track_ids) == 0:
        return []
    stmt = select(regions.c.id).where(
        regions.c.track_id.in_([int(t) for t in track_ids]), regions.c.kind == "segment"
    )
    with store.engine.connect() as conn:
        return [int(i) for i in conn.execute(stmt).scalars()]


def frame_vectors(
    store: Store, track_ids: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(region ids (n,) int64, track ids (n,) int64, vectors (n, D) float32)`` of every
    sampled frame region of these tracks (``kind = "segment"``), ordered by region id."""
    if len(track_ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    stmt = (
        select(regions.c.id, regions.c.track_id)
        .where(regions.c.track_id.in_([int(t) for t in track_ids]), regions.c.kind == "segment")
        .order_by(regions.c.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return store.with_vectors(rows, "track_id")


def frame_rows(store: Store, track_id: int) -> list[Any]:
    """The track's frame region rows (without vectors; with the video's path, width and height)
    in time order (``frame_index``, then region id)."""
    cols = [c for c in regions.c if c.name != "vector"]
    stmt = (
        select(*cols, images.c.path, images.c.width, images.c.height)
        .join(images, images.c.id == regions.c.image_id)
        .where(regions.c.track_id == int(track_id), regions.c.kind == "segment")
        .order_by(regions.c.frame_index, regions.c.id)
    )
    with store.engine.connect() as conn:
        return list(conn.execute(stmt))


def video_tracks(store: Store, image_ids: Sequence[int] | None = None) -> list[Any]:
    """Track rows (as :func:`track_rows`) of these videos (all when ``None``) that have a
    region row, ordered by video then start time then track id."""
    stmt = (
        select(*_TRACK_COLS)
        .join(images, images.c.id == tracks.c.image_id)
        .where(tracks.c.region_id.is_not(None), images.c.status == "indexed")
        .order_by(tracks.c.image_id, tracks.c.start_s, tracks.c.id)
    )
    if image_ids is not None:
        stmt = stmt.where(tracks.c.image_id.in_([int(i) for i in image_ids]))
    with store.engine.connect() as conn:
        return list(conn.execute(stmt))


def video_counts(store: Store) -> dict[str, int]:
    """``videos`` (indexed), ``videos_partial`` (being ingested), ``tracks`` and
    ``frames`` (sampled frames with at least one region) of the index."""
    with store.engine.connect() as conn:
        by_status: dict[str, int] = dict(
            conn.execute(
                select(images.c.status, func.count())
                .where(images.c.media == "video")
                .group_by(images.c.status)
            ).all()
        )
        n_tracks = conn.execute(
            select(func.count()).select_from(tracks).where(tracks.c.region_id.is_not(None))
        ).scalar_one()
        n_frames = conn.execute(
            select(func.count()).select_from(
                select(regions.c.image_id, regions.c.frame_index)
                .where(regions.c.frame_index.is_not(None))
                .distinct()
                .subquery()
            )
        ).scalar_one()
    return {
        "videos": int(by_status.get("indexed", 0)),
        "videos_partial": int(by_status.get("partial", 0)),
        "tracks": int(n_tracks),
        "frames": int(n_frames),
    }


def sampled_frames(store: Store) -> dict[int, list[tuple[int, float]]]:
    """``video id -> [(frame index, time in seconds), ...]`` of every sampled frame that holds a
    region (whole-frame regions count), in time order, for the indexed videos."""
    stmt = (
        select(regions.c.image_id, regions.c.frame_index, regions.c.time_s)
        .join(images, images.c.id == regions.c.image_id)
        .where(regions.c.frame_index.is_not(None), images.c.status == "indexed")
        .distinct()
        .order_by(regions.c.image_id, regions.c.frame_index)
    )
    out: dict[int, list[tuple[int, float]]] = {}
    with store.engine.connect() as conn:
        for r in conn.execute(stmt):
            out.setdefault(int(r.image_id), []).append((int(r.frame_index), float(r.time_s)))
    return out


def track_masks(store: Store) -> Iterator[tuple[int, int, str]]:
    """``(track id, frame index, COCO RLE counts)`` of every tracked frame region of the indexed
    videos, ordered by track then frame (streamed: a large index is never held whole)."""
    stmt = (
        select(regions.c.track_id, regions.c.frame_index, regions.c.rle)
        .join(images, images.c.id == regions.c.image_id)
        .where(
            regions.c.track_id.is_not(None),
            regions.c.kind == "segment",
            images.c.status == "indexed",
        )
        .order_by(regions.c.track_id, regions.c.frame_index)
    )
    with store.engine.connect() as conn:
        for r in conn.execute(stmt):
            yield int(r.track_id), int(r.frame_index), str(r.rle)
