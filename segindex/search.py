"""Where queries are answered: query vector -> allowed ids (one SQL query) -> FAISS with an ID
selector -> region rows (one SQL query) -> ranked, grouped, paged hits.

Hits are ordered by similarity, then by region id, so pages are stable: page after page of one
query gives exactly the list one large query gives.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segindex import rle as rle_codec
from segindex.errors import QueryError
from segindex.query import SCOPES, Query, Scope, Term
from segindex.store.sql import Store
from segindex.store.vectors import VectorIndex

__all__ = ["Hit", "SearchPage", "Scope", "rank", "search_vectors", "search_vectors_batch"]


@dataclass
class Hit:
    """One matching region.

    bbox:       XYXY pixels in the original image (x1/y1 exclusive)
    rle:        COCO compressed RLE of the mask (``size`` = [height, width])
    similarity: cosine similarity of the region's vector to the query, in [-1, 1] (NaN for a
                region read by id, without a query)
    kind:       ``segment`` (a mask from the segmenter), ``image`` (the whole image) or
                ``track`` (a video track: see :class:`segindex.tracks.TrackHit`)
    frame_index, time_s: for a region of a sampled video frame, the frame's 0-based index in
                presentation order and its time in seconds; ``None`` for images
    track_id:   the stable id of the video track the region belongs to, or ``None``
    """

    region_id: int
    image_id: int
    image_path: str
    kind: str
    label: str
    label_id: int
    score: float
    is_thing: bool
    bbox: tuple[float, float, float, float]
    area: int
    rle: rle_codec.RLE
    similarity: float
    #: with ``group_by_image``: how many of the image's regions match (filters, min similarity)
    image_matches: int | None = None
    frame_index: int | None = None
    time_s: float | None = None
    track_id: int | None = None
    _mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def mask(self) -> np.ndarray:
        """``HxW`` bool mask at the image's resolution (decoded on first call, then cached)."""
        if self._mask is None:
            self._mask = rle_codec.decode(self.rle)
        return self._mask

    def to_dict(self) -> dict[str, Any]:
        out = {
            "region_id": self.region_id,
            "image_id": self.image_id,
            "image_path": self.image_path,
            "kind": self.kind,
            "label": self.label,
            "label_id": self.label_id,
            "score": round(self.score, 6),
            "is_thing": self.is_thing,
            "bbox": [round(v, 2) for v in self.bbox],
            "area": self.area,
            "rle": dict(self.rle),
            "similarity": None if np.isnan(self.similarity) else round(self.similarity, 6),
        }
        if self.image_matches is not None:
            out["image_matches"] = self.image_matches
        if self.frame_index is not None:
            out["frame_index"] = self.frame_index
            out["time_s"] = None if self.time_s is None else round(self.time_s, 6)
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out


def check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    return int(k)


def hit_from_row(row: Any, similarity: float) -> Hit:
    frame_index = getattr(row, "frame_index", None)
    time_s = getattr(row, "time_s", None)
    track_id = getattr(row, "track_id", None)
    return Hit(
        region_id=int(row.id),
        image_id=int(row.image_id),
        image_path=row.path,
        kind=row.kind,
        label=row.label,
        label_id=int(row.label_id),
        score=float(row.score),
        is_thing=bool(row.is_thing),
        bbox=(float(row.x0), float(row.y0), float(row.x1), float(row.y1)),
        area=int(row.area),
        rle={"size": [int(row.height), int(row.width)], "counts": row.rle},
        similarity=float(similarity),
        frame_index=None if frame_index is None else int(frame_index),
        time_s=None if time_s is None else float(time_s),
        track_id=None if track_id is None else int(track_id),
    )


@dataclass
class SearchPage:
    """One page of hits: ``hits[j]`` is overall rank ``offset + j``; ``has_more`` when a further
    page exists."""

    hits: list[Hit]
    k: int
    offset: int
    has_more: bool
    #: for region-of-a-new-image terms: the mask each prompt resolved to (``QueryRegion``)
    query_regions: list[Any] = field(default_factory=list)

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.k if self.has_more else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": [h.to_dict() for h in self.hits],
            "k": self.k,
            "offset": self.offset,
            "has_more": self.has_more,
            "next_offset": self.next_offset,
        }


