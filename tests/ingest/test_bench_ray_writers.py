"""The Datasink writer shape of benchmarks/bench_ray_writers.py: its task body writes every image
once into PostgreSQL and a repeated task (Ray's at-least-once retry) changes nothing. Runs the
task body on Arrow blocks directly (no Ray instance: seconds); skips without PostgreSQL or ray."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.pg import fresh_schema

pytest.importorskip("ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _blocks(n_rows: int) -> tuple[list[object], list[bytes]]:
    import pyarrow as pa
    from bench_ray import packed_images

    images = packed_images(n_rows, 5, 8, np.random.default_rng(0))
    blobs = [pickle.dumps(w.packed(), protocol=5) for w in images]
    # two blocks of uneven size: one spans two transactions of 16 images, one is partial
    return [pa.table({"write": blobs[:20]}), pa.table({"write": blobs[20:]})], blobs


def test_sink_writes_each_image_once_and_a_retry_changes_nothing() -> None:
    from bench_ray_writers import region_count, sink_write, vectors_dir

    from segindex.store.sql import Store

    blocks, blobs = _blocks(150)  # 30 images of 5 regions
    with fresh_schema() as url:
        Store(url, vectors_dir=vectors_dir(url)).close()
        assert sink_write(url, blocks) == 150
        assert region_count(url) == 150
        assert sink_write(url, blocks) == 0  # the same task run again
        assert sink_write(url, blocks[1:]) == 0  # or a part of it
        assert region_count(url) == 150
        store = Store(url, vectors_dir=vectors_dir(url))
        try:
            ids = {store.image_id_for_path(f"/photos/{i:07d}.jpg") for i in range(len(blobs))}
        finally:
            store.close()
        assert None not in ids and len(ids) == 30


def test_sink_is_a_ray_datasink_that_sums_its_tasks() -> None:
    from bench_ray_writers import PgRegionSink
    from ray.data import Datasink
    from ray.data.datasource.datasink import WriteResult

    sink = PgRegionSink("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    assert isinstance(sink, Datasink)
    sink.on_write_complete(WriteResult(num_rows=3, size_bytes=0, write_returns=[100, 25, 0]))
    assert sink.inserted == 125
