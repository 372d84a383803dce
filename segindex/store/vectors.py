"""FAISS vector index whose ids are the SQL region ids (inner product; flat and HNSW in an
``IndexIDMap2``, IVF-PQ holding the ids in its lists: :mod:`segindex.store.kinds`).

Vectors are L2-normalised float32, so inner product is cosine similarity. The file is a cache of
the stored vectors: it is written atomically (temp file + fsync + rename) and rebuilt or resynced
from the store whenever it does not hold exactly the ids the SQL store holds. An IVF file inside
an id map (written before issue 19; wrong ids after a removal) is refused, so it is rebuilt.

IVF-PQ is re-ranked exactly: FAISS returns ``max(rerank, 4 k)`` candidates by their quantised
scores, :attr:`VectorIndex.fetch` reads their stored vectors (one call per batch of queries,
never more than that many ids per query), and the best ``k`` by exact inner product are returned
with those exact scores, comparable with the flat and HNSW kinds'. Without ``fetch`` (a bare
index) IVF-PQ answers with its quantised scores.

Removal: flat and IVF remove for real. HNSW cannot remove, so a removed id is a tombstone: its
slot in the ``IndexIDMap2`` id map becomes ``-1`` (saved with the file, so the file still holds
exactly the live ids), and searches skip ``-1`` with an ID selector. When a quarter of the slots
are dead the graph is rebuilt from its own stored vectors.

Filtered search (``allowed_ids``) returns the true best ``k`` allowed vectors, whatever the
filter (exact for small allowed sets, else the allowed part of an unfiltered ANN search of
adaptive depth, else an exhaustive scan of the allowed vectors): see
:mod:`segindex.store.filtered`.

Loading memory-maps the vector storage where FAISS supports it (``IO_FLAG_MMAP_IFC``: flat and
HNSW storage; IVF lists), so opening a 2 GB index costs page-cache lookups, not a copy. A mapped
index is read-only: the first write reloads it into memory.
"""

from __future__ import annotations

import ctypes
import mmap as _mmap
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from segindex.store.filtered import (
    ANN_MAX_K,
    ANN_MAX_K_FRACTION,
    NO_SIM,
    AllowedSet,
    empty,
    exhaustive,
    search_allowed,
    top_k,
)
from segindex.store.kinds import Kind, KindSpec, kind_of
from segindex.store.kinds import build as build_faiss

#: batches of at least this many queries use BLAS (FAISS compares queries x dim)
BLAS_MIN_QUERIES = 16
#: HNSW is compacted when this fraction of its slots are tombstones
COMPACT_FRACTION = 0.25
#: IVF-PQ re-ranks the candidates of this many (query, candidate) pairs per fetch
RERANK_BATCH = 16_384

Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _faiss() -> Any:  # faiss, imported on first use
    import faiss

    return faiss


