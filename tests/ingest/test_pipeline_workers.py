"""Decode worker processes: the same index, row for row and vector for vector, whether images are
decoded inline (``decode_workers=0``) or prefetched by spawned workers; failures recorded the same;
workers never outlive a SIGKILLed ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex import RuntimeOptions
from segindex.errors import ConfigError
from segindex.ingest import decode_one
from segindex.testing.fakes import draw_scene


@pytest.fixture
def mixed(photos: Path) -> Path:
    """The conftest scenes plus failures spread over several batches of two."""
    (photos / "a_broken.jpg").write_bytes(b"not an image at all")
    big = draw_scene([("red", (10, 10, 200, 150))], size=(300, 400))
    Image.fromarray(big).save(photos / "m_too_large.png")
    (photos / "z_empty.png").write_bytes(b"")
    for i in range(3):
        shapes = [("blue", (5 + 10 * i, 5, 60 + 10 * i, 50)), ("green", (70, 20, 110, 70))]
        Image.fromarray(draw_scene(shapes, size=(96, 128))).save(photos / f"s{i}.png")
    return photos


def snapshot(idx) -> tuple[object, ...]:  # type: ignore[no-untyped-def]
    rows = sorted(
        (Path(r.path).name, r.kind, r.label, r.x0, r.y0, r.x1, r.y1, r.area)
        for r in idx.store.iter_regions()
    )
    by_id = {
        r.id: (Path(r.path).name, r.kind, r.label, r.x0, r.y0) for r in idx.store.iter_regions()
    }
    vectors = {}
    for ids, vecs in idx.store.iter_vectors():
        for i, v in zip(ids, vecs, strict=True):
            vectors[by_id[int(i)]] = np.asarray(v)
    return rows, vectors, idx.store.counts()


def ingest(make_index, folder: Path, name: str, workers: int):  # type: ignore[no-untyped-def]
    runtime = RuntimeOptions(commit_every=2, max_pixels=60_000, decode_workers=workers)
    idx = make_index(name, runtime=runtime)
    report = idx.ingest([folder])
    return idx, report


def test_workers_give_identical_results(make_index, mixed: Path) -> None:
    idx0, r0 = ingest(make_index, mixed, "inline.segindex", 0)
    idx1, r1 = ingest(make_index, mixed, "workers.segindex", 1)
    assert r0.seen == r1.seen == 10
    assert (r1.indexed, r1.failed, r1.regions) == (r0.indexed, r0.failed, r0.regions)
    assert r0.indexed == 7 and r0.failed == 3
    names = lambda r: sorted((Path(p).name, why) for p, why in r.failures)  # noqa: E731
    assert names(r1) == names(r0)
    assert {n for n, _ in names(r0)} == {"a_broken.jpg", "m_too_large.png", "z_empty.png"}
    rows0, vec0, counts0 = snapshot(idx0)
    rows1, vec1, counts1 = snapshot(idx1)
    assert rows1 == rows0 and counts1 == counts0
    assert vec1.keys() == vec0.keys()
    for key, v in vec0.items():
        np.testing.assert_array_equal(vec1[key], v)
    # "decode" is the waiting time: recorded, never negative
    assert r1.stage_seconds["decode"] >= 0.0 and r1.stage_seconds["segment"] > 0.0


def test_decode_one_returns_reason_not_raises(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    assert isinstance(decode_one(str(bad), None), str)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(good)
    out = decode_one(str(good), None)
    assert isinstance(out, np.ndarray) and out.shape == (4, 5, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("workers", [-1, -5])
def test_negative_workers_rejected(workers: int) -> None:
    with pytest.raises(ConfigError, match="decode_workers must be >= 0"):
        RuntimeOptions(decode_workers=workers)


ORPHAN = textwrap.dedent(
    """
    import os, sys, time
    from segindex.ingest.prefetch import Prefetcher as _Prefetcher
    if __name__ == "__main__":
        pre = _Prefetcher(1, None)
        futures = pre.submit([(sys.argv[1], "x")])
        futures[0].result()
        print(*[p.pid for p in pre._pool._processes.values()], flush=True)
        time.sleep(600)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_workers_exit_when_ingest_is_killed(tmp_path: Path) -> None:
    img = tmp_path / "one.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(img)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert pids
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"decode workers {alive} outlived their killed parent"
    proc.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- resizing in the workers: the segmenter's preprocessor ------------------------------------


