"""Compiled CPU runtimes vs torch fp32 (issue 22): ``bench_ingest.py --runtimes ...`` runs this.

Real-size random models (Mask2Former Swin-T COCO-panoptic architecture at 384 px, open_clip
ViT-B-32 with seeded random weights saved to a checkpoint file), the bundled photos. Per
configuration (runtime + precision of the segmenter and of CLIP) and round, in turn (alternating
configurations, ``--repeats`` rounds; medians reported):

* segmentation stage: ``segmenter.segment`` over the decoded photos, batched as ingest batches;
* embedding stage: ``embedder.embed_images`` over one fixed set of crops (those of the torch fp32
  regions, so every configuration embeds the same pixels);
* end to end: ``Index.ingest`` of the folder into a fresh index with the configuration's models.

Then results against torch fp32 on the same photos: regions per photo (same count?), the lowest
per-region mask IoU, and the lowest cosine between vectors of the same crops. FLOPs of each model
are counted once with ``torch.utils.flop_counter`` on the torch modules (2 x multiply-adds of
matmuls and convolutions) at the shapes the photos produce; the machine's fp32 and bf16 ceilings
are torch matmul GFLOP/s (2048^3, all threads).

Exports are cached under ``--work``/compiled (the models are written there with fixed seeds, so a
second run finds them): ``--prepare`` only builds models and exports, to be run before the timed
run (exporting is not what is measured).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CONFIGS = {
    "torch fp32": ("torch", "fp32", "fp32"),
    "openvino fp32": ("openvino", "fp32", "fp32"),
    "openvino default (seg f32, CLIP bf16)": ("openvino", "fp32", "bf16"),
    "openvino bf16": ("openvino", "bf16", "bf16"),
}


def matmul_ceiling(dtype_name: str, n: int = 2048, reps: int = 8) -> float:
    """torch matmul GFLOP/s on this machine (``n``^3, best of ``reps``)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def save_clip_weights(path: Path) -> Path:
    """Seeded random ViT-B-32 weights as an open_clip checkpoint file (the same every run)."""
    import open_clip
    import torch

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
    torch.save(model.state_dict(), path)
    return path


def models(cfg: tuple[str, str, str], seg_dir: Path, clip_file: Path) -> tuple[Any, Any]:
    from segindex.embed.clip import OpenClipEmbedder
    from segindex.segment.panoptic import PanopticSegmenter

    runtime, seg_precision, emb_precision = cfg
    seg = PanopticSegmenter(
        str(seg_dir), device="cpu", resolution=384, runtime=runtime, precision=seg_precision
    )
    emb = OpenClipEmbedder(
        "ViT-B-32", str(clip_file), device="cpu", runtime=runtime, precision=emb_precision
    )
    return seg, emb


def flops(
    seg: Any, emb: Any, images: list[np.ndarray]
) -> tuple[dict[tuple[int, int], float], float]:
    """FLOPs of the segmenter's network per input shape, and of one CLIP image-tower pass."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    shapes: dict[tuple[int, int], float] = {}
    prep = seg.preprocessor()
    for im in images:
        pixels = torch.as_tensor(prep(im))[None]
        key = (int(pixels.shape[2]), int(pixels.shape[3]))
        if key in shapes:
            continue
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            seg.model(pixel_values=pixels)
        shapes[key] = float(fc.get_total_flops())
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        emb._clip.encode_image(torch.zeros(1, 3, 224, 224))
    return shapes, float(fc.get_total_flops())


def seg_flops(seg: Any, images: list[np.ndarray], per_shape: dict[tuple[int, int], float]) -> float:
    import torch

    prep = seg.preprocessor()
    total = 0.0
    for im in images:
        p = torch.as_tensor(prep(im))
        total += per_shape[(int(p.shape[1]), int(p.shape[2]))]
    return total


def compare(ref_regions: list[Any], regions: list[Any]) -> dict[str, Any]:
    same = sum(len(a) == len(b) for a, b in zip(ref_regions, regions, strict=True))
    ious: list[float] = []
    for a, b in zip(ref_regions, regions, strict=True):
        if len(a) != len(b):
            continue
        for m1, m2 in zip(a.masks, b.masks, strict=True):
            ious.append(float((m1 & m2).sum() / max(int((m1 | m2).sum()), 1)))
    return {
        "photos_same_region_count": same,
        "min_iou": round(min(ious), 4) if ious else None,
        "regions_iou_below_0_98": sum(i < 0.98 for i in ious),
        "regions_compared": len(ious),
    }


def rss_gb() -> float:
    """Resident memory of this process now, GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def one_per_shape(seg: Any, images: list[np.ndarray]) -> list[np.ndarray]:
    """One photo of each network input shape (to compile every shape before timing)."""
    import torch

    prep = seg.preprocessor()
    seen: dict[tuple[int, int], np.ndarray] = {}
    for im in images:
        p = torch.as_tensor(prep(im))
        seen.setdefault((int(p.shape[1]), int(p.shape[2])), im)
    return list(seen.values())


