"""The two writer shapes of the Ray engine, isolated from the models (issue 13 part 3).

    python benchmarks/bench_ray_writers.py [--rows 20000] [--repeats 2] [--workers 2]
                                           [--pg-url URL]

A Ray Data pipeline over N synthetic packed image writes (``packed_images()`` of bench_ray.py:
25 region rows of 512-d float32 vectors per image, pickled as a worker returns them), through
``map_batches`` (an identity pass on ``workers`` CPU tasks: the blocks a model stage would hand
on), then either

* ``driver``: the driver consumes ``iter_batches(batch_size=16)`` and calls
  ``Store.write(batch, skip_done=True)`` per 16 images: the shape the engine uses;
* ``sink``: ``ds.write_datasink(PgRegionSink(url))``: each write task opens its own
  :class:`~segindex.store.sql.Store` on the worker and calls ``Store.write(..., skip_done=True)``
  per 16 images.

Each shape writes into a fresh throwaway PostgreSQL schema (dropped after); the shapes alternate
``repeats`` times. After the last sink run the same dataset is written through the sink again and
the region count must not change (a retried write task changes nothing). Rows/s are end to end:
from building the dataset to the last commit, after one small untimed pass of each shape (worker
start-up and imports). Results are printed as JSON and a markdown table
(RESULTS.md is edited by hand: the Ray section's generator is bench_ray.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ray import PG_URL, packed_images  # noqa: E402

PER_TXN = 16  # images per SQL transaction, both shapes


class PgRegionSink:
    """Factory of the ``ray.data.Datasink`` subclass (ray is imported only when one is made).

    ``PgRegionSink(url)`` returns a datasink whose ``write(blocks, ctx)`` (Ray 2.60 signature)
    opens one :class:`Store` per write task and writes the blocks' ``write`` column (pickled packed
    :class:`~segindex.store.sql.ImageWrite`, one per row) with ``Store.write(..., skip_done=True)``,
    ``PER_TXN`` images per transaction; it returns the number of region rows it inserted, and the
    driver-side ``on_write_complete`` sums them into ``inserted``.
    """

    def __new__(cls, url: str) -> Any:  # type: ignore[misc]
        from ray.data import Datasink

        class _PgRegionSink(Datasink[int]):
            def __init__(self, url: str) -> None:
                self.url = url
                self.inserted = 0

            def write(self, blocks: Iterable[Any], ctx: Any) -> int:
                return sink_write(self.url, blocks)

            def on_write_complete(self, write_result: Any) -> None:
                self.inserted = sum(write_result.write_returns)

            def get_name(self) -> str:
                return "PgRegion"

        return _PgRegionSink(url)


def vectors_dir(url: str) -> Path:
    """The vector segment files of the store at ``url`` (one folder per schema, in the temp
    directory every task of this one-machine cluster sees)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"segindex-bench-ray-writers-{digest}"


def sink_write(url: str, blocks: Iterable[Any]) -> int:
    """The sink's task body: region rows inserted from ``blocks`` (Arrow/pandas blocks with a
    ``write`` column of pickled packed writes); a repeat of the same blocks inserts 0."""
    from ray.data.block import BlockAccessor

    from segindex.ingest.ray_worker import unpack
    from segindex.store.sql import Store

    store = Store(url, vectors_dir=vectors_dir(url))
    inserted = 0
    try:
        for block in blocks:
            blobs = BlockAccessor.for_block(block).to_numpy("write")
            for i in range(0, len(blobs), PER_TXN):
                batch = [unpack(b) for b in blobs[i : i + PER_TXN]]
                inserted += len(store.write(batch, skip_done=True).added_ids)
    finally:
        store.close()
    return inserted


