"""The Ray engine on a local multi-node cluster (head + 2 worker nodes of 1 CPU each) with the
real PostgreSQL and the deterministic fakes: the fault tests of issue 13.

(a) a worker node removed mid-run: the run finishes, every image exactly once;
(b) the driver SIGKILLed mid-run: the same command again resumes, nothing lost or duplicated;
(c) an image that makes the model raise: recorded as failed with its reason, the run goes on;
(d) the Ray engine's index equals the local engine's on the same input (a video included: one
    Ray task, its chunks committed by the worker, the same tracks).

One cluster for the whole module (it takes ~15 s to start on 2 cores); skipped without Ray or
PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segindex.testing.fakes import PALETTE, draw_scene
from segindex.testing.faulty import POISON_REASON, register_picky
from tests.pg import ensure_server, fresh_schema

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

N_IMAGES = 12
N_FILES = N_IMAGES + 1  # and one short video (a red square moving, a blue one still)
POISONED = "p03.png"  # the one image drawn with the poison colour (magenta)
SMALL_STORE = 80 * 2**20  # object store per node


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Head (no CPU: the actors land on the worker nodes) + 2 worker nodes of 1 CPU each; this
    process is connected as the driver. Skips (before starting anything) without PostgreSQL."""
    from ray.cluster_utils import Cluster

    ensure_server()

    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "object_store_memory": SMALL_STORE,
        },
    )
    for _ in range(2):
        c.add_node(num_cpus=1, object_store_memory=SMALL_STORE)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 tiny scenes, two shapes each (only POISONED shows magenta), and a 12-frame clip."""
    from segindex.testing.clips import write_clip

    root = tmp_path_factory.mktemp("ray") / "photos"
    root.mkdir()
    colours = [c for c in PALETTE if c not in ("magenta", "gray")]
    for i in range(N_IMAGES):
        first = "magenta" if f"p{i:02d}.png" == POISONED else colours[i % len(colours)]
        second = colours[(i + 3) % len(colours)]
        shapes = [(first, (4 + i, 6, 40 + i, 44)), (second, (60, 20 + i, 110, 80))]
        Image.fromarray(draw_scene(shapes, size=(64, 128))).save(root / f"p{i:02d}.png")
    write_clip(root / "clip.mkv", 12)
    return root


@pytest.fixture(scope="module")
def local_rows(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """The local engine's rows per image file name (SQLite), the reference for every test."""
    from segindex import Index

    register_picky()
    with Index.create(
        tmp_path_factory.mktemp("local") / "local.segindex", segmenter="picky", embedder="fake"
    ) as idx:
        report = idx.ingest(photos)
        assert report.indexed == N_FILES - 1 and report.failed == 1 and report.videos == 1
        return _rows_by_image(idx)


def _rows_by_image(idx: Any) -> dict[str, list[Any]]:
    """File name -> its regions ``(kind, label, score, box, area, rle, vector)`` sorted, read
    from SQL; failed images map to their ``("failed", reason)``."""
    out: dict[str, list[Any]] = {}
    vectors = idx.store.region_vectors(idx.store.region_ids().tolist())
    for r in idx.store.iter_regions():
        box = (r.x0, r.y0, r.x1, r.y1)
        row = (r.kind, r.label, r.score, box, r.area, r.rle, vectors[r.id])
        out.setdefault(Path(r.path).name, []).append(row)
    for path, reason in idx.store.failed_images():
        out[Path(path).name] = [("failed", reason)]
    return {k: sorted(v, key=lambda t: t[:2]) for k, v in out.items()}


def _assert_same(ray_rows: dict[str, list[Any]], local: dict[str, list[Any]]) -> None:
    assert sorted(ray_rows) == sorted(local)
    for name, rows in local.items():
        got = ray_rows[name]
        assert len(got) == len(rows), name  # no duplicate regions, none missing
        for a, b in zip(got, rows, strict=True):
            assert a[:-1] == b[:-1], name
            if a[0] != "failed":
                np.testing.assert_allclose(a[-1], b[-1], atol=1e-6)