def run(args: Any, files: list[str], folder: Path, work: Path, desc: str) -> dict[str, Any]:
    """Prepare (models, exports), or the whole timed comparison; returns the results.

    One configuration is loaded at a time (each compiled input shape holds its own buffers):
    per round and configuration: load, compile/warm every input shape (untimed), then the
    segmentation stage, the embedding stage and end to end, then unload."""
    import gc
    import os

    os.environ["SEGINDEX_COMPILED_CACHE"] = str(work / "compiled")
    from bench_core_ingest import real_size_mask2former
    from bench_ingest import crops_for

    from segindex import Index, RuntimeOptions
    from segindex.config import CropPolicy
    from segindex.images import load_image
    from segindex.runtime import cpu_has_bf16

    seg_dir = work / "m2f-real"
    if not (seg_dir / "config.json").is_file():
        real_size_mask2former(seg_dir)
    clip_file = save_clip_weights(work / "clip-vit-b-32-random.bin")
    configs = {k: v for k, v in CONFIGS.items() if cpu_has_bf16() or "bf16" not in v}
    images = [load_image(f) for f in files]
    if args.prepare:
        for name, cfg in configs.items():
            if cfg[0] == "torch":
                continue
            t0 = time.perf_counter()
            seg, emb = models(cfg, seg_dir, clip_file)
            seg.segment(one_per_shape(seg, images), batch_size=1)  # exports every shape
            emb.embed_images(images[:2])
            print(f"{name}: exported/compiled in {time.perf_counter() - t0:.1f} s", flush=True)
            del seg, emb
            gc.collect()
        return {}

    base = next(iter(configs))
    crop = CropPolicy()
    crops: list[np.ndarray] = []
    embed_set: list[np.ndarray] = []
    ref_regions: list[Any] = []
    ref_vectors = np.zeros((0, 0), np.float32)
    accuracy: dict[str, Any] = {}
    memory: dict[str, float] = {}
    per_shape: dict[tuple[int, int], float] = {}
    clip_flops = total_seg_flops = 0.0
    times: dict[str, dict[str, list[float]]] = {
        n: {"seg": [], "emb": [], "e2e": []} for n in configs
    }
    stages: dict[str, dict[str, float]] = {}  # end-to-end stage split, last round
    for r in range(args.repeats):
        for name, cfg in configs.items():
            t0 = time.perf_counter()
            seg, emb = models(cfg, seg_dir, clip_file)
            seg.segment(one_per_shape(seg, images), batch_size=1)
            emb.embed_images(images[:2] * 16, batch_size=32)
            load_s = time.perf_counter() - t0
            if not crops:  # torch fp32 first: its regions give the crops every config embeds
                ref_regions = seg.segment(images, batch_size=2)
                for im, regions in zip(images, ref_regions, strict=True):
                    crops.extend(crops_for(im, regions, crop, RuntimeOptions())[0])
                # the embedding stage: these crops, repeated to at least 64 (random-weight
                # Mask2Former makes few regions; real weights make ~20 per photo)
                embed_set = (crops * -(-64 // len(crops)))[: max(64, len(crops))]
                per_shape, clip_flops = flops(seg, emb, images)
                total_seg_flops = seg_flops(seg, images, per_shape)
            t0 = time.perf_counter()
            regions = seg.segment(images, batch_size=2)
            t1 = time.perf_counter()
            emb.embed_images(embed_set, batch_size=32)
            t2 = time.perf_counter()
            vectors = emb.embed_images(crops, batch_size=32)
            if name == base and not ref_vectors.size:
                ref_vectors = vectors
            if r == 0:
                got = compare(ref_regions, regions)
                got["min_cosine"] = round(float((vectors * ref_vectors).sum(1).min()), 6)
                got["seg_runtime"] = seg.runtime_info()
                got["emb_runtime"] = emb.runtime_info()
                accuracy[name] = got
                print(name, json.dumps(got), flush=True)
            opts = RuntimeOptions(
                device="cpu",
                runtime=cfg[0],
                precision=cfg[1],
                commit_every=args.commit_every,
                decode_workers=0,
            )
            idx = Index.create(
                Path(tempfile.mkdtemp(dir=work)) / "bench.segindex",
                segmenter_options={"model": str(seg_dir), "resolution": 384},
                embedder_options={"model": "ViT-B-32", "pretrained": str(clip_file)},
                runtime=opts,
            )
            idx.models.loaded_segmenter, idx.models.loaded_embedder = seg, emb
            t3 = time.perf_counter()
            report = idx.ingest(folder)
            e2e = time.perf_counter() - t3
            idx.close()
            shutil.rmtree(idx.path.parent, ignore_errors=True)
            assert report.indexed == len(files), report.failures
            memory[name] = max(memory.get(name, 0.0), round(rss_gb(), 2))
            times[name]["seg"].append(t1 - t0)
            times[name]["emb"].append(t2 - t1)
            times[name]["e2e"].append(e2e)
            stages[name] = {k: round(v, 2) for k, v in report.stage_seconds.items()}
            print(
                f"[{r + 1}/{args.repeats}] {name}: loaded+warmed {load_s:.1f} s; segment "
                f"{t1 - t0:.2f} s, embed {t2 - t1:.2f} s ({len(embed_set)} crops), end to end "
                f"{e2e:.2f} s, RSS {rss_gb():.2f} GB",
                flush=True,
            )
            del seg, emb, idx
            gc.collect()
    ceilings = {"fp32": matmul_ceiling("float32"), "bf16": matmul_ceiling("bfloat16")}
    rows = {}
    ref = {k: statistics.median(v) for k, v in times[base].items()}
    for name, t in times.items():
        med = {k: statistics.median(v) for k, v in t.items()}
        rows[name] = {
            "segment_s": round(med["seg"], 2),
            "embed_s": round(med["emb"], 2),
            "e2e_s": round(med["e2e"], 2),
            "images_per_s": round(len(files) / med["e2e"], 3),
            "segment_x": round(ref["seg"] / med["seg"], 2),
            "embed_x": round(ref["emb"] / med["emb"], 2),
            "e2e_x": round(ref["e2e"] / med["e2e"], 2),
            "segment_gflops": round(total_seg_flops / med["seg"] / 1e9, 1),
            "embed_gflops": round(clip_flops * len(embed_set) / med["emb"] / 1e9, 1),
            "runs": {k: [round(x, 2) for x in v] for k, v in t.items()},
            "e2e_stages_s": stages[name],
            "rss_gb": memory[name],
            **accuracy[name],
        }
    return {
        "machine": desc,
        "n_images": len(files),
        "crops": len(crops),
        "embedded_per_round": len(embed_set),
        "regions": sum(len(x) for x in ref_regions),
        "segmenter_gflop_per_shape": {
            f"{h}x{w}": round(f / 1e9, 1) for (h, w), f in per_shape.items()
        },
        "clip_gflop_per_crop": round(clip_flops / 1e9, 2),
        "ceiling_gflops": {k: round(v, 1) for k, v in ceilings.items()},
        "repeats": args.repeats,
        "rows": rows,
    }


def section(res: dict[str, Any], heading: str, when: str, argv: str) -> str:
    ceil = res["ceiling_gflops"]
    lines = [
        f"{heading}",
        "",
        f"Run {when} on {res['machine']}: `{argv}`. Real-size random weights (Mask2Former Swin-T "
        f"COCO-panoptic architecture at 384 px, open_clip ViT-B-32 from a seeded checkpoint "
        f"file), {res['n_images']} photos (scikit-image's bundled ones at 100/75/50 %), "
        f"{res['regions']} segments and {res['crops']} crops (of the torch fp32 regions, with "
        f"the whole images; the embedding stage embeds them repeated to "
        f"{res['embedded_per_round']}, batches of 32). Configurations alternated, one loaded "
        f"at a time, "
        f"{res['repeats']} times; medians. Matmul ceilings (torch, 2048^3, 2 threads): fp32 "
        f"{ceil['fp32']} GFLOP/s, bf16 {ceil['bf16']} GFLOP/s. Mask2Former GFLOP per input shape: "
        f"{res['segmenter_gflop_per_shape']}; CLIP image tower {res['clip_gflop_per_crop']} "
        f"GFLOP per crop.",
        "",
        "| runtime (segmenter / CLIP precision) | segment s (x) | seg GFLOP/s | embed s (x) | "
        "embed GFLOP/s | end to end images/s (x) | photos with same region count | min mask "
        "IoU (regions < 0.98) | min cosine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n = res["n_images"]
    for name, r in res["rows"].items():
        lines.append(
            f"| {name} | {r['segment_s']} ({r['segment_x']}x) | {r['segment_gflops']} | "
            f"{r['embed_s']} ({r['embed_x']}x) | {r['embed_gflops']} | {r['images_per_s']} "
            f"({r['e2e_x']}x) | {r['photos_same_region_count']}/{n} | {r['min_iou']} "
            f"({r['regions_iou_below_0_98']} of {r['regions_compared']}) | {r['min_cosine']} |"
        )
    lines.append("")
    lines.append(
        "Resident memory of the process after each configuration's run (GB; what earlier "
        "configurations left allocated carries over): "
        + ", ".join(f"{k} {v['rss_gb']}" for k, v in res["rows"].items())
    )
    lines.append("")
    lines.append(
        "End-to-end stage split (s, last round; what bounds the end-to-end ratio): "
        + "; ".join(f"{k}: {v['e2e_stages_s']}" for k, v in res["rows"].items())
    )
    lines.append("")
    lines.append(
        "Runs (segment / embed / end to end, s): "
        + "; ".join(f"{k}: {v['runs']}" for k, v in res["rows"].items())
    )
    return "\n".join(lines) + "\n"
