"""The Ray engine against the local one, and the ceiling of its single writer.

    python benchmarks/bench_ray.py [--n 8] [--sizes tiny,real] [--workers 1,2] [--device cpu]
                                   [--pg-url URL] [--writer-rows 20000] [--no-results]

On this machine (no cluster: a local Ray instance, SQLite, as `--engine ray` without an address):

* the same N photos (bench_ingest's bundled photos) with the tiny random models (Mask2Former
  tiny at 64 px, the tiny CLIP) and the real-size ones (Mask2Former swin-tiny at 384 px,
  ViT-B-32; random weights): local engine, then Ray with 1 and 2 workers, each run into a fresh
  index. Images/s end to end, the overhead ratio Ray / local (at 1 worker: the same model
  compute, so the ratio is Ray's cost), and the split of a Ray run into its fixed start
  (actors start and load their models: time to the first commit) and its steady rate after.
  The local engine runs with one torch thread, like a Ray worker reserving one CPU (Ray sets
  ``OMP_NUM_THREADS`` to an actor's CPUs): the same compute per worker;
* the cluster start-up time (``ray.init`` of a local instance);
* the driver-side writer's sustained rate into PostgreSQL: region rows with their 512-d float32
  vectors, written as the Ray engine writes them (``Store.write(..., skip_done=True)`` of packed
  images, 16 per transaction: SQLAlchemy's insertmanyvalues), and the same rows by ``COPY`` (the
  ceiling of a bulk path; the writer does not use it).

Results are printed and, unless ``--no-results``, written as the Ray section of
benchmarks/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest  # noqa: E402
from bench_core_ingest import real_size_mask2former  # noqa: E402

SECTION = "## Ray engine"
PG_URL = os.environ.get("SEGINDEX_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def models(kind: str, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(segmenter options, embedder options)`` of the tiny or real-size random models."""
    if kind == "tiny":
        from segindex.testing.tiny_clip import save_tiny_open_clip
        from segindex.testing.tiny_models import save_tiny_mask2former

        seg = {"model": str(save_tiny_mask2former(work / "m2f-tiny")), "resolution": 64}
        return seg, {"model": f"local-dir:{save_tiny_open_clip(work / 'clip-tiny')}"}
    seg = {"model": str(real_size_mask2former(work / "m2f-real")), "resolution": 384}
    return seg, {"model": "ViT-B-32", "pretrained": None}


def one_run(
    work: Path, name: str, folder: Path, opts: tuple[dict, dict], runtime: Any, engine: Any
) -> dict[str, float]:
    """One ingest into a fresh index; end-to-end seconds and the time of the first commit."""
    from segindex import Index

    idx = Index.create(
        work / f"{name}.segindex",
        segmenter_options=opts[0],
        embedder_options=opts[1],
        runtime=runtime,
    )
    _ = idx.segmenter, idx.embedder  # the driver's models load before the clock starts
    first: list[float] = []

    def tick(p: Any) -> None:
        if p.done > 0 and not first:
            first.append(p.elapsed)

    import torch

    threads = torch.get_num_threads()
    if engine == "local":  # the local engine on the threads of one 1-CPU Ray worker
        torch.set_num_threads(1)
    try:
        report = idx.ingest(folder, engine=engine, progress=tick)
    finally:
        torch.set_num_threads(threads)
    idx.close()
    assert report.failed == 0, report.failures
    n, e2e = report.indexed, report.seconds
    first_s = first[0] if first else e2e
    batch = runtime.commit_every
    steady = (n - batch) / (e2e - first_s) if n > batch and e2e > first_s else float("nan")
    return {
        "seconds": round(e2e, 2),
        "images_per_s": round(n / e2e, 3),
        "first_commit_s": round(first_s, 2),
        "steady_images_per_s": round(steady, 3),
        "regions": report.regions,
    }


def engines(args: argparse.Namespace, folder: Path, work: Path) -> dict[str, Any]:
    import ray

    from segindex import RuntimeOptions
    from segindex.ingest.ray_engine import RayEngine

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    out["ray_start_s"] = round(time.perf_counter() - t0, 2)
    runtime = RuntimeOptions(device=args.device, commit_every=2, decode_workers=0)
    try:
        for kind in args.sizes:
            opts = models(kind, work)
            one_run(
                work, f"warm-{kind}", bench_ingest.photos(work / "warm", 2), opts, runtime, "local"
            )  # first-call costs paid outside the timed runs
            res = {"local": one_run(work, f"local-{kind}", folder, opts, runtime, "local")}
            for w in args.workers:
                engine = RayEngine(workers=w, batch_size=2)
                res[f"ray{w}"] = one_run(work, f"ray{w}-{kind}", folder, opts, runtime, engine)
            local = res["local"]["seconds"]
            for w in args.workers:
                res[f"ray{w}"]["ratio_to_local"] = round(res[f"ray{w}"]["seconds"] / local, 2)
            out[kind] = res
            print(kind, json.dumps(res), flush=True)
    finally:
        ray.shutdown()
    return out