@pytest.fixture
def pg_index(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A new index directory on a fresh PostgreSQL schema (slow picky segmenter)."""
    from segindex import Index

    register_picky()
    with fresh_schema() as url:
        path = tmp_path / "ray.segindex"
        Index.create(
            path,
            segmenter="picky",
            segmenter_options={"delay": 0.0},
            embedder="fake",
            db_url=url,
        ).close()
        yield path, url


def _open(path: Path, delay: float = 0.0) -> Any:
    from segindex import Index, RuntimeOptions

    return Index.open(
        path, segmenter_options={"delay": delay}, runtime=RuntimeOptions(commit_every=2)
    )


def test_ray_index_equals_local_and_a_poisoned_image_fails_alone(
    cluster: Any, photos: Path, local_rows: dict[str, list[Any]], pg_index: tuple[Path, str]
) -> None:
    """(c) and (d) in one Ray run: the poisoned image is recorded as failed with its reason,
    the others are indexed exactly as the local engine indexes them."""
    from segindex.ingest.ray_engine import RayEngine

    seen: list[Any] = []
    with _open(pg_index[0]) as idx:
        report = idx.ingest(photos, engine=RayEngine(workers=2, batch_size=2), progress=seen.append)
        assert report.indexed == N_FILES - 1 and report.failed == 1
        assert report.videos == 1 and report.frames > 0
        assert report.failures == [
            (str(photos / POISONED), f"segmentation failed: {POISON_REASON}")
        ]
        assert report.regions == sum(
            1 for rows in local_rows.values() for r in rows if r[0] == "segment"
        )
        assert seen[-1].done == N_FILES and seen[-1].total == N_FILES
        assert report.stage_seconds["segment"] > 0 and report.stage_seconds["write"] > 0
        assert idx.models.loaded_segmenter is None  # the driver never loaded a segmenter
        _assert_same(_rows_by_image(idx), local_rows)
        assert idx.check().clean  # the FAISS file holds exactly the SQL ids
        assert idx.vectors.ntotal == idx.store.region_count()
        again = idx.ingest(photos, engine=RayEngine(workers=2))  # nothing new: all skipped
        assert again.skipped == N_FILES and again.indexed == 0  # failed ones too


def test_sqlite_index_is_refused_on_the_multi_node_cluster(
    cluster: Any, photos: Path, tmp_path: Path
) -> None:
    from segindex import Index
    from segindex.errors import ConfigError
    from segindex.ingest.ray_engine import RayEngine

    register_picky()
    with Index.create(tmp_path / "lite.segindex", segmenter="fake", embedder="fake") as idx:
        with pytest.raises(ConfigError, match="SQLite must not be shared"):
            idx.ingest(photos, engine=RayEngine(workers=1))
        assert idx.store.counts()["images_indexed"] == 0


def _committed(url: str) -> int:
    from segindex.store.sql import Store

    store = Store(url)
    try:
        counts = store.counts()
        return counts["images_indexed"] + counts["images_failed"]
    finally:
        store.close()


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


DRIVER = textwrap.dedent(
    """
    import os, sys
    from segindex.testing.faulty import register_picky
    register_picky()
    from segindex import Index, RuntimeOptions
    from segindex.ingest.ray_engine import RayEngine
    idx = Index.open(sys.argv[1], segmenter_options={"delay": float(sys.argv[4])},
                     runtime=RuntimeOptions(commit_every=2))
    report = idx.ingest(sys.argv[2], engine=RayEngine(address=sys.argv[3], workers=2, batch_size=1))
    idx.close()
    print("DONE", report.indexed, report.failed, report.skipped, flush=True)
    """
)


def test_driver_killed_mid_run_resumes_with_nothing_lost_or_doubled(
    cluster: Any, photos: Path, local_rows: dict[str, list[Any]], pg_index: tuple[Path, str]
) -> None:
    """(b) SIGKILL the driver after some commits; the same command again finishes the rest."""
    path, url = pg_index
    cmd = [sys.executable, "-c", DRIVER, str(path), str(photos), cluster.address]
    first = subprocess.Popen([*cmd, "0.4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _committed(url) >= 2 or first.poll() is not None, 120, "commits")
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = _committed(url)
    assert 2 <= done_before < N_FILES
    second = subprocess.run([*cmd, "0"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    indexed, failed, skipped = map(int, second.stdout.split("DONE")[1].split())
    assert skipped == done_before and indexed + failed == N_FILES - done_before
    with _open(path) as idx:
        _assert_same(_rows_by_image(idx), local_rows)
        assert idx.check().clean


def test_worker_node_removed_mid_run_finishes_every_image_once(
    cluster: Any, photos: Path, local_rows: dict[str, list[Any]], pg_index: tuple[Path, str]
) -> None:
    """(a) remove a worker node (and its actor) while images are in flight."""
    from segindex.ingest.ray_engine import RayEngine

    path, url = pg_index
    worker_nodes = [n for n in cluster.worker_nodes]
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            with _open(path, delay=0.4) as idx:
                result["report"] = idx.ingest(photos, engine=RayEngine(workers=2, batch_size=1))
        except BaseException as e:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    _wait_for(lambda: _committed(url) >= 2 or not thread.is_alive(), 120, "commits")
    cluster.remove_node(worker_nodes[-1], allow_graceful=False)
    thread.join(240)
    cluster.add_node(num_cpus=1, object_store_memory=SMALL_STORE)  # back for later tests
    assert not thread.is_alive(), "the run did not finish after a node was removed"
    if "error" in result:
        raise result["error"]
    assert result["report"].failed == 1
    with _open(path) as idx:
        _assert_same(_rows_by_image(idx), local_rows)
        assert idx.check().clean