def search_vectors(
    query: np.ndarray, *, store: Store, vectors: VectorIndex, k: int, scope: Scope
) -> list[Hit]:
    """Top-``k`` regions for one ``(D,)`` L2-normalised float32 query vector."""
    k = check_k(k)
    if scope not in SCOPES:
        raise QueryError(f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
    return rank(query, Query(terms=(Term(vector=query),), k=k, scope=scope), store, vectors).hits


def search_vectors_batch(
    queries: np.ndarray,
    *,
    store: Store,
    vectors: VectorIndex,
    k: int,
    scope: Scope,
    lock: threading.Lock | threading.RLock | None = None,
) -> list[list[Hit]]:
    """Top-``k`` regions for each of ``(Q, D)`` L2-normalised float32 queries: ONE FAISS call
    (batches use BLAS) and ONE SQL read of the hit rows. Candidates whose row is gone (an image
    being replaced right now) are skipped, so a list can be shorter than ``k`` in that moment."""
    k = check_k(k)
    if scope not in SCOPES:
        raise QueryError(f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
    guard: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
    allowed = store.filtered_region_ids(kind=SCOPES[scope])
    if allowed is not None and len(allowed) == 0:
        return [[] for _ in range(len(queries))]
    q = np.ascontiguousarray(queries, dtype=np.float32)
    with guard:
        sims, ids = vectors.search(q, k + 8, allowed_ids=allowed)
    rows = store.region_rows(sorted({int(i) for i in ids.ravel() if i >= 0}))
    out = []
    for srow, irow in zip(sims, ids, strict=True):
        found = sorted((-float(s), int(i)) for s, i in zip(srow, irow, strict=True) if i in rows)
        out.append([hit_from_row(rows[i], -neg) for neg, i in found[:k]])
    return out


def rank(
    query: np.ndarray,
    spec: Query,
    store: Store,
    vectors: VectorIndex,
    lock: threading.Lock | threading.RLock | None = None,
    exclude_ids: Collection[int] = (),
) -> SearchPage:
    """The page ``spec`` asks for, for one ``(D,)`` L2-normalised float32 query vector.

    Filters become the FAISS ID selector (so ``k`` hits come back whenever ``k`` regions match);
    FAISS is asked for more candidates until the page is certain: every hit kept is strictly
    more similar than the weakest candidate fetched, or every allowed vector was fetched.
    ``lock`` guards the FAISS index against concurrent writers. ``exclude_ids``: more region ids
    to leave out with ``exclude_query_regions`` (the rows of the tracks used as terms).
    """
    guard: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
    exclude = {*spec.region_ids, *exclude_ids} if spec.exclude_query_regions else set()
    # the (cached, shared) allowed set is used as is: query regions are dropped from the
    # candidates below, and ``fetch`` asks for that many more
    allowed = store.filtered_region_ids(kind=spec.kind, filters=spec.filters)
    if allowed is not None and len(allowed) == 0:
        return SearchPage([], spec.k, spec.offset, False)
    need = spec.offset + spec.k + 1  # one more than the page tells whether another page exists
    fetch = max(2 * need, 32) + len(exclude)
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
    while True:
        with guard:  # the count and the search see the same state of the index
            total = vectors.ntotal if allowed is None else min(len(allowed), vectors.ntotal)
            if total == 0:
                return SearchPage([], spec.k, spec.offset, False)
            fetch = min(fetch, total)
            sims, ids = vectors.search(q, fetch, allowed_ids=allowed)
        got = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0]
        exhausted = len(got) < fetch or fetch >= total
        floor = got[-1][1] if got else -np.inf
        cands = [(i, s) for i, s in got if i not in exclude]
        if spec.min_similarity is not None:
            exhausted = exhausted or floor < spec.min_similarity
            cands = [(i, s) for i, s in cands if s >= spec.min_similarity]
        ranked = sorted((-s, i) for i, s in cands)
        if spec.group_by_image:
            rows = store.region_rows([i for _, i in ranked])
        else:  # rows of the best ``need`` only (each row is a random read at scale)
            rows = _rows_of_best(store, ranked, need)
        # ids without a row: an image being replaced or deleted right now; skipped whole
        ordered = [(n, i) for n, i in ranked if i in rows]
        if spec.group_by_image:
            seen: set[int] = set()
            best = []
            for neg, i in ordered:
                if rows[i].image_id not in seen:
                    seen.add(rows[i].image_id)
                    best.append((neg, i))
            ordered = best
        certain = ordered if exhausted else [(n, i) for n, i in ordered if -n > floor]
        if exhausted or len(certain) >= need:
            break
        fetch *= 4
    page = certain[spec.offset : spec.offset + spec.k]
    hits = [hit_from_row(rows[i], -neg) for neg, i in page]
    if spec.group_by_image and hits:
        counts = _image_matches(query, spec, store, [h.image_id for h in hits], exclude)
        for h in hits:
            h.image_matches = counts.get(h.image_id, 1)
    return SearchPage(hits, spec.k, spec.offset, len(certain) > spec.offset + spec.k)


def _rows_of_best(store: Store, ranked: list[tuple[float, int]], need: int) -> dict[int, Any]:
    """Rows of the first ``need`` candidates of ``ranked`` that have one (reading further down
    only for candidates whose row vanished: an image deleted or replaced meanwhile)."""
    rows: dict[int, Any] = {}
    pos = 0
    while pos < len(ranked) and len(rows) < need:
        # after a vanished row, read a few ahead rather than one row per query
        chunk = [i for _, i in ranked[pos : pos + need - len(rows) + (4 if pos else 0)]]
        rows.update(store.region_rows(chunk))
        pos += len(chunk)
    return rows


def _image_matches(
    query: np.ndarray, spec: Query, store: Store, image_ids: list[int], exclude: set[int]
) -> dict[int, int]:
    """How many regions of each image (tracks of each video) pass the filters (and the
    similarity threshold)."""
    ids, owners, vecs = store.image_region_vectors(image_ids, kind=spec.kind, filters=spec.filters)
    keep = ~np.isin(ids, np.fromiter(exclude, np.int64, len(exclude)))
    if spec.min_similarity is not None and len(ids):
        keep &= vecs @ np.asarray(query, np.float32).reshape(-1) >= spec.min_similarity - 1e-6
    found, counts = np.unique(owners[keep], return_counts=True)
    return {int(i): int(c) for i, c in zip(found, counts, strict=True)}
