"""Filtered search for :class:`~segindex.store.vectors.VectorIndex`: the true best ``k`` among
the allowed ids, whatever the filter.

A filter can remove exactly the query's neighbourhood (``exclude_labels=["person"]`` for a query
whose best matches are people). A graph or list search with an ID selector then explores the
wrong place: its beam fills with the excluded neighbours and the allowed hits it returns are
whatever it met on the way, not the best (issue 11: HNSW, allowed = the 90 % least similar,
recall@10 0.00). So the strategy never trusts a filtered walk; each answer is either exact or
the allowed part of an unfiltered ANN answer, which is as good as unfiltered search itself:

1. A small allowed set (<= ``EXACT_MIN_IDS``, or <= ``EXACT_MAX_FRACTION`` of the index up to
   ``EXACT_MAX_IDS``) is scored exactly: its vectors are gathered from the flat storage (flat,
   HNSW) or read from the vector segments (``fetch``, IVF-PQ) and multiplied with the queries.
2. Flat: FAISS scans everything with the ID selector (exact).
3. HNSW / IVF-PQ, *post-filter with adaptive depth*: an unfiltered ANN search for ``W`` candidates,
   starting at ``W = 1.5 k / selectivity + 8``. A query with ``k`` allowed among its candidates is
   answered by them: every allowed vector more similar than the ``k``-th is among the unfiltered
   top ``W`` too. A query with fewer gets ``W`` grown to what its own local share of allowed
   candidates predicts, up to ``ANN_MAX_K`` (and ``ANN_MAX_K_FRACTION`` of the index).
   IVF-PQ (re-ranked) wants as many allowed candidates as it re-ranks unfiltered
   (``rerank_depth(k)``, by quantised score; the depth cap grows by the same factor) and
   scores them exactly: the quantised best of the allowed ids, re-ranked as an unfiltered
   search re-ranks the quantised best of all.
4. A query whose neighbourhood holds too few allowed ids for that (a correlated or adversarial
   filter) is scored exhaustively over the allowed set: FAISS scans the flat storage with a
   bitmap of the allowed slots (HNSW: exact). IVF-PQ reads the stored vectors of the allowed
   ids it holds through ``fetch`` and scores them exactly (up to ``EXACT_SCAN_MAX_IDS``; a
   larger set: one scan of every list with the ID selector for the quantised best, re-ranked
   exactly in growing prefixes until no candidate left out can beat the ``k``-th). Without
   ``fetch``: every list, quantised scores.

Measured on 2 cores (benchmarks/RESULTS.md, ``bench_filtered.py``): random filters from 0.1 % to
90 % and adversarial 50 % / 90 % all reach recall@10 >= 0.95 against exact search over the
allowed ids; random filters are answered at step 1 or 3, adversarial ones at step 4 (a scan of
the allowed vectors: its cost grows with the allowed set, 180-275 ms at 1M x 512-d, which is the
price of exactness when the index's neighbourhoods do not help).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segindex.store.vectors import VectorIndex

#: allowed sets up to this size, or up to this fraction of an index with at most
#: ``EXACT_MAX_IDS`` allowed, are scored exactly (beyond that a gather of their vectors costs
#: more than an unfiltered ANN search deep enough to hold ``k`` of them)
EXACT_MIN_IDS = 4_096
EXACT_MAX_IDS = 20_000
EXACT_MAX_FRACTION = 0.02
#: an ANN index asked for more than this many (or this fraction of itself) scans exactly
ANN_MAX_K_FRACTION = 0.05
ANN_MAX_K = 2048
#: IVF-PQ scores an allowed set of up to this many ids exactly (its stored vectors, read in
#: chunks of ``SCAN_CHUNK``) when a post-filter cannot answer; a larger one is scanned over every
#: list's quantised codes and the best candidates re-ranked exactly
EXACT_SCAN_MAX_IDS = 200_000
SCAN_CHUNK = 32_768
SCAN_RERANK_MAX = 16_384
NO_SIM = np.float32(-3.4028235e38)  # what FAISS returns for a missing inner-product hit


def _faiss() -> Any:  # faiss, imported on first use
    import faiss

    return faiss


class AllowedSet:
    """One filter's allowed ids prepared for search. ``allowed``: ``(m,)`` integer ids in any
    order (negative ones ignored); ``ids``: them sorted, unique, int64. A FAISS ID selector and
    a bitmap selector of the index's slots are made on first use and kept (the store hands out
    one shared read-only array per filter until its next write, so these are reused)."""

    def __init__(self, allowed: np.ndarray) -> None:
        ids = np.asarray(allowed, dtype=np.int64)
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # the store's sets come sorted
            ids = np.unique(ids)
        self.ids = ids[ids >= 0] if len(ids) and ids[0] < 0 else ids
        self._selector: Any = None
        self._slots: tuple[object, _SlotBitmap] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean array shaped like ``ids`` (any shape, int64): which are allowed."""
        if len(self.ids) == 0:
            return np.zeros(ids.shape, dtype=bool)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[at] == ids

    def selector(self) -> Any:
        if self._selector is None:
            self._selector = _faiss().IDSelectorBatch(self.ids)
        return self._selector

    def slot_selector(self, vi: VectorIndex) -> Any:
        """FAISS selector of the slots of ``vi`` that hold an allowed id (kept until ``vi`` is
        written: its lookup table is rebuilt then)."""
        layout = vi.slot_layout
        if self._slots is not None and self._slots[0] is layout:
            return self._slots[1].selector
        _, slots = vi.positions(self.ids)
        mask = np.zeros(vi.slot_count, dtype=bool)
        mask[slots] = True
        self._slots = (layout, _SlotBitmap(mask))
        return self._slots[1].selector


