"""The vector segment files: encodings, append order, committed extent, stale tails, orphans,
tombstones and compaction (SQL registers what is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex.store.sql import Store
from segindex.store.vector_files import as_stored, decode, encode


def unit(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("dtype", "cosine"), [("float32", 1.0), ("float16", 0.9999), ("int8", 0.999)]
)
def test_encodings_round_trip_within_their_precision(dtype: str, cosine: float) -> None:
    x = unit(200, 512)
    back = decode(encode(x, dtype), dtype)
    assert back.dtype == np.float32 and back.shape == x.shape
    assert (np.sum(back * x, axis=1) >= cosine - 1e-6).all()
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    bytes_per_row = {"float32": 2048, "float16": 1024, "int8": 516}[dtype]
    assert encode(x, dtype).nbytes == bytes_per_row * len(x)


def store_at(tmp_path: Path, dtype: str = "float16") -> Store:
    s = Store(f"sqlite:///{tmp_path / 'meta.sqlite'}")
    s.set_meta("vector_dtype", dtype)
    s.vectors.dtype = dtype  # what Store.transaction sets from the setting
    return s


def append(store: Store, ids: np.ndarray, vecs: np.ndarray, *, commit: bool = True) -> None:
    """Append straight to the segment files; the rows count is committed or not."""
    with store.engine.begin() as conn:
        out = store.vectors.appender(conn, vecs.shape[1])
        out.append(ids, vecs)
        out.flush()
        if commit:
            store.vectors.commit(conn, out)
        out.close()
        if not commit:
            conn.rollback()


def test_only_committed_rows_are_read_and_a_stale_tail_is_dropped(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    x = unit(10)
    append(store, np.arange(1, 6), x[:5])
    append(store, np.arange(6, 11), x[5:], commit=False)  # flushed, never committed
    ids, vecs = store.vectors.get(np.arange(1, 11), 16)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(vecs, as_stored(x[:5], "float16"))
    live = np.arange(1, 6)
    assert store.vectors.stale(live).tail_rows == 5
    append(store, np.arange(6, 9), x[5:8])  # the next writer truncates the tail first
    assert store.vectors.stale(np.arange(1, 9)).tail_rows == 0
    assert store.vectors.get(np.arange(1, 11), 16)[0].tolist() == list(range(1, 9))


def test_ids_must_ascend_past_what_the_segment_holds(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    append(store, np.arange(1, 4), unit(3))
    with pytest.raises(ValueError, match="ascend"):
        append(store, np.array([3, 4]), unit(2))
    with pytest.raises(ValueError, match="ascend"):
        append(store, np.array([9, 8]), unit(2))


def test_orphans_are_reported_and_clean_compacts_tombstones(tmp_path: Path) -> None:
    store = store_at(tmp_path, "float32")
    x = unit(40)
    append(store, np.arange(1, 41), x)
    (store.vectors.path / "deadbeef.vec").write_bytes(b"\0" * 64)  # never registered
    live = np.arange(1, 41)[::2]  # half the regions deleted: tombstones
    stale = store.vectors.stale(live)
    assert stale.orphan_files == ["deadbeef.vec"] and stale.dead_rows == 20
    store.vectors.clean(live)
    assert not store.vectors.stale(live).any
    assert not (store.vectors.path / "deadbeef.vec").exists()
    ids, vecs = store.vectors.get(np.arange(1, 41), 16)
    assert ids.tolist() == live.tolist()
    np.testing.assert_array_equal(vecs, x[live - 1])
    assert [p.suffix for p in sorted((store.vectors.path).iterdir())] == [".ids", ".vec"]


def test_int8_index_stores_half_a_kilobyte_a_vector(tmp_path: Path) -> None:
    store = store_at(tmp_path, "int8")
    x = unit(100, 512)
    append(store, np.arange(1, 101), x)
    (seg,) = store.vectors.segments()
    assert seg.dtype == "int8" and seg.rows == 100
    assert (store.vectors.path / f"{seg.name}.vec").stat().st_size == 100 * 516
    _, back = store.vectors.get(np.arange(1, 101), 512)
    assert (np.sum(back * x, axis=1) > 0.999).all()