@pytest.fixture(scope="module")
def tiny_m2f(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_models import save_tiny_mask2former

    return save_tiny_mask2former(tmp_path_factory.mktemp("m2f") / "mask2former")


def _panoptic(model: Path):  # type: ignore[no-untyped-def]
    from segindex.segment.panoptic import PanopticSegmenter

    return PanopticSegmenter(str(model), device="cpu", resolution=64)


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.masks, y.masks)
        np.testing.assert_array_equal(x.scores, y.scores)
        assert list(x.labels) == list(y.labels)


def test_panoptic_preprocessor_gives_exactly_the_segmenters_own_input(tiny_m2f: Path) -> None:
    import pickle

    seg = _panoptic(tiny_m2f)
    prepare = seg.preprocessor()
    assert prepare is not None
    prepare = pickle.loads(pickle.dumps(prepare))  # what a spawned worker receives
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, shape, dtype=np.uint8)
        for shape in [(96, 128, 3), (80, 60, 3), (96, 128, 3)]
    ]
    prepared = [prepare(im) for im in images]
    assert all(p.dtype == np.float32 and p.ndim == 3 and p.shape[0] == 3 for p in prepared)
    assert prepared[0].shape[1:] != (96, 128)  # resized to the inference size
    own = seg.segment(images, batch_size=3)
    _same(seg.segment(images, batch_size=3, prepared=prepared), own)
    _same(seg.segment(images, batch_size=3, prepared=[prepared[0], None, prepared[2]]), own)
    with pytest.raises(ValueError, match="2 prepared inputs for 3 images"):
        seg.segment(images, prepared=prepared[:2])


def test_backends_without_preprocessor_ignore_prepared() -> None:
    from segindex.testing.fakes import FakeSegmenter

    seg = FakeSegmenter()
    assert seg.preprocessor() is None
    img = draw_scene([("red", (10, 10, 50, 40))])
    _same(seg.segment([img], prepared=["anything"]), seg.segment([img]))


def test_workers_prepare_the_segmenter_input(tiny_m2f: Path, tmp_path: Path) -> None:
    """With decode workers, batches after the first reach the segmenter prepared (resized and
    normalised in the worker), and the index is identical to one built inline."""
    from segindex import Index

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        size = (96, 128, 3) if i % 2 else (80, 60, 3)
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "x_broken.png").write_bytes(b"nope")
    results = {}
    for workers in (0, 1):
        seg = _panoptic(tiny_m2f)
        seen: list[bool] = []
        inner = seg._segment_batch
        seg._segment_batch = lambda ims, prepared=None, _i=inner, _s=seen: (  # type: ignore[method-assign]
            _s.extend(p is not None for p in (prepared or [None] * len(ims))) or _i(ims, prepared)
        )
        runtime = RuntimeOptions(commit_every=2, decode_workers=workers)
        with Index.create(
            tmp_path / f"w{workers}", segmenter="fake", embedder="fake", runtime=runtime
        ) as idx:
            idx.models.loaded_segmenter = seg
            report = idx.ingest(folder)
            assert (report.indexed, report.failed) == (5, 1) and report.regions > 0
            results[workers] = (snapshot(idx)[0], seen)
    assert results[1][0] == results[0][0]  # same rows, masks' boxes and areas
    assert not any(results[0][1])  # inline: the segmenter prepares every image itself
    assert results[1][1][:2] == [False, False] and all(results[1][1][2:])  # batch 0 is inline