def search_allowed(
    vi: VectorIndex, queries: np.ndarray, k: int, allowed: AllowedSet
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` over the allowed ids for ``(Q, D)`` float32 queries (see the module doc);
    ``(similarities (Q, k) float32, ids (Q, k) int64)``, best first, ``-1`` padded."""
    m = len(allowed)
    live = vi.ntotal
    if m <= EXACT_MIN_IDS or m <= min(EXACT_MAX_IDS, EXACT_MAX_FRACTION * live):
        return exact_subset(vi, queries, k, allowed)
    if vi.kind == "flat":
        params = _faiss().SearchParameters(sel=allowed.selector())
        return vi.faiss_index.search(queries, k, params=params)
    out_s, out_i = empty(len(queries), k)
    todo = np.arange(len(queries))
    # IVF-PQ (re-ranked) needs as many allowed candidates as it re-ranks unfiltered: the
    # quantised best ``want`` allowed ones, scored exactly
    want = vi.rerank_depth(k) if vi.reranks else k
    cap = int(min(ANN_MAX_K * want / k, ANN_MAX_K_FRACTION * live))
    width = _depth(want, min(1.0, m / max(live, 1)), cap)
    scan = np.zeros(0, dtype=np.int64)  # rows left to the exhaustive scan
    while len(todo) and width:
        if vi.reranks:  # IVF-PQ's quantised candidates
            sims, ids = vi.candidates(queries[todo], width)
        else:
            sims, ids = vi.ann(queries[todo], width)
        ok = (ids >= 0) & allowed.contains(ids)
        counts = ok.sum(axis=1)
        done = np.flatnonzero(counts >= want)
        if vi.reranks and len(done):
            cand = np.stack([ids[row][ok[row]][:want] for row in done])
            out_s[todo[done]], out_i[todo[done]] = vi.rerank(queries[todo[done]], cand, k)
        else:
            for row in done:
                out_s[todo[row]] = sims[row][ok[row]][:k]
                out_i[todo[row]] = ids[row][ok[row]][:k]
        short = counts < want
        # the depth each short query's own share of allowed candidates predicts
        need = np.array([_depth(want, c / width, cap, width) for c in counts[short]], np.int64)
        todo = todo[short]
        scan = np.concatenate([scan, todo[need == 0]])
        todo = todo[need > 0]
        width = int(need.max(initial=0))
    scan = np.concatenate([scan, todo])
    if len(scan):  # too few allowed near these queries: score the whole allowed set
        out_s[scan], out_i[scan] = exhaustive(vi, queries[scan], k, allowed)
    return out_s, out_i


def _depth(k: int, share: float, cap: int, tried: int = 0) -> int:
    """Candidates an unfiltered search needs for ``k`` allowed hits when ``share`` of its
    candidates are allowed: ``1.5 k / share + 8``, at least twice ``tried``, at most ``cap``
    (asked up to 1.5 ``cap``); 0 when beyond that or ``tried`` already reached ``cap``."""
    if share <= 0 or tried >= cap:
        return 0
    want = max(2 * tried, int(math.ceil(1.5 * k / share)) + 8)
    return 0 if want > 1.5 * cap else min(want, cap)


def exact_subset(
    vi: VectorIndex, queries: np.ndarray, k: int, allowed: AllowedSet
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over the allowed ids' own vectors (gathered, or fetched)."""
    storage = vi.storage()
    if storage is not None:
        ids, slots = vi.positions(allowed.ids)
        vecs = storage[slots]
    elif vi.fetch is not None:
        held, _ = vi.positions(allowed.ids)
        ids, vecs = vi.fetch(held)
    else:  # IVF-PQ without exact vectors: every list, only the allowed ids
        return exhaustive(vi, queries, k, allowed)
    return top_k(queries @ np.asarray(vecs, np.float32).T, np.asarray(ids, np.int64), k)


def exhaustive(
    vi: VectorIndex, queries: np.ndarray, k: int, allowed: AllowedSet | None
) -> tuple[np.ndarray, np.ndarray]:
    """Score every (allowed) live vector: FAISS scans the flat storage (flat, HNSW: exact) with a
    bitmap of the slots to score, or probes every IVF list (IVF-PQ: quantised scores). FAISS
    reads the storage itself, so a memory-mapped file (whose floats numpy sees unaligned, and
    multiplies without BLAS) costs no copy."""
    faiss = _faiss()
    flat = vi.flat_index()
    if flat is None and vi.reranks:
        if allowed is not None and len(allowed) <= EXACT_SCAN_MAX_IDS:
            return _scan_fetched(vi, queries, k, allowed)
        return _scan_codes(vi, queries, k, allowed)
    if flat is None:
        params = faiss.SearchParametersIVF(nprobe=vi.nlist)
        if allowed is not None:
            params.sel = allowed.selector()
        return vi.faiss_index.search(queries, k, params=params)
    slot_ids = vi.slot_ids()
    sel = None
    if allowed is not None:
        sel = allowed.slot_selector(vi)
    elif vi.tombstones:
        sel = _SlotBitmap(slot_ids >= 0).selector
    if sel is None:
        sims, slots = flat.search(queries, k)
    else:
        sims, slots = flat.search(queries, k, params=faiss.SearchParameters(sel=sel))
    return sims, np.where(slots >= 0, slot_ids[np.maximum(slots, 0)], -1)


def _scan_codes(
    vi: VectorIndex, queries: np.ndarray, k: int, allowed: AllowedSet | None
) -> tuple[np.ndarray, np.ndarray]:
    """IVF-PQ: ONE scan of every list (with the ID selector) for the ``SCAN_RERANK_MAX``
    quantised best candidates, re-ranked exactly in growing prefixes (``rerank_depth(k)``, then
    4x): a query stops once no candidate left out can beat its ``k``-th, i.e. once the ``k``-th
    exact score is at least the last quantised score re-ranked plus the largest quantised error
    seen (far from the query scores crowd and quantised errors matter more)."""
    faiss = _faiss()
    params = faiss.SearchParametersIVF(nprobe=vi.nlist)
    if allowed is not None:
        params.sel = allowed.selector()
    approx, cand = vi.faiss_index.search(queries, max(SCAN_RERANK_MAX, k), params=params)
    exact = np.full(cand.shape, NO_SIM, np.float32)
    out_s, out_i = empty(len(queries), k)
    todo = np.arange(len(queries))
    scored, depth = 0, min(vi.rerank_depth(k), cand.shape[1])
    while len(todo):
        exact[todo, scored:depth] = vi.exact_scores(queries[todo], cand[todo, scored:depth])
        found = exact[todo, :depth] > NO_SIM
        err = np.where(found, np.abs(exact[todo, :depth] - approx[todo, :depth]), 0).max(axis=1)
        ids = np.where(found, cand[todo, :depth], -1)
        out_s[todo], out_i[todo] = top_k(exact[todo, :depth], ids, k)
        last = todo if depth == cand.shape[1] else np.zeros(0, np.int64)
        ended = cand[todo, depth - 1] < 0
        bound = out_s[todo, -1] >= approx[todo, depth - 1] + err
        todo = np.setdiff1d(todo[~(ended | bound)], last)
        scored, depth = depth, min(4 * depth, cand.shape[1])
    return out_s, out_i


def _scan_fetched(
    vi: VectorIndex, queries: np.ndarray, k: int, allowed: AllowedSet
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` over every allowed id the index holds, their stored vectors read through
    ``vi.fetch`` in chunks of ``SCAN_CHUNK`` (IVF-PQ)."""
    assert vi.fetch is not None
    held, _ = vi.positions(allowed.ids)
    best_s, best_i = empty(len(queries), k)
    for s in range(0, len(held), SCAN_CHUNK):
        ids, vecs = vi.fetch(held[s : s + SCAN_CHUNK])
        sims = queries @ np.asarray(vecs, np.float32).T
        chunk_s, chunk_i = top_k(sims, np.asarray(ids, np.int64), k)
        both_i = np.hstack([best_i, chunk_i])
        best_s, best_i = top_k(np.hstack([best_s, chunk_s]), both_i, k)
    return best_s, best_i


class _SlotBitmap:
    """A FAISS ``IDSelectorBitmap`` over ``mask (slots,) bool``, holding the bits it points to."""

    def __init__(self, mask: np.ndarray) -> None:
        faiss = _faiss()
        self.bits = np.packbits(mask, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self.bits))


def empty(q: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(q, k)`` of no hit: similarity ``NO_SIM``, id ``-1``."""
    return np.full((q, k), NO_SIM, np.float32), np.full((q, k), -1, np.int64)


def top_k(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of ``sims (Q, m)`` per row (ties by id), padded with ``-1``; column
    ids are ``ids (m,)`` int64, or ``(Q, m)`` for ids that differ by row."""
    q, m = sims.shape
    cols = np.broadcast_to(ids, (q, m))
    if m == 0:
        return empty(q, k)
    take = min(k, m)
    if take < m:
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        sims = np.take_along_axis(sims, part, axis=1)
        cols = np.take_along_axis(cols, part, axis=1)
    order = np.lexsort((cols, -sims), axis=1)
    s = np.take_along_axis(sims, order, axis=1).astype(np.float32, copy=False)
    i = np.take_along_axis(cols, order, axis=1).astype(np.int64, copy=False)
    if take < k:
        pad_s, pad_i = empty(q, k - take)
        return np.hstack([s, pad_s]), np.hstack([i, pad_i])
    return s, i
