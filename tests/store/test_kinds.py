"""Index kinds (flat, HNSW, IVF-PQ): the auto rule, exactness/recall, filtered search that
returns k hits (the best k: tests/store/test_filtered_search.py), HNSW tombstones, memory-mapped
loading, batch search."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from segindex.errors import ConfigError
from segindex.store import filtered
from segindex.store import vectors as vmod
from segindex.store.kinds import KindSpec
from segindex.store.vectors import VectorIndex

DIM = 16


def clustered(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """``(n, dim)`` unit vectors around 20 Gaussian centres (SyntheticDataset-like)."""
    centres = np.random.default_rng(0).standard_normal((20, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


N = 2_000
IDS = np.arange(N, dtype=np.int64) * 3 + 7  # not 0..N-1, so id mapping is exercised
X = clustered(N, 1)
Q = clustered(20, 2)


def exact(q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    keep = np.ones(N, bool) if allowed is None else np.isin(IDS, allowed)
    sims = q @ X[keep].T
    return IDS[keep][np.argsort(-sims, axis=1, kind="stable")[:, :k]]


def build(kind: str, n: int = N, x: np.ndarray = X, ids: np.ndarray = IDS, **kw) -> VectorIndex:
    spec = KindSpec(kind=kind, **kw)  # type: ignore[arg-type]
    return VectorIndex.build(DIM, spec, n, [(ids[:700], x[:700]), (ids[700:n], x[700:n])])


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, want, strict=True)]))


@pytest.mark.parametrize(
    "spec,n,kind",
    [
        (KindSpec(), 0, "flat"),
        (KindSpec(), 99_999, "flat"),
        (KindSpec(), 100_000, "hnsw"),
        (KindSpec(), 1_999_999, "hnsw"),
        (KindSpec(), 2_000_000, "ivfpq"),
        (KindSpec(kind="flat"), 5_000_000, "flat"),
        (KindSpec(kind="hnsw"), 0, "hnsw"),
        (KindSpec(kind="ivfpq"), 9_000, "flat"),  # too few to train: flat until enough
        (KindSpec(kind="ivfpq"), 20_000, "ivfpq"),  # 512 lists x 39
        (KindSpec(kind="ivfpq", factory="IVF16,PQ8"), 9_984, "ivfpq"),  # 256 centroids x 39
        (KindSpec(kind="ivfpq", factory="IVF16,PQ8x4"), 624, "ivfpq"),  # 16 centroids x 39
        (KindSpec(flat_max=10, hnsw_max=20), 15, "hnsw"),
        (KindSpec(factory="HNSW16,Flat"), 5, "hnsw"),
    ],
)
def test_auto_rule(spec: KindSpec, n: int, kind: str) -> None:
    assert spec.target(n, 512) == kind


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"kind": "annoy"}, "index kind must be one of"),
        ({"ef_search": 0}, "ef_search must be >= 1"),
        ({"flat_max": 10, "hnsw_max": 5}, "below flat_max"),
        ({"factory": "LSH"}, "segindex builds Flat"),
    ],
)
def test_bad_specs_are_refused(kw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        KindSpec(**kw).target(10, 16)


def test_spec_round_trips_and_ignores_unknown_keys() -> None:
    spec = KindSpec(kind="hnsw", ef_search=64)
    assert KindSpec.from_dict({**spec.to_dict(), "future": 1}) == spec
    assert KindSpec.from_dict(None) == KindSpec()


@pytest.mark.parametrize(
    "kind,kw,min_recall",
    [
        ("flat", {}, 1.0),
        ("hnsw", {}, 0.95),
        ("ivfpq", {"factory": "IVF16,PQ8x4", "nprobe": 8}, 0.35),
    ],
)
def test_each_kind_holds_ids_and_finds_neighbours(kind, kw, min_recall) -> None:
    vi = build(kind, **kw)
    assert vi.kind == kind and vi.ntotal == N
    np.testing.assert_array_equal(vi.ids(), IDS)
    sims, got = vi.search(Q, 10)
    assert recall(got, exact(Q, 10)) >= min_recall
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("n_allowed", [3, 40, 1_500])
def test_filtered_search_returns_k_exact_hits(kind: str, n_allowed: int, monkeypatch) -> None:
    vi = build(kind)
    allowed = np.sort(np.random.default_rng(n_allowed).choice(IDS, n_allowed, replace=False))
    k = 10
    sims, got = vi.search(Q, k, allowed_ids=allowed)
    want = exact(Q, k, allowed)
    for row, truth in zip(got, want, strict=True):
        assert set(row[row >= 0]) <= set(allowed.tolist())
        assert (row >= 0).sum() == min(k, n_allowed)  # k hits whenever k exist
        if n_allowed <= filtered.EXACT_MIN_IDS or kind == "flat":
            assert set(row[row >= 0]) == set(truth)  # small sets are scored exactly
    # the ANN path (forced): HNSW with a very selective filter still returns the best k
    monkeypatch.setattr(filtered, "EXACT_MIN_IDS", 0)
    monkeypatch.setattr(filtered, "EXACT_MAX_IDS", 0)
    _, got = vi.search(Q, k, allowed_ids=allowed)
    assert all((row >= 0).sum() == min(k, n_allowed) for row in got)
    assert all(set(row[row >= 0]) <= set(allowed.tolist()) for row in got)
    assert recall([r[r >= 0] for r in got], want) >= 0.95


def test_ivfpq_filtered_small_set_uses_exact_vectors() -> None:
    n = N
    x, ids = X, np.arange(1, n + 1, dtype=np.int64)
    vi = build("ivfpq", n, x, ids, factory="IVF16,PQ8x4")
    assert vi.kind == "ivfpq"
    allowed = ids[::100]
    vi.fetch = lambda want: (want, x[np.asarray(want) - 1])
    sims, got = vi.search(Q, 5, allowed_ids=allowed)
    keep = np.isin(ids, allowed)
    want = ids[keep][np.argsort(-(Q @ x[keep].T), axis=1, kind="stable")[:, :5]]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(sims, np.sort(Q @ x[keep].T, axis=1)[:, ::-1][:, :5], rtol=1e-5)
    vi.fetch = None  # without exact vectors: every list probed, still only allowed ids
    _, got = vi.search(Q, 5, allowed_ids=allowed)
    assert all(set(r) <= set(allowed.tolist()) and len(set(r)) == 5 for r in got)


def test_hnsw_remove_tombstones_survive_save_and_compact(tmp_path: Path) -> None:
    vi = build("hnsw")
    gone = IDS[:100]
    assert vi.remove(np.append(gone, 99_999)) == 100  # unknown ids are ignored
    assert vi.ntotal == N - 100 and vi.describe()["tombstones"] == 100
    np.testing.assert_array_equal(vi.ids(), IDS[100:])
    _, got = vi.search(X[:50], 5)  # the removed vectors themselves as queries
    assert not np.isin(got, gone).any() and (got >= 0).all()
    path = tmp_path / "v.faiss"
    vi.save(path)
    again = VectorIndex.load(path, DIM, spec=vi.spec)
    np.testing.assert_array_equal(again.ids(), IDS[100:])
    assert again.ntotal == N - 100
    _, got = again.search(X[:50], 5)
    assert not np.isin(got, gone).any()
    # past a quarter dead, the graph is rebuilt without them
    again.remove(IDS[100:600])
    assert again.describe()["tombstones"] == 0 and again.ntotal == N - 600
    np.testing.assert_array_equal(again.ids(), IDS[600:])
    assert recall(again.search(Q, 10)[1], exact(Q, 10, IDS[600:])) >= 0.95


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_mmap_load_then_write_is_safe(kind: str, tmp_path: Path) -> None:
    vi = build(kind)
    path = tmp_path / "v.faiss"
    vi.save(path)
    mapped = VectorIndex.load(path, DIM)
    assert mapped.mapped and mapped.kind == kind
    for a, b in zip(vi.search(Q, 5), mapped.search(Q, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    vi.save(path)  # the file is replaced under the mapping: the first write copies what is mapped
    mapped.add(np.array([1, 2], np.int64), X[:2])
    mapped.remove(IDS[:1])
    assert not mapped.mapped and mapped.ntotal == N + 1
    assert VectorIndex.load(path, DIM, mmap=False).ntotal == N


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise populate is Linux")
def test_mapped_vectors_are_populated_in_the_background(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "v.faiss"
    build("hnsw").save(path)
    calls: list[tuple[int, int, int]] = []
    done = threading.Event()

    def spy(addr: int, nbytes: int) -> int:
        calls.append((addr, nbytes, real(addr, nbytes)))
        done.set()
        return calls[-1][2]

    real = vmod._populate_read
    monkeypatch.setattr(vmod, "_populate_read", spy)
    mapped = VectorIndex.load(path, DIM)
    assert done.wait(10)
    storage = mapped.storage()
    assert calls == [(storage.ctypes.data, N * DIM * 4, 0)]  # the whole mapping, no error
    assert not VectorIndex.load(path, DIM, mmap=False).mapped and len(calls) == 1
    _, got = mapped.search(Q, 5)
    np.testing.assert_array_equal(got, build("hnsw").search(Q, 5)[1])
    assert vmod._populate_read(0, 4096) != 0  # an unmapped range: an errno, never a crash


def test_large_k_on_hnsw_is_exact_and_batch_equals_single() -> None:
    flat, hnsw = build("flat"), build("hnsw")
    s1, i1 = flat.search(Q, 500)
    s2, i2 = hnsw.search(Q, 500)  # a quarter of the index: scanned exactly
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5)
    batch = clustered(64, 5)
    bs, bi = flat.search(batch, 10)
    for j in (0, 31, 63):
        ss, si = flat.search(batch[j : j + 1], 10)
        np.testing.assert_array_equal(si[0], bi[j])
        np.testing.assert_allclose(ss[0], bs[j], rtol=1e-5)
    import faiss

    assert faiss.cvar.distance_compute_blas_threshold == vmod.BLAS_MIN_QUERIES * DIM