def packed_images(n_rows: int, per_image: int, dim: int, rng: np.random.Generator) -> list[Any]:
    """Packed image writes (RLE rows + vectors) of ``per_image`` regions each, like a worker's."""
    from segindex.regions import Regions
    from segindex.store.sql import ImageWrite

    h, w = 480, 640
    masks = np.zeros((per_image, h, w), dtype=bool)
    for i in range(per_image):  # blobs of varied size and place: realistic RLE lengths
        y, x = rng.integers(0, h - 60), rng.integers(0, w - 60)
        masks[i, y : y + rng.integers(10, 60), x : x + rng.integers(10, 60)] = True
    regions = Regions.from_masks(
        masks,
        label_ids=list(range(per_image)),
        labels=[f"label{i}" for i in range(per_image)],
        scores=[0.9] * per_image,
        is_thing=[True] * per_image,
    )
    template = ImageWrite(
        path="x",
        sha256="x",
        width=w,
        height=h,
        regions=regions,
        kinds=["segment"] * per_image,
        vectors=np.zeros((per_image, dim), np.float32),
        crop={"pad": 0.1},
    )
    rows = template.packed().rows
    out = []
    for i in range(n_rows // per_image):
        v = rng.normal(size=(per_image, dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out.append(
            ImageWrite(
                path=f"/photos/{i:07d}.jpg",
                sha256=f"{i:064x}",
                width=w,
                height=h,
                rows=rows,
                kinds=template.kinds,
                vectors=v,
                crop=template.crop,
            )
        )
    return out


def writer(args: argparse.Namespace) -> dict[str, Any]:
    """Rows/s of the driver's idempotent writes, and of COPY, into a throwaway schema."""
    from sqlalchemy import create_engine, text

    from segindex.store.schema import regions
    from segindex.store.sql import Store, region_insert_rows

    schema = f"segindex_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.pg_url}?options=-csearch_path%3D{schema}"
    out: dict[str, Any] = {}
    try:
        store = Store(url, vectors_dir=Path(tempfile.mkdtemp(prefix=f"{schema}-vectors-")))
        images = packed_images(args.writer_rows, 25, 512, np.random.default_rng(0))
        rows = sum(w.count for w in images)
        t0 = time.perf_counter()
        for i in range(0, len(images), 16):
            store.write(images[i : i + 16], skip_done=True)
        s = time.perf_counter() - t0
        out["insertmanyvalues"] = {
            "rows": rows,
            "seconds": round(s, 2),
            "rows_per_s": round(rows / s),
        }
        # the same rows by COPY (text format; bytea as hex), one COPY per 16 images
        cols = [c.name for c in regions.c if c.name != "id"]
        image_id = store.image_id_for_path(images[0].path)
        raw = store.engine.raw_connection()
        t0 = time.perf_counter()
        try:
            cur = raw.cursor()
            for i in range(0, len(images), 16):
                buf = io.StringIO()
                for item in images[i : i + 16]:
                    for r in region_insert_rows(image_id, item):
                        buf.write("\t".join(_copy_value(r.get(c)) for c in cols) + "\n")
                buf.seek(0)
                cur.copy_expert(f"COPY segindex_regions ({', '.join(cols)}) FROM STDIN", buf)
                raw.commit()
        finally:
            raw.close()
        s = time.perf_counter() - t0
        out["copy"] = {"rows": rows, "seconds": round(s, 2), "rows_per_s": round(rows / s)}
        store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    print("writer", json.dumps(out), flush=True)
    return out


def _copy_value(v: Any) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bytes):
        return "\\\\x" + v.hex()
    if isinstance(v, bool):
        return "t" if v else "f"
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def markdown(res: dict[str, Any], args: argparse.Namespace, desc: str) -> str:
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [
        f"{SECTION} (bench_ray.py --n {args.n}; {day})",
        "",
        f"Machine: {desc}.",
        "",
        "| models | engine | images/s | seconds | ratio to local | first commit s | "
        "steady images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in args.sizes:
        for name, r in res[kind].items():
            lines.append(
                f"| {kind} | {name} | {r['images_per_s']} | {r['seconds']} | "
                f"{r.get('ratio_to_local', 1.0)} | {r['first_commit_s']} | "
                f"{r['steady_images_per_s']} |"
            )
    lines += ["", f"Local Ray start-up (`ray.init`): {res['ray_start_s']} s."]
    if "writer" in res:
        w = res["writer"]
        lines += [
            "",
            "Driver-side writer into PostgreSQL (25 regions per image, 512-d vectors, "
            "16 images per transaction):",
            "",
            "| path | rows | seconds | rows/s | target |",
            "|---|---|---|---|---|",
        ]
        for path in ("insertmanyvalues", "copy"):
            lines.append(
                f"| {path} | {w[path]['rows']} | {w[path]['seconds']} | "
                f"{w[path]['rows_per_s']} | >= 50,000 |"
            )
    lines += ["", "All figures: " + json.dumps(res)]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=8, help="number of photos")
    ap.add_argument("--sizes", default="tiny,real", help="tiny, real or both")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pg-url", default=PG_URL, help="PostgreSQL for the writer measure")
    ap.add_argument("--writer-rows", type=int, default=20_000, help="0 skips the writer")
    ap.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args()
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.workers = [int(w) for w in args.workers.split(",") if w]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    desc = bench_ingest.machine(args.device)
    print(f"machine: {desc}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        res = engines(args, bench_ingest.photos(work / "photos", args.n), work)
    if args.writer_rows > 0:
        res["writer"] = writer(args)
    text = markdown(res, args, desc)
    print(text)
    if not args.no_results:
        bench_ingest.SECTION = SECTION  # its section writer, for this section
        bench_ingest.write_results(text)


if __name__ == "__main__":
    main()