def _identity(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return batch


def dataset(blobs: list[bytes], workers: int) -> Any:
    """``from_items`` of the pickled writes (``workers`` blocks per worker) mapped by an identity
    ``map_batches`` on 1-CPU tasks."""
    import ray.cloudpickle
    import ray.data

    if __name__ != "__main__":  # imported (a test): workers cannot import this file by name
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ds = ray.data.from_items([{"write": b} for b in blobs], override_num_blocks=4 * workers)
    return ds.map_batches(_identity, batch_size=PER_TXN, batch_format="numpy", num_cpus=1)


def drive(url: str, blobs: list[bytes], workers: int) -> int:
    """The driver shape: ``iter_batches`` and one ``Store.write`` per ``PER_TXN`` images."""
    from segindex.ingest.ray_worker import unpack
    from segindex.store.sql import Store

    store = Store(url, vectors_dir=vectors_dir(url))
    inserted = 0
    try:
        for out in dataset(blobs, workers).iter_batches(
            batch_size=PER_TXN, batch_format="numpy", prefetch_batches=1
        ):
            writes = [unpack(b) for b in out["write"]]
            inserted += len(store.write(writes, skip_done=True).added_ids)
    finally:
        store.close()
    return inserted


def sink(url: str, blobs: list[bytes], workers: int) -> int:
    """The sink shape: ``write_datasink``; region rows inserted by all write tasks."""
    sink_ = PgRegionSink(url)
    dataset(blobs, workers).write_datasink(sink_)
    return int(sink_.inserted)


@contextmanager
def schema(pg_url: str) -> Iterator[str]:
    """A URL on a new empty schema (its tables made once here, not by racing workers)."""
    from sqlalchemy import create_engine, text

    from segindex.store.sql import Store

    name = f"segindex_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    url = f"{pg_url}?options=-csearch_path%3D{name}"
    try:
        Store(url, vectors_dir=vectors_dir(url)).close()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def region_count(url: str) -> int:
    from sqlalchemy import func, select

    from segindex.store.schema import regions
    from segindex.store.sql import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(regions)).scalar_one())
    finally:
        engine.dispose()


def compare(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    images = packed_images(args.rows, 25, 512, np.random.default_rng(0))
    rows = sum(w.count for w in images)
    blobs = [pickle.dumps(w.packed(), protocol=5) for w in images]
    shapes = {"driver": drive, "sink": sink}
    out: dict[str, Any] = {"rows": rows, "runs": {k: [] for k in shapes}}
    ray.init(
        num_cpus=args.workers,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        for fn in shapes.values():  # worker start, imports, first plan: paid outside the clock
            with schema(args.pg_url) as url:
                fn(url, blobs[: 4 * PER_TXN], args.workers)
        for rep in range(args.repeats):
            for name, fn in shapes.items():
                with schema(args.pg_url) as url:
                    t0 = time.perf_counter()
                    inserted = fn(url, blobs, args.workers)
                    s = time.perf_counter() - t0
                    stored = region_count(url)
                    if inserted != rows or stored != rows:
                        raise RuntimeError(
                            f"{name}: {inserted} inserted, {stored} stored of {rows}"
                        )
                    if name == "sink" and rep == args.repeats - 1:
                        again = sink(url, blobs, args.workers)  # every task "retried"
                        out["sink_rewrite"] = {"inserted": again, "stored": region_count(url)}
                        if again != 0 or region_count(url) != rows:
                            raise RuntimeError(f"sink rewrite not idempotent: {out}")
                run = {"seconds": round(s, 2), "rows_per_s": round(rows / s)}
                out["runs"][name].append(run)
                print(name, rep, json.dumps(run), flush=True)
    finally:
        ray.shutdown()
    for name, runs in out["runs"].items():
        out[name] = max(r["rows_per_s"] for r in runs)
    return out


def markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| shape | rows | seconds per repeat | rows/s per repeat | best rows/s |",
        "|---|---|---|---|---|",
    ]
    for name, runs in res["runs"].items():
        secs = ", ".join(str(r["seconds"]) for r in runs)
        rates = ", ".join(f"{r['rows_per_s']:,}" for r in runs)
        lines.append(f"| {name} | {res['rows']} | {secs} | {rates} | {res[name]:,} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=20_000, help="region rows per run (25 per image)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating repeats per shape")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray instance")
    ap.add_argument("--pg-url", default=PG_URL)
    args = ap.parse_args()
    if args.rows < 25 or args.repeats < 1 or args.workers < 1:
        ap.error("--rows >= 25, --repeats >= 1, --workers >= 1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    res = compare(args)
    print(json.dumps(res))
    print(markdown(res, args))


if __name__ == "__main__":
    main()
