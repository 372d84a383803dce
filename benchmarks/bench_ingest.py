"""Ingest at the speed of the models? End-to-end ingest vs isolated model passes vs a naive loop.

    python benchmarks/bench_ingest.py [--n 12] [--repeats 2] [--device cpu] [--precision auto]
                                      [--runtime auto] [--decode-workers 1] [--commit-every 4]
                                      [--no-results]
    python benchmarks/bench_ingest.py --compare-runtimes [--prepare] [--work DIR] [--n 12]

``--compare-runtimes`` measures the compiled CPU runtimes against torch fp32 instead (issue 22:
segmentation stage, embedding stage, end to end, results against torch, GFLOP/s against the
machine's matmul ceilings; see benchmarks/ingest_runtimes.py) and writes its own section of
RESULTS.md; ``--prepare`` first builds the models and their exports (untimed, cached in
``--work``).

N real photos (scikit-image's bundled ones, cycled through several sizes to reach N) go through
real-size random-weight models: Mask2Former swin-tiny COCO-panoptic architecture (from
bench_core_ingest.real_size_mask2former, 384 px) and open_clip ViT-B-32 (pretrained=None). In
one run, on the same inputs and the same model instances (warmed up first):

* pipeline: ``Index.ingest`` end to end (decode in worker processes, batched segmentation,
  crops of many images embedded together, one SQL transaction per batch, batched FAISS adds);
* isolated: only the model forward passes, timed alone - ``segmenter.segment`` on each batch of
  the pipeline's images and ``embedder.embed_images`` on exactly the crops the pipeline embeds;
  the ratio pipeline / isolated is the runner's overhead (target <= 1.15 on CPU);
* naive: one image at a time (decode, segment one image), one crop at a time
  (``embed_images([crop])``), one commit per region row (``Store.write`` of a one-region
  ``ImageWrite``, then its FAISS add); the speed-up pipeline vs naive (target >= 3x).

The isolated passes and the pipeline alternate ``--repeats`` times (isolated, pipeline, isolated,
pipeline, ...; each pipeline run into a fresh index with the same loaded models), and the ratio is
median pipeline / median isolated: on a shared 2-core machine the same forward passes vary by
10-25 % from one minute to the next, and whichever runs first after loading pays first-shape
costs, so one run of each in a fixed order measures the order, not the runner.

Results are printed and, unless ``--no-results``, written as the ingest section of
benchmarks/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core_ingest import bundled_photos, real_size_mask2former  # noqa: E402

SCALES = (1.0, 0.75, 0.5)
SECTION = "## Ingest"
RUNTIMES_SECTION = "## Compiled CPU runtimes (issue 22)"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def photos(root: Path, n: int) -> Path:
    """``n`` JPEGs: the ten bundled photos, each at 100 %, 75 % and 50 % in turn."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = bundled_photos()
    names = list(arrays)
    for i in range(n):
        name = names[i % len(names)]
        scale = SCALES[(i + i // len(names)) % len(SCALES)]
        im = Image.fromarray(arrays[name])
        if scale != 1.0:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
        im.save(root / f"{i:03d}_{name}_{int(scale * 100)}.jpg", quality=92)
    return root


def crops_for(image, regions, crop, runtime) -> tuple[list[np.ndarray], object, list[str]]:  # type: ignore[no-untyped-def]
    """Exactly what the runner embeds for one image (segments kept, then the whole image)."""
    from segindex.crop import crop_all, crop_whole, keep_large
    from segindex.ingest import top_regions, whole_image_region
    from segindex.regions import Regions

    kept = top_regions(keep_large(regions, crop), runtime.max_regions)
    crops = list(crop_all(image, kept, crop))
    kinds = ["segment"] * len(kept)
    if crop.whole_image:
        h, w = image.shape[:2]
        kept = Regions.concatenate([kept, whole_image_region(h, w)])
        crops.append(crop_whole(image, crop))
        kinds.append("image")
    return crops, kept, kinds


def isolated(files, seg, emb, crop, runtime) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Model forward passes alone, batched as the pipeline batches them; decode/crop untimed."""
    from segindex.images import load_image

    seg_batch, emb_batch = runtime.batch_sizes(seg.device, emb.device)
    t_seg = t_emb = 0.0
    n_crops = 0
    step = runtime.commit_every
    for b in range(0, len(files), step):
        images = [load_image(f, max_pixels=runtime.max_pixels) for f in files[b : b + step]]
        t0 = time.perf_counter()
        segs = seg.segment(images, batch_size=seg_batch, paths=files[b : b + step])
        t_seg += time.perf_counter() - t0
        crops: list[np.ndarray] = []
        for im, regions in zip(images, segs, strict=True):
            crops.extend(crops_for(im, regions, crop, runtime)[0])
        t0 = time.perf_counter()
        emb.embed_images(crops, batch_size=emb_batch)
        t_emb += time.perf_counter() - t0
        n_crops += len(crops)
    return {"segment_s": t_seg, "embed_s": t_emb, "total_s": t_seg + t_emb, "crops": n_crops}


def naive(files, seg, emb, crop, runtime, index) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """One image, one crop, one committed row at a time."""
    from segindex.images import file_sha256, load_image
    from segindex.store.sql import ImageWrite

    split = dict.fromkeys(["decode", "segment", "crop", "embed", "write"], 0.0)
    rows = 0
    t_start = time.perf_counter()
    for f in files:
        t0 = time.perf_counter()
        sha = file_sha256(f)
        image = load_image(f, max_pixels=runtime.max_pixels)
        t1 = time.perf_counter()
        regions = seg.segment([image], batch_size=1, paths=[f])[0]
        t2 = time.perf_counter()
        crops, kept, kinds = crops_for(image, regions, crop, runtime)
        t3 = time.perf_counter()
        vectors = [emb.embed_images([c], batch_size=1)[0] for c in crops]
        t4 = time.perf_counter()
        h, w = image.shape[:2]
        for j, v in enumerate(vectors):
            result = index.store.write(
                [
                    ImageWrite(
                        path=f"{f}#{j}",
                        sha256=sha,
                        width=w,
                        height=h,
                        regions=kept[j : j + 1],
                        kinds=[kinds[j]],
                        vectors=v[None, :],
                        crop=crop.to_dict(),
                    )
                ]
            )
            index.mirror.apply(result)
            rows += 1
        t5 = time.perf_counter()
        for k, a, b in (
            ("decode", t0, t1),
            ("segment", t1, t2),
            ("crop", t2, t3),
            ("embed", t3, t4),
            ("write", t4, t5),
        ):
            split[k] += b - a
    index.flush()
    return {"total_s": time.perf_counter() - t_start, "rows": rows, **split}


def machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {device}"
    )


def write_results(text: str, section: str = SECTION) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    # replace an earlier section of this name (up to the next "## " heading), keep everything else
    pattern = re.compile(rf"^{re.escape(section)}.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text.rstrip() + "\n\n", old).rstrip() + "\n"
    else:
        new = old.rstrip() + "\n\n" + text.rstrip() + "\n"
    RESULTS.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=12, help="number of photos")
    ap.add_argument("--repeats", type=int, default=2, help="isolated/pipeline alternations")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16")
    ap.add_argument("--decode-workers", type=int, default=None, help="default: auto")
    ap.add_argument("--commit-every", type=int, default=4, help="images per batch/transaction")
    ap.add_argument("--runtime", default="auto", help="auto, torch or openvino")
    ap.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    ap.add_argument(
        "--compare-runtimes", action="store_true", help="torch vs compiled runtimes (issue 22)"
    )
    ap.add_argument("--prepare", action="store_true", help="with --compare-runtimes: only export")
    ap.add_argument(
        "--work", default=None, help="with --compare-runtimes: models and exports kept here"
    )
    args = ap.parse_args()
    if args.compare_runtimes:
        compare_runtimes(args)
        return
    from segindex import RuntimeOptions

    args.decode_workers = RuntimeOptions(decode_workers=args.decode_workers).decode_processes

    from segindex import Index, RuntimeOptions

    desc = machine(args.device)
    print(f"machine: {desc}")
    runtime = RuntimeOptions(
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        commit_every=args.commit_every,
        decode_workers=args.decode_workers,
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = photos(work / "photos", args.n)
        files = sorted(str(p) for p in folder.iterdir())
        seg_opts = {"model": str(real_size_mask2former(work / "m2f-real")), "resolution": 384}
        emb_opts = {"model": "ViT-B-32", "pretrained": None}
        t0 = time.perf_counter()
        idx = Index.create(
            work / "pipeline.segindex",
            segmenter_options=seg_opts,
            embedder_options=emb_opts,
            runtime=runtime,
        )
        seg, emb = idx.segmenter, idx.embedder
        load_s = time.perf_counter() - t0
        # warm-up at the real shapes (batch of segment_batch photos, a full embed batch), so
        # first-call costs (allocator, oneDNN kernel selection) land in none of the timed runs
        seg_batch, emb_batch = runtime.batch_sizes(seg.device, emb.device)
        warm = [np.array(Image.open(f).convert("RGB")) for f in files[:seg_batch]]
        seg.segment(warm, batch_size=seg_batch)
        seg.segment(warm[:1], batch_size=1)
        emb.embed_images([warm[0]] * emb_batch, batch_size=emb_batch)
        emb.embed_images(warm[:1], batch_size=1)
        crop = idx.settings.crop
        seg_runtime = getattr(seg, "runtime_info", lambda: {"runtime": "torch"})()
        emb_runtime = getattr(emb, "runtime_info", lambda: {"runtime": "torch"})()

        print(f"{args.n} photos, models loaded in {load_s:.1f} s")
        isos, reports = [], []
        for r in range(args.repeats):
            print(f"[{r + 1}/{args.repeats}] isolated model passes ...", flush=True)
            isos.append(isolated(files, seg, emb, crop, runtime))
            print(f"[{r + 1}/{args.repeats}] pipeline ...", flush=True)
            if r:  # a fresh index, the same (warm) model instances
                idx = Index.create(
                    work / f"pipeline{r}.segindex",
                    segmenter_options=seg_opts,
                    embedder_options=emb_opts,
                    runtime=runtime,
                )
                idx.models.loaded_segmenter, idx.models.loaded_embedder = seg, emb
            run = idx.ingest(folder)
            assert run.indexed == args.n, run.failures
            idx.close()
            reports.append(run)
            print(
                f"    isolated {isos[-1]['total_s']:.2f} s, pipeline {run.seconds:.2f} s",
                flush=True,
            )
        pipe_s = statistics.median(x.seconds for x in reports)
        iso_s = statistics.median(x["total_s"] for x in isos)
        report = min(reports, key=lambda x: abs(x.seconds - pipe_s))  # for the stage split
        iso = min(isos, key=lambda x: abs(x["total_s"] - iso_s))
        print("naive loop ...")
        nidx = Index.create(
            work / "naive.segindex",
            segmenter_options=seg_opts,
            embedder_options=emb_opts,
            runtime=runtime,
        )
        nai = naive(files, seg, emb, crop, runtime, nidx)
        nidx.close()

    stages = {k: round(v, 3) for k, v in report.stage_seconds.items()}
    rows = report.regions + report.indexed  # segment rows + one whole-image row per image
    ratio = pipe_s / iso_s
    speedup = nai["total_s"] / pipe_s
    res = {
        "n_images": args.n,
        "regions": report.regions,
        "region_rows": rows,
        "crops_embedded": iso["crops"],
        "regions_per_image": round(report.regions / args.n, 1),
        "pipeline_s": round(pipe_s, 2),
        "images_per_s": round(args.n / pipe_s, 3),
        "regions_per_s": round(report.regions / pipe_s, 2),
        "pipeline_stage_s": stages,
        "isolated_segment_s": round(iso["segment_s"], 2),
        "isolated_embed_s": round(iso["embed_s"], 2),
        "isolated_models_s": round(iso_s, 2),
        "ratio_pipeline_to_models": round(ratio, 3),
        "pipeline_runs_s": [round(x.seconds, 2) for x in reports],
        "isolated_runs_s": [round(x["total_s"], 2) for x in isos],
        "naive_s": round(nai["total_s"], 2),
        "naive_images_per_s": round(args.n / nai["total_s"], 3),
        "naive_stage_s": {
            k: round(nai[k], 3) for k in ("decode", "segment", "crop", "embed", "write")
        },
        "speedup_vs_naive": round(speedup, 2),
        "model_load_s": round(load_s, 1),
        "decode_workers": args.decode_workers,
        "commit_every": args.commit_every,
        "repeats": args.repeats,
        "precision": args.precision,
        "runtime": {"segmenter": seg_runtime, "embedder": emb_runtime},
        "segment_batch": seg_batch,
        "embed_batch": emb_batch,
    }
    print(json.dumps(res, indent=2))
    if args.no_results:
        return
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    total = sum(report.stage_seconds.values())
    split = ", ".join(f"{k} {v:.1f} s ({v / total:.0%})" for k, v in report.stage_seconds.items())
    nsplit = ", ".join(
        f"{k} {nai[k]:.1f} s" for k in ("decode", "segment", "crop", "embed", "write")
    )
    met = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    text = f"""{SECTION} ({args.n} real photos, bench_ingest.py --n {args.n})

Run {when} on {desc}. Models: Mask2Former swin-tiny COCO-panoptic architecture at 384 px and
open_clip ViT-B-32, both random weights of the real sizes. Runtime {args.runtime} (segmenter
{seg_runtime}, CLIP {emb_runtime}): commit_every
{args.commit_every}, segment_batch {seg_batch}, embed_batch {emb_batch},
decode_workers {args.decode_workers}. {report.regions} segments ({rows} region rows with the
whole-image ones, {iso["crops"]} crops embedded) from {args.n} images.

| measure | value | target | |
|---|---|---|---|
| pipeline images/s | {res["images_per_s"]} | | |
| pipeline regions/s | {res["regions_per_s"]} | | |
| pipeline end to end | {res["pipeline_s"]} s | | |
| isolated model passes (segment + embed) | {res["isolated_models_s"]} s ({res["isolated_segment_s"]} + {res["isolated_embed_s"]}) | | |
| ratio end to end / isolated models (medians) | {res["ratio_pipeline_to_models"]} | <= 1.15 | {met(ratio <= 1.15)} |
| naive loop | {res["naive_s"]} s ({res["naive_images_per_s"]} images/s) | | |
| speed-up vs naive | {res["speedup_vs_naive"]}x | >= 3x | {met(speedup >= 3)} |

Runs alternated isolated, pipeline, ... {args.repeats} times: pipeline {res["pipeline_runs_s"]} s,
isolated {res["isolated_runs_s"]} s (medians above; segment/embed split of the isolated run nearest
the median). Pipeline stage split (run nearest the median): {split}. Naive stage split: {nsplit}.
"""  # noqa: E501
    write_results(text)
    print(f"wrote the ingest section of {RESULTS}")


def compare_runtimes(args: argparse.Namespace) -> None:
    from ingest_runtimes import run, section

    work = Path(args.work or tempfile.mkdtemp(prefix="segindex-bench-runtimes-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    desc = machine("cpu")
    print(f"machine: {desc}\nwork: {work}")
    folder = photos(work / f"photos-{args.n}", args.n)
    files = sorted(str(p) for p in folder.iterdir())
    res = run(args, files, folder, work, desc)
    if args.prepare:
        print("prepared (models and exports cached)")
        return
    print(json.dumps(res, indent=2))
    (work / "results.json").write_text(json.dumps(res, indent=2))
    if args.no_results:
        return
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    argv = "python benchmarks/bench_ingest.py " + " ".join(sys.argv[1:])
    write_results(section(res, RUNTIMES_SECTION, when, argv), RUNTIMES_SECTION)
    print(f"wrote the runtimes section of {RESULTS}")


if __name__ == "__main__":
    main()
