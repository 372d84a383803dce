"""Video rows: starting a video, committing it chunk by chunk with its tracks, resuming it.

See :mod:`segindex.store.schema` for the layout (a video is an image row with ``media =
"video"``; frame regions and track regions are region rows; ``segindex_tracks`` keeps the stable
track ids; ``segindex_video_progress`` the resume point). Every write here is ONE transaction
and returns the :class:`~segindex.store.sql.WriteResult` the FAISS mirror applies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update

from segindex.regions import Regions
from segindex.store.claim import find_image, insert_image
from segindex.store.schema import images, regions, tracks, video_progress
from segindex.store.sql import (
    ImageWrite,
    Store,
    WriteResult,
    bump_generation,
    clear_images,
    db_path,
    region_insert_rows,
    utc_now,
)
from segindex.store.track_totals import TrackTotals


@dataclass
class FrameWrite:
    """One sampled frame's region rows, encoded (COCO RLE, vector bytes) so a chunk of frames
    holds no masks: build with :meth:`encode`.

    ``rows``: column values of its ``N`` region rows (without ``track_id``); ``vectors``:
    ``(N, D)`` float32 L2-normalised; ``local_ids``: ``(N,)`` int64 tracker-local track ids,
    -1 for regions not tracked (the whole frame)."""

    frame_index: int
    time_s: float
    rows: list[dict[str, Any]]
    vectors: np.ndarray
    local_ids: np.ndarray

    @classmethod
    def encode(
        cls,
        image_id: int,
        frame_index: int,
        time_s: float,
        regions: Regions,
        kinds: Sequence[str],
        vectors: np.ndarray,
        local_ids: np.ndarray,
        crop: dict[str, Any],
    ) -> FrameWrite:
        """``regions`` (masks ``NxHxW`` bool of the upright frame), ``kinds`` and ``vectors``
        (``(N, D)`` float32) and ``local_ids`` (``(N,)`` int64) parallel to each other."""
        n = len(regions)
        if len(kinds) != n or len(vectors) != n or len(local_ids) != n:
            raise ValueError(
                f"frame {frame_index}: {n} regions need {n} kinds, vectors and track ids, got "
                f"{len(kinds)}, {len(vectors)}, {len(local_ids)}"
            )
        item = ImageWrite(
            path="", sha256=None, regions=regions, kinds=kinds, vectors=vectors, crop=crop
        )
        rows = region_insert_rows(image_id, item) if n else []
        for row in rows:
            row["frame_index"] = int(frame_index)
            row["time_s"] = float(time_s)
        return cls(
            frame_index=int(frame_index),
            time_s=float(time_s),
            rows=rows,
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            local_ids=np.asarray(local_ids, dtype=np.int64),
        )


@dataclass(frozen=True)
class VideoRow:
    """A video's upright size, duration, average fps and rotation (degrees counter-clockwise)."""

    width: int
    height: int
    duration_s: float | None
    fps: float | None
    rotation: int


def begin_video(store: Store, path: str, sha256: str, info: VideoRow) -> tuple[int, WriteResult]:
    """Create (or reset, for a changed file or a restart) the video's row as ``"partial"``,
    dropping any regions, tracks and progress it had. Returns its image id and the write
    result (the removed region ids) for the FAISS mirror."""
    now = utc_now()
    values = {
        "sha256": sha256,
        "width": info.width,
        "height": info.height,
        "status": "partial",
        "error": None,
        "n_regions": 0,
        "updated_at": now,
        "media": "video",
        "duration_s": info.duration_s,
        "fps": info.fps,
        "rotation": info.rotation,
    }
    removed: list[int] = []
    with store.engine.begin() as conn:
        stored = db_path(path)
        row = find_image(conn, stored, lock=False)
        if row is None:
            new = {"path": stored, "created_at": now, **values}
            image_id = insert_image(conn, new, if_absent=False)
        else:
            image_id = row.id
            removed = clear_images(conn, [image_id])
            conn.execute(update(images).where(images.c.id == image_id).values(**values))
        bump_generation(conn)
    return int(image_id), WriteResult.of([], [], removed)


def resume_state(store: Store, image_id: int) -> dict[str, Any] | None:
    """The resume state committed with the video's last chunk, or ``None``."""
    with store.engine.connect() as conn:
        row = conn.execute(
            select(video_progress.c.state).where(video_progress.c.image_id == int(image_id))
        ).scalar_one_or_none()
    return None if row is None else json.loads(row)