class VectorIndex:
    """Inner-product search over ``(N, D)`` float32 vectors keyed by int64 ids.

    fetch: optional ``ids (n,) int64 -> (found ids (m,) int64 ascending, vectors (m, D)
    float32)`` reading the stored vectors (the vector segments); IVF-PQ, whose own vectors are
    compressed, re-ranks its candidates and scores filtered sets exactly with it.
    """

    def __init__(
        self,
        dim: int,
        index: Any | None = None,
        *,
        spec: KindSpec | None = None,
        fetch: Fetch | None = None,
    ) -> None:
        faiss = _faiss()
        self.dim = dim
        self.spec = spec or KindSpec()
        self.fetch = fetch
        self._index: Any = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if self._index.d != dim:
            raise ValueError(f"vector index has dimension {self._index.d}, expected {dim}")
        self.kind: Kind = kind_of(self._index)
        if (self.kind == "ivfpq") == hasattr(self._index, "id_map"):
            raise ValueError(  # an id map over IVF maps wrong after a removal (kinds.py)
                "vector index must be an IndexIDMap2 over flat / HNSW, or a bare IVF index, got "
                f"{type(self._index).__name__}"
            )
        self._mapped: tuple[Path, tuple[int, int, int]] | None = None
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (order, sorted slot ids)
        self._layout = object()  # replaced whenever slots change (see ``slot_layout``)
        self._allowed_cache: tuple[np.ndarray, AllowedSet] | None = None
        self._dead = 0 if self.kind != "hnsw" else int(np.count_nonzero(self.slot_ids() < 0))

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: Path,
        dim: int,
        *,
        mmap: bool = True,
        spec: KindSpec | None = None,
        fetch: Fetch | None = None,
    ) -> VectorIndex:
        """Read a saved index, memory-mapped where FAISS can (falls back to reading it)."""
        faiss = _faiss()
        index = None
        if mmap:
            try:
                index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
            except RuntimeError:
                index = None
        mapped = index is not None
        if index is None:
            index = faiss.read_index(str(path))
        vi = cls(dim, index, spec=spec, fetch=fetch)
        if mapped:
            vi._mapped = (path, _stamp(path))
            vi._populate()
        return vi

    def _populate(self) -> None:
        """Map the memory-mapped vectors into this process in the background.

        Each 4 KB of a mapped file costs a page fault on first touch; an HNSW query touches a
        few thousand vectors, so the first queries after open paid 3-4 ms of faults at 1M
        vectors (benchmarks/RESULTS.md). ``MADV_POPULATE_READ`` (Linux >= 5.14) maps every page
        in one kernel call, which ctypes makes without the GIL, in a daemon thread so open does
        not wait for files that are not in the page cache. Skipped when the vectors exceed half
        the available memory (reading them all would evict what the machine needs). Best
        effort: elsewhere, or on error, pages fault in as queries touch them. A mapping gone
        meanwhile makes the call fail (ENOMEM), never crash."""
        storage = self.storage()
        if storage is None or storage.size == 0 or not sys.platform.startswith("linux"):
            return
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return
        if storage.nbytes > available // 2:
            return
        addr, nbytes = int(storage.ctypes.data), int(storage.nbytes)
        threading.Thread(
            target=_populate_read, args=(addr, nbytes), name="segindex-populate", daemon=True
        ).start()

    @classmethod
    def build(
        cls,
        dim: int,
        spec: KindSpec,
        n: int,
        chunks: Iterable[tuple[np.ndarray, np.ndarray]],
        *,
        sample: Callable[[int], np.ndarray] | None = None,
        fetch: Fetch | None = None,
        progress: bool = True,
    ) -> VectorIndex:
        """An index of the kind ``spec`` picks for ``n`` vectors, holding all ``chunks``
        (``(ids (m,) int64, vectors (m, D) float32)``); IVF-PQ trains on ``sample(k)``.
        ``progress``: a bar on stderr while building, when stderr is a terminal."""
        index = build_faiss(spec, dim, n, chunks, sample, progress=progress)
        return cls(dim, index, spec=spec, fetch=fetch)

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves either the old file or the new one, never a mix."""
        faiss = _faiss()
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- contents ----------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstones excluded)."""
        return int(self._index.ntotal) - self._dead

    @property
    def mapped(self) -> bool:
        return self._mapped is not None

    @property
    def tombstones(self) -> int:
        """Dead slots (HNSW's removed ids), skipped by every search."""
        return self._dead

    @property
    def slot_count(self) -> int:
        """Slots of the id map, tombstones included (the length of :meth:`slot_ids`)."""
        return int(self._index.ntotal)

    @property
    def slot_layout(self) -> object:
        """A token replaced whenever slots change (an add, a remove, a compaction, a reload):
        what is derived from the slots stays valid while the token ``is`` the same."""
        return self._layout

    @property
    def faiss_index(self) -> Any:
        """The FAISS index: an ``IndexIDMap2`` (flat, HNSW) or the IVF index itself (to read and
        search; write through :meth:`add` and :meth:`remove`)."""
        return self._index

    @property
    def nlist(self) -> int:
        """The number of inverted lists of an IVF index; 0 for the other kinds."""
        if self.kind != "ivfpq":
            return 0
        return int(self._index.nlist)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "vectors": self.ntotal,
            "tombstones": self._dead,
            "memory_mapped": self.mapped,
        }

    def slot_ids(self) -> np.ndarray:
        """``(slots,)`` int64 copy of the id map (``-1``: tombstone)."""
        faiss = _faiss()
        if self.kind != "ivfpq":
            return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)
        lists = self._index.invlists  # IVF: the ids of its lists, list after list
        out = np.empty(int(self._index.ntotal), np.int64)
        at = 0
        for no in range(int(self._index.nlist)):
            size = int(lists.list_size(no))
            if size:
                ptr = lists.get_ids(no)
                out[at : at + size] = faiss.rev_swig_ptr(ptr, size)
                lists.release_ids(no, ptr)
                at += size
        return out

    def ids(self) -> np.ndarray:
        """Sorted ``(N,)`` int64 ids held."""
        ids = self.slot_ids()
        return np.sort(ids[ids >= 0] if self._dead else ids)

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found ids (m,) int64, their slots (m,) int64)`` for the ``ids`` held."""
        if self._lookup is None:
            slots = self.slot_ids()
            order = np.argsort(slots, kind="stable")
            self._lookup = (order, slots[order])
        order, sorted_ids = self._lookup
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # the store's sets come sorted
            ids = np.unique(ids)
        ids = ids[ids >= 0]
        at = np.searchsorted(sorted_ids, ids)
        at_ok = np.minimum(at, max(len(sorted_ids) - 1, 0))
        found = (at < len(sorted_ids)) & (sorted_ids[at_ok] == ids) if len(sorted_ids) else at < 0
        return ids[found], order[at_ok[found]]

    def flat_index(self) -> Any | None:
        """The ``IndexFlat`` holding the exact vectors by slot (flat: the index; HNSW: its
        storage); ``None`` for IVF-PQ."""
        faiss = _faiss()
        if self.kind == "ivfpq":
            return None
        inner = faiss.downcast_index(self._index.index)
        if isinstance(inner, faiss.IndexHNSW):
            inner = faiss.downcast_index(inner.storage)
        return inner if isinstance(inner, faiss.IndexFlat) else None

    def storage(self) -> np.ndarray | None:
        """``(slots, D)`` float32 view of the exact vectors (flat, HNSW); ``None`` for IVF-PQ.
        Valid until the next add or remove (callers hold the index lock). Memory-mapped, the
        view may be unaligned (numpy then multiplies without BLAS: gather rows, or use FAISS)."""
        inner = self.flat_index()
        if inner is None or inner.ntotal == 0:
            return None if inner is None else np.zeros((0, self.dim), np.float32)
        n = int(inner.ntotal)
        return _faiss().rev_swig_ptr(inner.get_xb(), n * self.dim).reshape(n, self.dim)

    # -- writes ------------------------------------------------------------------------------

    def _own(self) -> None:
        """Make a memory-mapped index writable: reload the same file into memory (or copy)."""
        if self._mapped is None:
            return
        faiss = _faiss()
        path, stamp = self._mapped
        if path.exists() and _stamp(path) == stamp:
            index = faiss.read_index(str(path))
        else:  # the file was replaced since: copy what we have mapped
            index = faiss.deserialize_index(faiss.serialize_index(self._index))
        self._index = index
        self._mapped = None
        self._slots_changed()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``(N, D)`` L2-normalised float32 vectors under ``(N,)`` int64 ids."""
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(ids):
            raise ValueError(
                f"vectors must be ({len(ids)}, {self.dim}) float32, got shape {vectors.shape}"
            )
        self._own()
        self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        self._slots_changed()

    def remove(self, ids: np.ndarray) -> int:
        """Remove the ``(N,)`` int64 ids held; returns how many were."""
        if len(ids) == 0:
            return 0
        self._own()
        if self.kind != "hnsw":
            sel = _faiss().IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
            removed = int(self._index.remove_ids(sel))
            self._slots_changed()
            return removed
        found, slots = self.positions(np.asarray(ids))
        if len(found) == 0:
            return 0
        view = _faiss().rev_swig_ptr(self._index.id_map.data(), self._index.id_map.size())
        view[slots] = -1
        self._index.construct_rev_map()
        self._dead += len(found)
        self._slots_changed()
        if self._dead > COMPACT_FRACTION * self._index.ntotal:
            self._compact()
        return len(found)

    def _compact(self) -> None:
        """Rebuild the HNSW graph from its own live vectors (drops the tombstones)."""
        slots = self.slot_ids()
        live = np.flatnonzero(slots >= 0)
        storage = self.storage()
        assert storage is not None  # HNSW keeps flat storage
        vecs = np.ascontiguousarray(storage[live])
        spec = KindSpec(**{**self.spec.to_dict(), "kind": "hnsw"})
        self._index = build_faiss(spec, self.dim, len(live), [(slots[live], vecs)], progress=False)
        self._dead = 0
        self._slots_changed()

    def _slots_changed(self) -> None:
        self._lookup = None
        self._layout = object()

    # -- search ------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product for ``(Q, D)`` L2-normalised float32 queries.

        Returns ``(similarities (Q, k) float32, ids (Q, k) int64)``, best first, id ``-1`` where
        fewer than ``k`` vectors exist. ``allowed_ids`` (``(m,)`` int64, sorted or not) restricts
        the search to those ids and returns their best ``k`` (see :mod:`segindex.store.filtered`),
        ``k`` hits whenever ``k`` allowed vectors exist. Exact for flat; approximate ranking for
        HNSW / IVF-PQ, as good filtered as unfiltered.
        """
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be (Q, {self.dim}) float32, got shape {queries.shape}")
        faiss.cvar.distance_compute_blas_threshold = BLAS_MIN_QUERIES * self.dim
        live = self.ntotal
        k = max(1, min(k, live)) if live else 1
        if live == 0:
            return empty(len(queries), k)
        if allowed_ids is not None:
            return search_allowed(self, queries, k, self._allowed(allowed_ids))
        if self.kind == "flat":
            return self._index.search(queries, k)
        if k > min(ANN_MAX_K, ANN_MAX_K_FRACTION * live):  # a large share: scan it all
            return exhaustive(self, queries, k, None)
        return self.ann(queries, k)

    @property
    def reranks(self) -> bool:
        """Whether ANN candidates are re-scored exactly from the stored vectors (IVF-PQ with
        :attr:`fetch`)."""
        return self.kind == "ivfpq" and self.fetch is not None

    def rerank_depth(self, k: int) -> int:
        """IVF-PQ candidates re-ranked for ``k`` hits: ``max(rerank, 4 k)``."""
        return max(self.spec.rerank, 4 * k)

    def ann(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered ANN top-``k`` (tombstones skipped). HNSW's beam is at least ``2 k``;
        IVF-PQ re-ranks :meth:`rerank_depth` candidates exactly (when it can :attr:`fetch`)."""
        if not self.reranks:
            return self.candidates(queries, k)
        _, cand = self.candidates(queries, self.rerank_depth(k))
        return self.rerank(queries, cand, k)

    def candidates(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS' own top-``depth`` (HNSW: exact scores of an approximate walk; IVF-PQ: the
        ``nprobe`` nearest lists, quantised scores), ``(Q, depth)`` float32 / int64."""
        faiss = _faiss()
        params: Any
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=int(max(self.spec.ef_search, 2 * depth)))
        else:
            nprobe = max(1, min(self.nlist, self.spec.nprobe))
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            coarse = faiss.downcast_index(self._index.quantizer)
            if isinstance(coarse, faiss.IndexHNSW):  # the graph's beam holds nprobe lists
                quantizer = faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, 64))
                params.quantizer_params = quantizer
        if self._dead:
            params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.array([-1], np.int64)))
        return self._index.search(queries, depth, params=params)

    def rerank(
        self, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` of each row of ``candidates`` (``(Q, W)`` int64, ``-1``: none) for
        ``(Q, D)`` float32 queries, scored with the vectors :attr:`fetch` reads (ids it does not
        find are dropped); ``(similarities (Q, k) float32, ids (Q, k) int64)``, best first."""
        sims = self.exact_scores(queries, candidates)
        return top_k(sims, np.where(sims > NO_SIM, candidates, -1), k)

    def exact_scores(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``(Q, W)`` float32 exact inner products of ``(Q, D)`` queries with the stored
        vectors of ``candidates`` (``(Q, W)`` int64), read through :attr:`fetch` once per
        ``RERANK_BATCH`` pairs; ``NO_SIM`` where a candidate is ``-1`` or not found."""
        fetch = self.fetch
        if fetch is None:
            raise ValueError("re-ranking needs the stored vectors: this index has no fetch")
        out = np.full(candidates.shape, NO_SIM, np.float32)
        step = max(1, RERANK_BATCH // max(1, candidates.shape[1]))
        for s in range(0, len(queries), step):
            cand = candidates[s : s + step]
            ids, vecs = fetch(np.unique(cand[cand >= 0]))
            ids = np.asarray(ids, dtype=np.int64)
            if len(ids) == 0:
                continue
            vecs = np.asarray(vecs, dtype=np.float32)
            if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
                order = np.argsort(ids, kind="stable")
                ids, vecs = ids[order], vecs[order]
            at = np.minimum(np.searchsorted(ids, cand), len(ids) - 1)
            hit = (cand >= 0) & (ids[at] == cand)
            sims = np.take_along_axis(queries[s : s + step] @ vecs.T, at, axis=1)
            out[s : s + step] = np.where(hit, sims, NO_SIM)
        return out

    def _allowed(self, allowed: np.ndarray) -> AllowedSet:
        """``allowed`` prepared for search; the last one is kept while the same array comes
        again (the store hands out one shared read-only array per filter until its next write)."""
        cached = self._allowed_cache
        if cached is not None and cached[0] is allowed:
            return cached[1]
        prepared = AllowedSet(allowed)
        if not allowed.flags.writeable:  # only shared read-only arrays are worth keeping
            self._allowed_cache = (allowed, prepared)
        return prepared


_MADV_POPULATE_READ = 22


def _populate_read(addr: int, nbytes: int) -> int:
    """``madvise(MADV_POPULATE_READ)`` over ``[addr, addr + nbytes)``; 0 on success, else the
    errno (never raises)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        libc.madvise.restype = ctypes.c_int
        start = addr - addr % _mmap.PAGESIZE
        if libc.madvise(start, nbytes + (addr - start), _MADV_POPULATE_READ) == 0:
            return 0
        return ctypes.get_errno() or -1
    except (OSError, AttributeError):
        return -1


def _stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)
