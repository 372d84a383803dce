"""SQL store (SQLite in tmp_path) and the FAISS vector index, with exact expectations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from segindex import rle as rle_codec
from segindex.regions import Regions
from segindex.store.sql import ImageWrite, Store
from segindex.store.vector_files import as_stored
from segindex.store.vectors import VectorIndex

H, W, D = 12, 16, 5


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def rand_vectors(n: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).normal(size=(n, D)))


def rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def image_write(path: str, boxes: list[tuple[int, int, int, int]], seed: int, **kw) -> ImageWrite:
    """An image with one rectangular region per box (labels r0, r1, ...) and random vectors."""
    n = len(boxes)
    regions = Regions.from_masks(
        np.stack([rect(*b) for b in boxes]) if n else np.zeros((0, H, W), bool),
        label_ids=list(range(n)),
        labels=[f"r{i}" for i in range(n)],
        scores=[0.5 + i / 10 for i in range(n)],
        is_thing=[i % 2 == 0 for i in range(n)],
    )
    kw.setdefault("kinds", ["segment"] * n)
    kw.setdefault("vectors", rand_vectors(n, seed))
    return ImageWrite(
        path=path,
        sha256=f"sha-{path}-{seed}",
        width=W,
        height=H,
        regions=regions,
        crop={"margin": 0.1},
        **kw,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Every store test runs on SQLite and on a real PostgreSQL server (skipped if none); vectors
    are stored as float32 so they round-trip bit-exactly (float16, the default, has its tests)."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'meta.db'}")
        s.set_meta("vector_dtype", "float32")
        yield s
        s.close()
        return
    from tests.pg import fresh_schema

    with fresh_schema() as url:
        s = Store(url, vectors_dir=tmp_path / "vectors")
        s.set_meta("vector_dtype", "float32")
        yield s
        s.close()


def all_vectors(store: Store, chunk: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(store.iter_vectors(chunk=chunk))
    if not chunks:
        return np.zeros(0, np.int64), np.zeros((0, D), np.float32)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


A_BOXES = [(0, 0, 4, 3), (5, 2, 16, 12), (0, 0, W, H)]
B_BOXES = [(1, 1, 2, 2), (3, 4, 9, 10)]


def write_two(store: Store):  # type: ignore[no-untyped-def]
    a = image_write("a.png", A_BOXES, seed=1, kinds=["segment", "segment", "image"])
    b = image_write("b.png", B_BOXES, seed=2)
    return a, b, store.write([a, b])


def test_write_batch_ids_in_order_and_vectors_round_trip(store: Store) -> None:
    store.set_meta("vector_dtype", "float16")
    a, b, res = write_two(store)
    assert res.added_ids.dtype == np.int64
    assert res.added_ids.tolist() == [1, 2, 3, 4, 5]
    assert res.removed_ids.tolist() == []
    written = np.concatenate([a.vectors, b.vectors])
    stored = as_stored(written, "float16")  # the default: float16, read back L2-normalised
    np.testing.assert_array_equal(res.added_vectors, stored)  # what FAISS gets = what reads back
    assert (np.sum(stored * written, axis=1) > 0.9999).all()
    # paging: chunk 2 -> 2 + 2 + 1, ordered by id, the stored vectors exactly
    chunks = list(store.iter_vectors(chunk=2))
    assert [c[0].tolist() for c in chunks] == [[1, 2], [3, 4], [5]]
    assert all(c[1].dtype == np.float32 and c[1].shape[1] == D for c in chunks)
    ids, vecs = all_vectors(store, chunk=2)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    assert vecs.tobytes() == stored.tobytes()
    assert store.region_ids().tolist() == [1, 2, 3, 4, 5]
    assert store.region_ids(kind="image").tolist() == [3]
    assert store.region_ids(kind="segment").tolist() == [1, 2, 4, 5]


def test_region_rows_fields_exact(store: Store) -> None:
    a, b, res = write_two(store)
    rows = store.region_rows(res.added_ids)
    assert sorted(rows) == [1, 2, 3, 4, 5]
    expected = [("a.png", a.regions, i) for i in range(3)]
    expected += [("b.png", b.regions, i) for i in range(2)]
    for rid, (path, regions, i) in zip(res.added_ids.tolist(), expected, strict=True):
        row = rows[rid]
        assert row.path == path and (row.width, row.height) == (W, H)
        assert row.label == f"r{i}" and row.label_id == i
        assert row.score == pytest.approx(float(regions.scores[i]))
        assert row.is_thing is bool(regions.is_thing[i])
        assert (row.x0, row.y0, row.x1, row.y1) == tuple(float(v) for v in regions.boxes[i])
        assert row.area == int(regions.masks[i].sum())
        mask = rle_codec.decode({"size": [row.height, row.width], "counts": row.rle})
        np.testing.assert_array_equal(mask, regions.masks[i])
        assert json.loads(row.crop) == {"margin": 0.1}
        assert not hasattr(row, "vector")
    assert [rows[i].kind for i in (1, 2, 3, 4, 5)] == ["segment", "segment", "image"] + [
        "segment"
    ] * 2


def test_region_rows_is_one_query(store: Store) -> None:
    _, _, res = write_two(store)
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        rows = store.region_rows(np.array([5, 1, 3, 999], dtype=np.int64))
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert len(statements) == 1, statements
    assert sorted(rows) == [1, 3, 5]  # unknown ids are simply absent
    assert store.region_rows([]) == {}


def test_replacing_an_image_removes_its_old_regions(store: Store) -> None:
    write_two(store)
    new_a = image_write("a.png", [(2, 2, 6, 6)], seed=3)
    res = store.write([new_a])
    assert res.removed_ids.tolist() == [1, 2, 3]
    assert res.added_ids.tolist() == [6]
    ids, vecs = all_vectors(store)
    assert ids.tolist() == [4, 5, 6]
    np.testing.assert_array_equal(vecs[2], new_a.vectors[0])
    states = store.image_states()
    assert set(states) == {"a.png", "b.png"}
    assert states["a.png"].id == 1 and states["a.png"].sha256 == "sha-a.png-3"
    assert store.counts() == {
        "images_indexed": 2,
        "images_failed": 0,
        "regions": 3,
        "whole_image_regions": 0,
    }
    (row,) = [r for r in store.indexed_images() if r.path == "a.png"]
    assert row.n_regions == 1


def test_failed_image_write_and_failed_images(store: Store) -> None:
    write_two(store)
    res = store.write(
        [
            ImageWrite(path="b.png", sha256="x", error="decode error: truncated"),
            ImageWrite(path="z.jpg", sha256=None, error="not an image"),
        ]
    )
    assert res.removed_ids.tolist() == [4, 5]  # b.png's old regions are gone
    assert res.added_ids.tolist() == []
    assert res.added_vectors.shape[0] == 0
    assert store.failed_images() == [
        ("b.png", "decode error: truncated"),
        ("z.jpg", "not an image"),
    ]
    states = store.image_states()
    assert states["b.png"].status == "failed" and states["z.jpg"].status == "failed"
    assert states["a.png"].status == "indexed"
    assert store.region_ids().tolist() == [1, 2, 3]
    assert store.counts() == {
        "images_indexed": 1,
        "images_failed": 2,
        "regions": 2,
        "whole_image_regions": 1,
    }
    assert [r.path for r in store.indexed_images()] == ["a.png"]


def test_image_with_no_regions_is_indexed_without_rows(store: Store) -> None:
    res = store.write([image_write("empty.png", [], seed=0)])
    assert res.added_ids.tolist() == []
    assert store.image_states()["empty.png"].status == "indexed"
    assert store.counts()["images_indexed"] == 1 and store.counts()["regions"] == 0


def test_counts_empty_store(store: Store) -> None:
    assert store.counts() == {
        "images_indexed": 0,
        "images_failed": 0,
        "regions": 0,
        "whole_image_regions": 0,
    }
    assert store.failed_images() == [] and store.image_states() == {}
    assert list(store.iter_vectors()) == []


def test_delete_images_and_ids_never_reused(store: Store) -> None:
    write_two(store)
    states = store.image_states()
    removed = store.delete_images([states["b.png"].id])  # b holds the highest ids (4, 5)
    assert sorted(removed.tolist()) == [4, 5]
    assert set(store.image_states()) == {"a.png"}
    assert store.region_ids().tolist() == [1, 2, 3]
    assert store.delete_images([12345]).tolist() == []
    # a new image (even at the same path) gets fresh region and image ids
    res = store.write(
        [image_write("b.png", B_BOXES, seed=4), image_write("c.png", [(0, 0, 1, 1)], seed=5)]
    )
    assert res.added_ids.tolist() == [6, 7, 8]
    new_states = store.image_states()
    assert new_states["b.png"].id == 3 and new_states["c.png"].id == 4
    # deleting everything still does not reset the counters
    store.delete_images([s.id for s in new_states.values()])
    assert store.counts()["regions"] == 0
    res = store.write([image_write("d.png", [(0, 0, 2, 2)], seed=6)])
    assert res.added_ids.tolist() == [9]


@pytest.mark.parametrize(
    "value",
    [
        {"segmenter": {"name": "fake", "options": {"min_fraction": 0.001}}, "dim": 13},
        [1, 2.5, "x", None, True],
        "plain string",
        0,
    ],
)
def test_meta_json_round_trip(store: Store, value) -> None:
    assert store.get_meta("settings") is None
    store.set_meta("settings", value)
    assert store.get_meta("settings") == value
    store.set_meta("settings", {"overwritten": True})
    assert store.get_meta("settings") == {"overwritten": True}
    assert store.get_meta("other") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"vectors": rand_vectors(1, 9)},  # 2 regions, 1 vector
        {"vectors": None},
        {"kinds": ["segment"]},  # 2 regions, 1 kind
    ],
    ids=["too-few-vectors", "no-vectors", "too-few-kinds"],
)
def test_mismatched_lengths_raise_and_roll_back(store: Store, bad) -> None:
    a, _, first = write_two(store)
    before = (store.counts(), store.image_states(), all_vectors(store))
    good = image_write("new.png", [(0, 0, 3, 3)], seed=7)
    broken = image_write("a.png", [(0, 0, 2, 2), (3, 3, 5, 5)], seed=8, **bad)  # replaces a.png
    with pytest.raises(ValueError, match=r"a.png: 2 regions need 2 vectors and kinds"):
        store.write([good, broken])
    # nothing of the batch was written: no new image, a.png keeps its old regions
    after = (store.counts(), store.image_states(), all_vectors(store))
    assert after[0] == before[0] and after[1] == before[1]
    np.testing.assert_array_equal(after[2][0], before[2][0])
    np.testing.assert_array_equal(after[2][1], before[2][1])
    assert "new.png" not in store.image_states()
    # and the store still works afterwards, with fresh ids
    res = store.write([good])
    assert res.added_ids.min() > first.added_ids.max()


def test_store_reopens_with_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    s = Store(url)
    _, _, res = write_two(s)
    s.set_meta("k", {"v": 1})
    s.close()
    s2 = Store(url)
    try:
        assert s2.region_ids().tolist() == res.added_ids.tolist()
        assert s2.get_meta("k") == {"v": 1}
    finally:
        s2.close()


# ---------------------------------------------------------------------------------------------
# VectorIndex

E = np.eye(4, dtype=np.float32)


def basis_index() -> VectorIndex:
    """ids 10..40 hold e0..e3 (added out of order); plus id 50 at (e0 + e1) / sqrt 2."""
    vi = VectorIndex(4)
    vi.add(np.array([30, 10], np.int64), E[[2, 0]])
    vi.add(np.array([20, 40, 50], np.int64), np.vstack([E[1], E[3], unit(E[0] + E[1])]))
    return vi


def test_add_search_exact() -> None:
    vi = basis_index()
    assert vi.ntotal == 5
    assert vi.ids().tolist() == [10, 20, 30, 40, 50]
    assert vi.ids().dtype == np.int64
    q = unit(np.array([[1.0, 0.2, 0.0, 0.0]]))
    sims, ids = vi.search(q, 3)
    assert ids.tolist() == [[10, 50, 20]]
    expected = np.array([[1.0, 1.2 / np.sqrt(2), 0.2]]) / np.linalg.norm([1.0, 0.2])
    np.testing.assert_allclose(sims, expected, rtol=1e-5)
    # several queries at once
    sims, ids = vi.search(E[[3, 2]], 1)
    assert ids.tolist() == [[40], [30]]
    np.testing.assert_allclose(sims, [[1.0], [1.0]], rtol=1e-6)


def test_k_is_clipped_to_size_and_empty_index() -> None:
    vi = basis_index()
    sims, ids = vi.search(E[:1], 100)
    assert ids.shape == (1, 5) and sorted(ids[0].tolist()) == [10, 20, 30, 40, 50]
    assert np.all(np.diff(sims[0]) <= 0)
    empty = VectorIndex(4)
    _, ids = empty.search(E[:1], 5)
    assert ids.tolist() == [[-1]]


def test_remove() -> None:
    vi = basis_index()
    assert vi.remove(np.array([10, 50, 999], np.int64)) == 2
    assert vi.remove(np.array([], np.int64)) == 0
    assert vi.ids().tolist() == [20, 30, 40]
    _, ids = vi.search(E[:1], 3)
    assert 10 not in ids and 50 not in ids


def test_allowed_ids_returns_k_even_if_least_similar() -> None:
    vi = basis_index()
    q = E[:1]  # most similar: 10, then 50; 30 and 40 are orthogonal (similarity 0)
    sims, ids = vi.search(q, 2, allowed_ids=np.array([30, 40], np.int64))
    assert sorted(ids[0].tolist()) == [30, 40]
    np.testing.assert_allclose(sims, [[0.0, 0.0]], atol=1e-6)
    sims, ids = vi.search(q, 2, allowed_ids=np.array([40, 50, 30], np.int64))
    assert ids[0, 0] == 50 and ids[0, 1] in (30, 40)
    # fewer allowed than k: the rest is -1
    _, ids = vi.search(q, 3, allowed_ids=np.array([20], np.int64))
    assert ids.tolist() == [[20, -1, -1]]


def test_save_load_round_trip_atomic(tmp_path: Path) -> None:
    vi = basis_index()
    path = tmp_path / "vectors.faiss"
    vi.save(path)
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss"]  # no .tmp left
    loaded = VectorIndex.load(path, 4)
    assert loaded.ids().tolist() == vi.ids().tolist()
    q = unit(np.random.default_rng(0).normal(size=(3, 4)))
    for a, b in zip(vi.search(q, 5), loaded.search(q, 5), strict=True):
        np.testing.assert_array_equal(a, b)
    # overwrite an existing file, still atomic and no leftovers
    loaded.remove(np.array([10], np.int64))
    loaded.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.faiss"]
    assert VectorIndex.load(path, 4).ids().tolist() == [20, 30, 40, 50]
    with pytest.raises(ValueError, match="vector index has dimension 4, expected 8"):
        VectorIndex.load(path, 8)


@pytest.mark.parametrize(
    "ids,vectors,match",
    [
        (
            np.array([1, 2]),
            np.zeros((2, 5), np.float32),
            r"must be \(2, 4\) float32, got shape \(2, 5\)",
        ),
        (np.array([1, 2]), np.zeros((3, 4), np.float32), r"got shape \(3, 4\)"),
        (np.array([1]), np.zeros(4, np.float32), r"got shape \(4,\)"),
    ],
)
def test_add_wrong_shape_raises(ids, vectors, match) -> None:
    vi = VectorIndex(4)
    with pytest.raises(ValueError, match=match):
        vi.add(ids, vectors)
    assert vi.ntotal == 0


@pytest.mark.parametrize("shape", [(1, 5), (4,), (2, 3)])
def test_search_wrong_dims_raises(shape) -> None:
    with pytest.raises(ValueError, match=r"queries must be \(Q, 4\) float32"):
        basis_index().search(np.zeros(shape, np.float32), 1)


def test_add_casts_float64_and_empty_add_is_noop() -> None:
    vi = VectorIndex(4)
    vi.add(np.array([], np.int64), np.zeros((0, 4)))
    assert vi.ntotal == 0
    vi.add(np.array([7]), E[:1].astype(np.float64))
    assert vi.ids().tolist() == [7]