def write_chunk(
    store: Store,
    image_id: int,
    frames: Sequence[FrameWrite],
    *,
    state: dict[str, Any] | None,
    last_frame: int,
    extend_end: dict[int, float] | None = None,
    extend_start: dict[int, float] | None = None,
) -> WriteResult:
    """Commit one chunk of a video in ONE transaction: its frames' regions, the tracks they
    extend or start (each touched track's ``kind = "track"`` row is replaced by one with the
    summary of all its frames so far, under a new region id), and either the resume ``state``
    (JSON-able; the video stays ``"partial"``) or, with ``state=None``, completion (the video
    becomes ``"indexed"`` and its progress row goes). ``extend_end`` (tracker-local id -> time)
    moves those tracks' ``end_s`` up to the time of a near-duplicate of their last frame (or
    the last frame a mask-propagating tracker saw them in); ``extend_start`` moves ``start_s``
    down the same way."""
    with store.transaction() as tx:
        conn = tx.conn
        extend_end, extend_start = extend_end or {}, extend_start or {}
        local = sorted(
            {int(i) for f in frames for i in f.local_ids.tolist() if i >= 0}
            | set(extend_end)
            | set(extend_start)
        )
        track_of = _track_ids(conn, image_id, local)
        rows: list[dict[str, Any]] = []
        for f in frames:
            for row, lid in zip(f.rows, f.local_ids.tolist(), strict=True):
                rows.append({**row, "track_id": track_of[int(lid)] if lid >= 0 else None})
        vectors = [f.vectors for f in frames if len(f.rows)]
        flat = np.concatenate(vectors) if vectors else np.zeros((0, store.dim), np.float32)
        ids = tx.insert(rows, flat)
        new: dict[int, list[tuple[int, dict[str, Any], np.ndarray]]] = {}
        for rid, row, vec in zip(ids, rows, flat, strict=True):
            if row["track_id"] is not None:
                new.setdefault(row["track_id"], []).append((rid, row, vec))
        track_rows, track_vectors, removed = _resummarise(store, conn, image_id, new)
        new_track_rows = tx.insert(
            track_rows,
            np.stack(track_vectors) if track_vectors else np.zeros((0, store.dim), np.float32),
        )
        for row, rid in zip(track_rows, new_track_rows, strict=True):
            conn.execute(update(tracks).where(tracks.c.id == row["track_id"]).values(region_id=rid))
        ids += new_track_rows
        for lid, t in extend_end.items():
            conn.execute(
                update(tracks)
                .where(tracks.c.id == track_of[lid], tracks.c.end_s < float(t))
                .values(end_s=float(t))
            )
        for lid, t in extend_start.items():
            conn.execute(
                update(tracks)
                .where(tracks.c.id == track_of[lid], tracks.c.start_s > float(t))
                .values(start_s=float(t))
            )
        vectors.extend(v[None] for v in track_vectors)
        vectors = [tx.as_stored(v) for v in vectors]
        conn.execute(delete(video_progress).where(video_progress.c.image_id == image_id))
        values: dict[str, Any] = {"updated_at": utc_now()}
        if state is not None:
            conn.execute(
                insert(video_progress).values(
                    image_id=image_id, last_frame=int(last_frame), state=json.dumps(state)
                )
            )
        else:
            values["status"] = "indexed"
            values["n_regions"] = conn.execute(
                select(func.count()).select_from(regions).where(regions.c.image_id == image_id)
            ).scalar_one()
        conn.execute(update(images).where(images.c.id == image_id).values(**values))
        bump_generation(conn)
    return WriteResult.of(ids, vectors, removed)


def _track_ids(conn: Any, image_id: int, local: list[int]) -> dict[int, int]:
    """``tracker-local id -> stable track id`` for this video, creating the tracks not seen yet."""
    if not local:
        return {}
    found = dict(
        conn.execute(
            select(tracks.c.local_id, tracks.c.id).where(
                tracks.c.image_id == image_id, tracks.c.local_id.in_(local)
            )
        ).all()
    )
    for lid in local:
        if lid not in found:
            found[lid] = conn.execute(
                insert(tracks)
                .values(image_id=image_id, local_id=lid, n_frames=0)
                .returning(tracks.c.id)
            ).scalar_one()
    return {int(k): int(v) for k, v in found.items()}


def _resummarise(
    store: Store,
    conn: Any,
    image_id: int,
    new: dict[int, list[tuple[int, dict[str, Any], np.ndarray]]],
) -> tuple[list[dict[str, Any]], list[np.ndarray], list[int]]:
    """Extend each track in ``new`` (track id -> its new frames' ``(region id, row, (D,)
    vector)``) from its running totals; returns the new ``kind = "track"`` rows, their vectors,
    and the replaced track rows' ids. The tracks' rows are updated (``region_id`` is set once
    the new track rows are inserted)."""
    if not new:
        return [], [], []
    current = {
        r.id: r for r in conn.execute(select(tracks).where(tracks.c.id.in_(list(new)))).all()
    }
    out_rows: list[dict[str, Any]] = []
    out_vectors: list[np.ndarray] = []
    replaced: list[int] = []
    for tid, frames in new.items():
        t = current[tid]
        totals = TrackTotals.from_row(t)
        for _, row, vec in frames:
            totals.add(row["label"], row["label_id"], row["score"], vec, row["time_s"])
        vector = totals.vector()
        candidates = list(frames)
        if t.best_id is not None:  # the previous best frame competes with the new ones
            old = conn.execute(select(regions).where(regions.c.id == t.best_id)).one_or_none()
            stored = store.region_vectors([t.best_id]) if old is not None else {}
            if old is not None and t.best_id in stored:
                candidates.insert(0, (old.id, dict(old._mapping), stored[t.best_id]))
        best_id, best, _ = max(candidates, key=lambda c: float(np.dot(c[2], vector)))
        label, label_id, score = totals.label()
        out_rows.append(
            {
                **{k: best[k] for k in _COPIED_FROM_BEST},
                "image_id": image_id,
                "kind": "track",
                "label_id": label_id,
                "label": label,
                "score": score,
                "track_id": tid,
            }
        )
        out_vectors.append(vector)
        conn.execute(
            update(tracks)
            .where(tracks.c.id == tid)
            .values(region_id=None, best_id=int(best_id), **totals.to_values())
        )
        if t.region_id is not None:
            replaced.append(int(t.region_id))
    if replaced:
        conn.execute(delete(regions).where(regions.c.id.in_(replaced)))
    return out_rows, out_vectors, replaced


#: a track's region row shows its best frame's box, mask, area and time
_COPIED_FROM_BEST = (
    "is_thing", "x0", "y0", "x1", "y1", "area", "rle", "crop_id", "frame_index", "time_s"
)  # fmt: skip
