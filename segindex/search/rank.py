"""Where queries are answered: query vector -> allowed ids (one SQL query) -> FAISS with an ID
selector -> region rows (one SQL query) -> ranked, grouped, paged hits.

Hits are ordered by similarity, then by region id, so pages are stable: page after page of one
query gives exactly the list one large query gives.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from segindex.errors import QueryError
from segindex.search.conditions import region_where
from segindex.search.hits import Hit, SearchPage, hit_from_row
from segindex.search.query import SCOPES, Query, Scope, Term
from segindex.store.sql import Store
from segindex.store.vectors import VectorIndex

__all__ = ["check_k", "rank", "search_vectors", "search_vectors_batch"]


def check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    return int(k)


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
    allowed = store.filtered_region_ids(region_where(SCOPES[scope], None))
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
    allowed = store.filtered_region_ids(region_where(spec.kind, spec.filters))
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
    ids, owners, vecs = store.image_region_vectors(image_ids, region_where(spec.kind, spec.filters))
    keep = ~np.isin(ids, np.fromiter(exclude, np.int64, len(exclude)))
    if spec.min_similarity is not None and len(ids):
        keep &= vecs @ np.asarray(query, np.float32).reshape(-1) >= spec.min_similarity - 1e-6
    found, counts = np.unique(owners[keep], return_counts=True)
    return {int(i): int(c) for i, c in zip(found, counts, strict=True)}
