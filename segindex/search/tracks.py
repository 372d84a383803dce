"""Track hits: a video object found by a query, with its time span and its sampled frames.

A search with ``scope="tracks"`` (or ``"all"``) ranks the tracks' vectors (the L2-normalised mean
of their frame vectors) like any region; each track row found becomes a :class:`TrackHit`, which
adds the track's span and a ``best_frame``: the sampled frame whose own vector is closest to the
query (read with ONE query for the whole page). ``frames()`` reads every sampled frame's row on
first call; masks are decoded from RLE on ``mask()``; pixels only by :func:`read_frames`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import NotFoundError, VideoDecodeError
from segindex.search.hits import Hit, hit_from_row
from segindex.search.query import Query, Term
from segindex.store.sql import Store
from segindex.store.track_rows import (
    frame_region_ids,
    frame_rows,
    frame_vectors,
    track_region_ids,
    track_rows,
    tracks_of_regions,
)

__all__ = [
    "TrackHit",
    "format_time",
    "read_frames",
    "resolve_track_terms",
    "to_track_hits",
    "track_hit",
]


@dataclass
class TrackHit(Hit):
    """One matching video track. As a :class:`~segindex.search.hits.Hit`: ``region_id`` is the
    track's vector row, ``image_id``/``image_path`` its video, ``label``/``score`` the
    score-weighted vote over its frames, ``bbox``/``rle``/``frame_index``/``time_s`` those of its
    most typical frame (closest to the track vector), ``track_id`` the stable track id.

    start_s, end_s:  presentation times in seconds of its first and last sampled frame
    n_frames:        number of sampled frames in the track
    best_frame:      the sampled frame whose vector is closest to the query (without a query,
                     the most typical frame: closest to the track vector), a ``Hit`` with
                     ``time_s``, ``frame_index``, ``bbox``, ``rle``, ``mask()`` and its own
                     ``similarity`` (NaN without a query)
    """

    start_s: float = math.nan
    end_s: float = math.nan
    n_frames: int = 0
    best_frame: Hit | None = None
    _store: Store | None = field(default=None, repr=False, compare=False)
    _query: np.ndarray | None = field(default=None, repr=False, compare=False)
    _frames: list[Hit] | None = field(default=None, repr=False, compare=False)

    @property
    def video_path(self) -> str:
        return self.image_path

    @property
    def video_id(self) -> int:
        return self.image_id

    @property
    def duration_s(self) -> float:
        return float(self.end_s - self.start_s)

    def frames(self) -> list[Hit]:
        """Every sampled frame of the track in time order (read on first call, then cached):
        ``Hit``s of kind ``segment`` with ``frame_index``, ``time_s``, ``bbox``, ``rle``,
        ``mask()``; ``similarity`` to the query when the track came from one, else NaN."""
        if self._frames is None:
            if self._store is None:
                raise NotFoundError(f"track {self.track_id} is not attached to an index")
            rows = frame_rows(self._store, int(self.track_id or 0))
            sims: dict[int, float] = {}
            if self._query is not None and rows:
                ids, _, vecs = frame_vectors(self._store, [int(self.track_id or 0)])
                sims = dict(zip(ids.tolist(), (vecs @ self._query).tolist(), strict=True))
            self._frames = [hit_from_row(r, sims.get(int(r.id), math.nan)) for r in rows]
        return self._frames

    def to_dict(self, frames: bool = False) -> dict[str, Any]:
        """JSON-able fields; ``frames=True`` adds every sampled frame (reads them)."""
        out = super().to_dict()
        out.update(
            video_path=self.video_path,
            video_id=self.video_id,
            start_s=round(self.start_s, 6),
            end_s=round(self.end_s, 6),
            duration_s=round(self.duration_s, 6),
            n_frames=self.n_frames,
            best_frame=None if self.best_frame is None else self.best_frame.to_dict(),
        )
        if frames:
            out["frames"] = [f.to_dict() for f in self.frames()]
        return out


def _from_hit(hit: Hit, row: Any, store: Store, query: np.ndarray | None) -> TrackHit:
    values = {k: v for k, v in vars(hit).items() if not k.startswith("_")}
    values["track_id"] = int(row.id)
    return TrackHit(
        **values,
        start_s=float(row.start_s),
        end_s=float(row.end_s),
        n_frames=int(row.n_frames),
        _store=store,
        _query=query,
    )


def to_track_hits(hits: Sequence[Hit], store: Store, query: np.ndarray | None = None) -> list[Hit]:
    """``hits`` with every track row (``kind == "track"``) turned into a :class:`TrackHit`, its
    ``best_frame`` the frame closest to ``query`` (``(D,)`` L2-normalised float32; ``None``:
    the track's most typical frame). Three queries for the whole page: tracks, frame vectors,
    best frame rows. A track deleted meanwhile is dropped."""
    tracked = [(int(h.track_id), h) for h in hits if h.kind == "track" and h.track_id is not None]
    wanted = [t for t, _ in tracked]
    if not wanted:
        return list(hits)
    rows = track_rows(store, wanted)
    # each frame is scored against the query, or (no query) against its own track's vector:
    # the most typical frame, the one whose box and mask the track row carries
    if query is not None:
        target = {t: np.asarray(query, np.float32).reshape(-1) for t in wanted}
    else:
        own = store.region_vectors([h.region_id for _, h in tracked])
        target = {t: own[h.region_id] for t, h in tracked if h.region_id in own}
    best: dict[int, tuple[int, float]] = {}  # track id -> (frame region id, score)
    ids, owners, vecs = frame_vectors(store, wanted)
    for rid, tid, vec in zip(ids.tolist(), owners.tolist(), vecs, strict=True):
        if tid in target:
            score = float(vec @ target[tid])
            if tid not in best or score > best[tid][1]:
                best[tid] = (rid, score)
    best_rows = store.region_rows([rid for rid, _ in best.values()])
    out: list[Hit] = []
    for h in hits:
        if h.kind != "track":
            out.append(h)
            continue
        row = rows.get(int(h.track_id or 0))
        if row is None:
            continue
        t = _from_hit(h, row, store, query)
        found = best.get(int(row.id))
        if found is not None and found[0] in best_rows:
            sim = found[1] if query is not None else math.nan
            t.best_frame = hit_from_row(best_rows[found[0]], sim)
        out.append(t)
    return out


def resolve_track_terms(query: Query, store: Store) -> tuple[Query, set[int]]:
    """``query`` with each track term (``Term.track_id``) replaced by a term on the track's
    vector row (same weight), and the extra region ids to leave out of the hits with
    ``exclude_query_regions``: the frame regions of the query tracks, and the track rows of the
    tracks that query regions belong to. Raises :class:`NotFoundError` for an unknown track."""
    exclude: set[int] = set()
    if query.exclude_query_regions and query.region_ids:
        owners = tracks_of_regions(store, query.region_ids)
        exclude.update(track_region_ids(store, sorted(set(owners.values()))).values())
    if not query.track_ids:
        return query, exclude
    rows = track_region_ids(store, query.track_ids)
    missing = [t for t in query.track_ids if t not in rows]
    if missing:
        raise NotFoundError(f"no track with id {missing[0]} in this index")
    if query.exclude_query_regions:
        exclude.update(frame_region_ids(store, query.track_ids))
    terms = tuple(
        Term(region_id=rows[int(t.track_id)], weight=t.weight) if t.track_id is not None else t
        for t in query.terms
    )
    return replace(query, terms=terms), exclude


def track_hit(store: Store, track_id: int) -> TrackHit:
    """The indexed track ``track_id`` (``similarity`` NaN; ``best_frame`` its most typical
    frame). Raises :class:`NotFoundError`."""
    row = track_rows(store, [int(track_id)]).get(int(track_id))
    region = None if row is None or row.region_id is None else int(row.region_id)
    found = store.region_rows([region]) if region is not None else {}
    if region is None or region not in found:
        raise NotFoundError(f"no track with id {track_id} in this index")
    hits = to_track_hits([hit_from_row(found[region], math.nan)], store)
    if not hits or not isinstance(hits[0], TrackHit):
        raise NotFoundError(f"no track with id {track_id} in this index")
    return hits[0]


def format_time(seconds: float | None) -> str:
    """``m:ss.s`` (``75.25`` -> ``1:15.2``; hours as ``h:mm:ss.s``); ``-`` for ``None``/NaN."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    tenths = int(round(max(0.0, seconds) * 10))
    minutes, tenth_s = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    secs = f"{tenth_s // 10:02d}.{tenth_s % 10}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes}:{secs}"


def read_frames(path: str | Path, times_s: Sequence[float], rotation: int = 0) -> list[np.ndarray]:
    """Decode the frames shown at ``times_s`` (seconds, as stored with each sampled frame) of a
    video: ``HxWx3`` uint8 RGB each, upright (turned by ``rotation``, degrees
    counter-clockwise), in the order asked. One pass with a seek to the nearest earlier key
    frame; only the frames asked for are converted to RGB. Raises :class:`VideoDecodeError`."""
    import av

    from segindex.ingest.video import decode_errors, error_reason, upright

    want = sorted({float(t) for t in times_s})
    found: dict[float, np.ndarray] = {}
    if not want:
        return []
    name = str(path)
    try:
        with av.open(name) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"cannot decode video {name!r}: no video stream")
            stream = container.streams.video[0]
            rate = float(stream.average_rate) if stream.average_rate else 30.0
            tolerance = 0.5 / max(rate, 1.0)
            if stream.time_base is not None and want[0] > 1.0:
                container.seek(int(want[0] / stream.time_base), stream=stream, backward=True)
            pending = list(want)
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    continue
                while pending and pending[0] < float(t) - tolerance:
                    pending.pop(0)  # not in the stream as stored (a re-encoded file)
                if pending and abs(float(t) - pending[0]) <= tolerance:
                    found[pending.pop(0)] = frame.to_ndarray(format="rgb24")
                if not pending:
                    break
    except VideoDecodeError:
        raise
    except decode_errors() as e:
        raise VideoDecodeError(f"cannot decode video {name!r}: {error_reason(e)}") from e
    missing = [t for t in want if t not in found]
    if missing:
        raise VideoDecodeError(f"video {name!r} has no frame at {missing[0]:.3f}s")
    return [upright(found[float(t)], rotation) for t in times_s]
