"""Index kinds: how the FAISS file organises the vectors, and the rule that picks one by size.

flat    exact inner product over every vector (``IndexFlatIP``). Search is one memory-bound scan:
        ~150 ms per query at 1M x 512 on 2 cores, but batches use BLAS.
hnsw    graph search (``IndexHNSWFlat``, inner product, ``M`` links per node). Sub-millisecond to a
        few ms per query at 1M; recall@10 0.98 at 1M with ``ef_construction`` 100 and
        ``ef_search`` 128 (0.85 with FAISS' default ef_construction 40); keeps the full vectors
        (its ``storage`` is a flat index), so exact re-scoring of a subset is free. FAISS cannot
        remove from HNSW: removed ids are tombstoned (see :mod:`segindex.store.vectors`).
ivfpq   inverted lists over product-quantised codes (factory ``IVF{nlist},PQ{m}``), trained on
        a random sample of the stored vectors, **re-ranked exactly**: FAISS returns the
        ``max(rerank, 4 k)`` best candidates by their quantised scores, their stored vectors are
        fetched (``VectorIndex.fetch``: the float16 copies of the vector segments) and scored
        exactly, the best ``k`` are returned with exact inner products (comparable with flat /
        HNSW scores). ~136 bytes a vector in the lists (128-byte code + 8-byte id) instead of
        ~2.1 KB; the lists are memory-mapped on open.

IVF-PQ defaults, measured (issue 19; /work/notes/issue19_ivf_measure.py: ``VectorIndex`` with a
float16 ``fetch``, 1M clustered 512-d vectors of benchmarks/bench_search.py, 100 held-out
queries against brute force over the float32 originals; 2 shared AMD EPYC cores):

    IVF1024,PQ128 (nlist = 2^round(log2 sqrt n), pq_m = dim / 4), trained on 200k, 10 k-means
    iterations: train 201 s, add 55 s (the machine was shared: load 4-6 on 2 cores)
    recall@10 re-ranking   0 (codes only)  50     100    200    400
    nprobe 16, 32 and 64   0.412           0.827  0.935  0.981  0.993
    file 138.6 bytes a vector

    so pq_m = dim / 4 (the issue's PQ64 needed 400 candidates for 0.948), rerank 200, nprobe 32
    (16 already saturates at 1M; 10M has 4x the lists for 10x the vectors). nlist stays near
    sqrt(n) (10M: 4096, 50M: 8192) because the build is bound by assigning every vector to its
    list: 100k vectors took 2.0 s against 1024 centroids and 6.1 s against 4096 (flat, BLAS), so
    4 sqrt(n) (16384 at 10M) would cost ~40 min of assignment alone, and k-means over 39 x 16384
    points ~30 min. An HNSW graph over the centroids (``coarse="hnsw"``,
    ``IVF{nlist}_HNSW32,PQ{m}``) assigned those 100k in 5.6 s (1024) and 5.0 s (4096): not worth
    its approximate assignment here, so the coarse quantiser is flat by default. Recall at a
    fixed ``rerank`` falls as the collection grows denser; raise ``rerank`` (``reindex --set
    rerank=400``) if the 10M measurement asks for it.

FAISS ids are SQL region ids for all kinds: flat and HNSW sit inside ``IndexIDMap2``; IVF-PQ
holds the ids in its inverted lists (``add_with_ids``). An ``IndexIDMap``/``IndexIDMap2`` over
IVF returns wrong ids after a removal (IVF does not renumber the positions the map translates;
measured with FAISS 1.15), and its reverse map costs ~50 bytes a vector in RAM.

The ``auto`` rule (:meth:`KindSpec.target`), evaluated on the number of stored vectors ``n``
whenever the index is built from the store (create, reindex, repair, rebuild of a stale file) and
after each ingest:

    n <  flat_max (100k)     -> flat   (exact, and a scan of 100k x 512 takes ~15 ms)
    n <  hnsw_max (2M)       -> hnsw   (2M x 512 float32 = 4 GB plus ~0.5 GB of graph in RAM)
    otherwise                -> ivfpq  (re-ranked; ~136 bytes a vector, lists memory-mapped)

An ``ivfpq`` index (chosen or asked for) needs enough vectors to train: with fewer than
:meth:`KindSpec.ivf_min_vectors` it is built flat, and becomes IVF-PQ after the ingest or reindex
that brings enough vectors. Vectors added later to a trained IVF-PQ index are encoded with the
existing codebooks (retrain with ``segindex reindex``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from segindex.errors import ConfigError
from segindex.progress import progress as progress_bar

Kind = Literal["flat", "hnsw", "ivfpq"]
KindChoice = Literal["auto", "flat", "hnsw", "ivfpq"]
KINDS: tuple[str, ...] = ("flat", "hnsw", "ivfpq")
CHOICES: tuple[str, ...] = ("auto", *KINDS)
META_KEY = "vector_index"
COARSE: tuple[str, ...] = ("flat", "hnsw")
#: links per node and beam width of the HNSW graph over the IVF centroids
COARSE_HNSW_M = 32
COARSE_HNSW_EF = 64


def _faiss() -> ModuleType:
    import faiss

    return faiss


@dataclass(frozen=True)
class KindSpec:
    """Which index kind to build and its parameters; stored in the index (``vector_index``).

    kind:            ``auto`` (by size, see the module doc), ``flat``, ``hnsw`` or ``ivfpq``
    factory:         a FAISS factory string used instead of the defaults (e.g. ``HNSW64,Flat``,
                     ``IVF4096,PQ64``); always inner product, always wrapped in ``IndexIDMap2``
    flat_max/hnsw_max: the ``auto`` thresholds (number of vectors)
    hnsw_m, ef_construction, ef_search: HNSW links per node and beam widths
    nlist, pq_m, nprobe: IVF lists (0: by size, :meth:`ivf_lists`), PQ sub-vectors (0: dim / 4,
                     one byte per 4 dimensions), lists searched per query
    rerank:          IVF-PQ candidates (per query) re-scored exactly from the stored vectors
    coarse:          IVF coarse quantiser: ``hnsw`` (a graph over the centroids: assigning 10M
                     vectors costs a graph search each, not a scan of every centroid) or ``flat``
    train_sample:    vectors drawn at random to train IVF-PQ (at least 39 per list are used)
    kmeans_iter:     k-means iterations training the IVF centroids
    """

    kind: KindChoice = "auto"
    factory: str | None = None
    flat_max: int = 100_000
    hnsw_max: int = 2_000_000
    hnsw_m: int = 32
    ef_construction: int = 100
    ef_search: int = 128
    nlist: int = 0
    pq_m: int = 0
    nprobe: int = 32
    train_sample: int = 200_000
    rerank: int = 200
    coarse: str = "flat"
    kmeans_iter: int = 10

    def __post_init__(self) -> None:
        if self.kind not in CHOICES:
            raise ConfigError(f"index kind must be one of {list(CHOICES)}, got {self.kind!r}")
        if self.factory is not None and (not isinstance(self.factory, str) or not self.factory):
            raise ConfigError(
                f"factory must be a non-empty FAISS factory string, got {self.factory!r}"
            )
        if self.coarse not in COARSE:
            raise ConfigError(f"coarse must be one of {list(COARSE)}, got {self.coarse!r}")
        ints = (
            "flat_max",
            "hnsw_max",
            "hnsw_m",
            "ef_construction",
            "ef_search",
            "nprobe",
            "rerank",
            "kmeans_iter",
        )
        for name in (*ints, "nlist", "pq_m", "train_sample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name in ints:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nlist < 0 or self.pq_m < 0 or self.train_sample < 1:
            raise ConfigError("nlist and pq_m must be >= 0 (0: automatic), train_sample >= 1")
        if self.hnsw_max < self.flat_max:
            raise ConfigError(f"hnsw_max {self.hnsw_max} is below flat_max {self.flat_max}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> KindSpec:
        if not d:
            return cls()
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    # -- the rule -----------------------------------------------------------------------------

    def chosen(self, n: int) -> Kind:
        """The kind asked for (``auto`` resolved by size), before the training-size fallback."""
        if self.kind != "auto":
            return self.kind
        if self.factory is not None:
            return kind_of_factory(self.factory)
        if n < self.flat_max:
            return "flat"
        return "hnsw" if n < self.hnsw_max else "ivfpq"

    def target(self, n: int, dim: int) -> Kind:
        """The kind an index of ``n`` vectors of ``dim`` is built as."""
        kind = self.chosen(n)
        if kind == "ivfpq" and n < self.ivf_min_vectors(n, dim):
            return "flat"
        return kind

    def ivf_lists(self, n: int) -> int:
        """``nlist``, or by size: the power of two nearest ``sqrt(n)`` (1M: 1024, 10M: 4096,
        50M: 8192), 16 to 65,536; see the module doc for why not more."""
        return self.nlist or int(min(65_536, max(16, 2 ** round(math.log2(math.sqrt(n + 1))))))

    def ivf_min_vectors(self, n: int, dim: int) -> int:
        """Fewest vectors that train IVF-PQ well: 39 per coarse list and per PQ centroid."""
        lists = self.ivf_lists(n)
        found = re.match(r"\s*IVF(\d+)", self.factory or "", re.I)
        if found:
            lists = int(found.group(1))
        bits = re.search(r"PQ\d+x(\d+)", self.factory or "", re.I)
        return 39 * max(lists, 2 ** int(bits.group(1)) if bits else 256)

    def factory_string(self, kind: Kind, n: int, dim: int) -> str:
        if self.factory is not None and kind_of_factory(self.factory) == kind:
            return self.factory
        if kind == "flat":
            return "Flat"
        if kind == "hnsw":
            return f"HNSW{self.hnsw_m},Flat"
        m = self.pq_m or _pq_m(dim)
        coarse = f"_HNSW{COARSE_HNSW_M}" if self.coarse == "hnsw" else ""
        return f"IVF{self.ivf_lists(n)}{coarse},PQ{m}"


def _pq_m(dim: int) -> int:
    """Largest sub-vector count <= dim / 4 that divides dim (PQ needs dim % m == 0): one byte
    of code per 4 dimensions (512-d: 128 bytes)."""
    m = max(1, dim // 4)
    while dim % m:
        m -= 1
    return m


def kind_of_factory(factory: str) -> Kind:
    head = factory.split(",")[0].strip().upper()
    if head.startswith("HNSW"):
        return "hnsw"
    if head.startswith("IVF"):
        return "ivfpq"
    if factory.strip().lower() == "flat":
        return "flat"
    raise ConfigError(
        f"factory {factory!r}: segindex builds Flat, HNSW<M>,... or IVF<nlist>,... indexes"
    )


def kind_of(index: Any) -> Kind:
    """The kind of a FAISS index (inside its ``IndexIDMap2``, or a bare IVF)."""
    faiss = _faiss()
    inner = faiss.downcast_index(index.index if hasattr(index, "id_map") else index)
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVF):
        return "ivfpq"
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    raise ConfigError(f"unsupported FAISS index type {type(inner).__name__}")


def new_faiss_index(spec: KindSpec, kind: Kind, n: int, dim: int) -> Any:
    """An empty index of ``kind``: flat and HNSW in an ``IndexIDMap2``, IVF-PQ bare (it holds
    the ids itself) and still untrained."""
    faiss = _faiss()
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw" and spec.factory is None:
        inner = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = spec.ef_construction
    else:
        factory = spec.factory_string(kind, n, dim)
        try:
            inner = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as e:
            raise ConfigError(f"FAISS cannot build factory {factory!r}: {e}") from e
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efConstruction = spec.ef_construction
        if isinstance(inner, faiss.IndexIVFPQ):  # polysemous codes are never searched here,
            inner.do_polysemous_training = False  # and training them took 28 s of 29 at 20k
        if isinstance(inner, faiss.IndexIVF):
            inner.cp.niter = spec.kmeans_iter
            coarse = faiss.downcast_index(inner.quantizer)
            if isinstance(coarse, faiss.IndexHNSW):
                coarse.hnsw.efConstruction = COARSE_HNSW_EF
                coarse.hnsw.efSearch = COARSE_HNSW_EF
            return inner
    return faiss.IndexIDMap2(inner)  # the Python wrapper keeps ``inner`` alive


def build(
    spec: KindSpec,
    dim: int,
    n: int,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    sample: Callable[[int], np.ndarray] | None = None,
    *,
    progress: bool = True,
) -> Any:
    """A FAISS index of ``spec.target(n, dim)`` holding every ``(ids (m,) int64, vectors (m, D)
    L2-normalised float32)`` chunk. IVF-PQ is first trained on ``sample(k)`` (``(k, D)`` float32
    drawn at random from the stored vectors) or, without ``sample``, on the first chunks.

    progress: a bar on stderr for the train and add phases when stderr is a terminal
    (:mod:`segindex.progress`); ``False``: never."""
    kind = spec.target(n, dim)
    index = new_faiss_index(spec, kind, n, dim)

    def bar(description: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return progress_bar(description, total) if progress else nullcontext(lambda _n: None)

    it = iter(chunks)
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    if kind == "ivfpq":
        inner = _faiss().downcast_index(index)
        want = min(n, max(spec.train_sample, 39 * int(inner.nlist)))
        if sample is not None:
            train = sample(want)
        else:
            got = 0
            for c in it:
                pending.append(c)
                got += len(c[0])
                if got >= want:
                    break
            train = np.concatenate([v for _, v in pending])[:want]
        with bar(f"train {spec.factory_string(kind, n, dim)}", len(train)) as advance:
            _train_ivf(inner, np.ascontiguousarray(train, dtype=np.float32))
            advance(len(train))
    with bar(f"add to {kind}", n) as advance:
        for ids, vecs in itertools.chain(pending, it):
            index.add_with_ids(
                np.ascontiguousarray(vecs, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )
            advance(len(ids))
    return index


def _train_ivf(inner: Any, train: np.ndarray) -> None:
    """Train an IVF index on ``(k, D)`` float32. k-means assigns with an exact (BLAS) scan of
    the centroids even when the coarse quantiser is a graph: an HNSW graph would be rebuilt at
    every iteration and assign approximately."""
    faiss = _faiss()
    exact = None
    if isinstance(faiss.downcast_index(inner.quantizer), faiss.IndexHNSW):
        exact = faiss.IndexFlatIP(inner.d)
        inner.clustering_index = exact  # FAISS does not own it: ``exact`` is held here
    try:
        inner.train(train)
    finally:
        if exact is not None:
            inner.clustering_index = None
