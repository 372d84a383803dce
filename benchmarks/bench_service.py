"""Latency of ``POST /search`` (p50/p95) on an index of ~1,000 images, on CPU.

The embedder is real-size: open_clip ViT-B-32 with random weights (``pretrained=None``), so
every query pays the real text- or image-tower cost. The index rows are synthetic: running
1,000 images' crops through ViT-B-32 on a CPU takes far too long for a benchmark, so images,
region masks (random rectangles at 640x480) and L2-normalised random 512-d vectors are written
directly with ``Store.write`` and mirrored into the FAISS index from SQL. FAISS and SQL hold
what a real 1,000-image index holds (about 9 regions per image), but similarities are
meaningless. The segmenter is the fake one (not promptable), so a region query crops its box
with the index's crop policy and embeds it with ViT-B-32.

    python benchmarks/bench_service.py [--images 1000] [--queries 40] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LABELS = [
    "person", "car", "tree", "sky", "road", "building", "dog", "cat", "umbrella", "bicycle",
    "chair", "table", "grass", "water", "boat", "bird", "bottle", "cup", "wall", "floor",
]  # fmt: skip
TEXTS = [
    "a red umbrella", "a dog on the grass", "a blue car", "a person with a hat", "a cup of coffee",
    "a sailing boat", "a wooden chair", "a tall building", "a bicycle", "a bird in the sky",
]  # fmt: skip


def build(  # type: ignore[no-untyped-def]
    path: Path,
    n_images: int,
    seed: int = 0,
    embedder_options: dict | None = None,  # type: ignore[type-arg]
    runtime=None,  # segindex.config.RuntimeOptions; None: the default
):
    """An index of ``n_images`` synthetic images (rows and vectors written directly); the
    embedder is open_clip ``embedder_options`` (default: ViT-B-32, random weights)."""
    from segindex import Index
    from segindex.embed.base import l2_normalise
    from segindex.regions import Regions
    from segindex.store.sql import ImageWrite
    from segindex.testing.fakes import register_fakes

    register_fakes()
    idx = Index.create(
        path,
        segmenter="fake",
        embedder="open_clip",
        embedder_options=embedder_options or {"model": "ViT-B-32", "pretrained": None},
        runtime=runtime,
    )
    rng = np.random.default_rng(seed)
    h, w = 480, 640
    crop = idx.settings.crop.to_dict()
    batch: list[ImageWrite] = []
    for i in range(n_images):
        n = int(rng.integers(5, 12))
        masks = np.zeros((n + 1, h, w), dtype=bool)
        for j in range(n):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(20, w - x0)), y0 + int(rng.integers(20, h - y0))
            masks[j, y0:y1, x0:x1] = True
        masks[n] = True  # whole image
        labels = [LABELS[k] for k in rng.integers(0, len(LABELS), n)] + ["image"]
        regions = Regions.from_masks(
            masks,
            label_ids=list(range(n + 1)),
            labels=labels,
            scores=rng.uniform(0.3, 1.0, n + 1),
            is_thing=rng.random(n + 1) < 0.7,
        )
        batch.append(
            ImageWrite(
                path=f"/synthetic/{i // 100:02d}/img_{i:05d}.jpg",
                sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                width=w,
                height=h,
                regions=regions,
                kinds=["segment"] * n + ["image"],
                vectors=l2_normalise(rng.standard_normal((n + 1, idx.dim))),
                crop=crop,
            )
        )
        if len(batch) == 50 or i == n_images - 1:
            idx.store.write(batch)
            batch = []
    vectors = idx.vectors  # brings FAISS up to date with what SQL holds
    assert np.array_equal(vectors.ids(), idx.store.region_ids())
    return idx


def timed(client, n: int, request) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t = time.perf_counter()
        r = request(client, i)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
    return out


def summary(ms: list[float]) -> dict[str, float]:
    q = np.percentile(ms, [50, 95])
    return {"p50_ms": round(float(q[0]), 1), "p95_ms": round(float(q[1]), 1), "n": len(ms),
            "mean_ms": round(statistics.fmean(ms), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results") / "service.json"
    )
    args = parser.parse_args()

    import torch
    from fastapi.testclient import TestClient
    from PIL import Image

    from segindex.service import create_app

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        idx = build(Path(tmp) / "bench.segindex", args.images)
        build_s = time.perf_counter() - t0
        counts = idx.store.counts()
        rng = np.random.default_rng(1)
        photo = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=90)
        upload = buf.getvalue()

        def text(c, i):  # type: ignore[no-untyped-def]
            return c.post("/search", json={"text": TEXTS[i % len(TEXTS)] + f" {i}", "k": 20})

        def text_filtered(c, i):  # type: ignore[no-untyped-def]
            body = {"text": TEXTS[i % len(TEXTS)] + f" (filtered {i})", "k": 20,
                    "group_by_image": True,
                    "filters": {"labels": ["dog", "cat"], "min_score": 0.5}}  # fmt: skip
            return c.post("/search", json=body)

        def text_next_page(c, i):  # type: ignore[no-untyped-def]
            # the text of `text` query i again, second page: its embedding is cached
            body = {"text": TEXTS[i % len(TEXTS)] + f" {i}", "k": 20, "offset": 20}
            return c.post("/search", json=body)

        def region(c, i):  # type: ignore[no-untyped-def]
            x0, y0 = 20 + i * 7 % 300, 30 + i * 5 % 200
            query = {"region": {"box": [x0, y0, x0 + 200, y0 + 150]}, "k": 20}
            return c.post("/search", files={"image": ("q.jpg", upload, "image/jpeg")},
                          data={"query": json.dumps(query)})  # fmt: skip

        def similar(c, i):  # type: ignore[no-untyped-def]
            return c.post("/search", json={"similar_to": 1 + i * 37, "k": 20})

        results = {}
        with TestClient(create_app(idx)) as client:
            for fn in (text, region, similar):  # warm-up: model load, first-call costs
                fn(client, 0)
            results["text"] = summary(timed(client, args.queries, text))
            results["text_filtered_grouped"] = summary(timed(client, args.queries, text_filtered))
            results["text_next_page_cached"] = summary(timed(client, args.queries, text_next_page))
            results["region_box_upload_640x480"] = summary(timed(client, args.queries, region))
            results["similar_to_region"] = summary(timed(client, args.queries, similar))
        idx.close()
    report = {
        "index": {**counts, "build_s": round(build_s, 1)},
        "embedder": "open_clip ViT-B-32, random weights (pretrained=None), fp32, CPU",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "post_search": results,
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
