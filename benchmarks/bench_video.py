"""Video ingest at the speed of the models? Decode rates, sampled frames/s end to end, the ratio
of end-to-end time to the isolated model passes on the same sampled frames, tracker cost, RSS.

    python benchmarks/bench_video.py [--clip ../shared/videos/01_dog.mp4] [--long-seconds 60]
                                     [--fps 2] [--max-frames 16] [--models tiny|real-size]
                                     [--repeats 2] [--device cpu] [--no-results]

Two clips: a real 720p H.264 clip from ``../shared/videos/`` (skipped with a note when absent)
and a generated long clip (``--long-seconds`` of 640x360 H.264 at 30 fps, three squares moving
over a gradient, key frames every 2 s). For each:

* decode: frames/s decoding every frame, and decoding key frames only (PyAV ``skip_frame``),
  as the sampler does (no RGB conversion);
* end to end: ``Index.ingest`` of the clip alone (sampling at ``--fps``, at most
  ``--max-frames`` frames for the real clip; the long clip is sampled whole), sampled frames/s,
  the stage split, tracker milliseconds per sampled frame;
* isolated: only the model forward passes on exactly the frames the sampler keeps (sampled
  beforehand, untimed), batched like the runner batches them: ``segmenter.segment`` and
  ``embedder.embed_images`` of the crops the runner embeds; the ratio end to end / isolated is
  the runner's overhead (decode, crops, tracking, SQL, FAISS; target <= 1.15, as for images);
* peak RSS of the process after each clip (``ru_maxrss``; the models are loaded before).

End-to-end and isolated runs alternate ``--repeats`` times (medians), with the same loaded
models, as in bench_ingest.py. ``--models tiny`` (default, seconds on 2 cores) uses the tiny
random Mask2Former (128 px) and open_clip of the tests: their forward passes are so cheap that
the ratio mostly measures the runner's fixed costs; ``--models real-size`` uses the real-size
random-weight Mask2Former swin-tiny (384 px) and ViT-B-32 of bench_ingest.py (minutes).
Results are printed and, unless ``--no-results``, written as the video section of
benchmarks/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core_ingest import real_size_mask2former  # noqa: E402
from bench_ingest import crops_for, machine  # noqa: E402

SECTION = "## Video ingest"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "videos" / "01_dog.mp4"


def long_frame(i: int, size: tuple[int, int] = (360, 640)) -> np.ndarray:
    """Frame ``i`` of the generated clip: three squares moving over a horizontal gradient."""
    from segindex.testing.fakes import PALETTE

    h, w = size
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = np.linspace(60, 190, w, dtype=np.uint8)[None, :, None]
    for k, (name, speed) in enumerate((("red", 3), ("blue", 2), ("yellow", 5))):
        x = (40 + speed * i + 150 * k) % (w - 80)
        y = 40 + 100 * k + int(20 * np.sin(i / 15 + k))
        image[y : y + 60, x : x + 60] = PALETTE[name]
    return image


def decode_rate(path: Path, keyframes_only: bool) -> dict[str, float]:
    """Frames decoded per second (every frame, or key frames only), no RGB conversion."""
    import av

    from segindex.ingest.video import _decoded

    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in _decoded(container, stream, keyframes_only):
            n += 1
    s = time.perf_counter() - t0
    return {"frames": n, "seconds": round(s, 3), "frames_per_s": round(n / s, 1)}


def sampled(path: Path, options: Any) -> list[np.ndarray]:
    """The frames the sampler keeps (``HxWx3`` uint8 RGB), as the ingest would see them."""
    from segindex.ingest.video import SamplerState, sample_frames

    return [f.image for f in sample_frames(path, options, SamplerState())]


def isolated(frames: list[np.ndarray], seg: Any, emb: Any, crop: Any, runtime: Any) -> float:
    """Seconds of the model forward passes alone on ``frames``: segmentation in the runner's
    groups of frames, then the embedding of exactly the crops the runner embeds."""
    seg_batch, emb_batch = runtime.batch_sizes(seg.device, emb.device)
    step = runtime.commit_every
    total = 0.0
    for b in range(0, len(frames), step):
        group = frames[b : b + step]
        t0 = time.perf_counter()
        segs = seg.segment(group, batch_size=seg_batch)
        total += time.perf_counter() - t0
        crops = [
            c for im, r in zip(group, segs, strict=True) for c in crops_for(im, r, crop, runtime)[0]
        ]
        t0 = time.perf_counter()
        emb.embed_images(crops, batch_size=emb_batch)
        total += time.perf_counter() - t0
    return total


def models(kind: str, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if kind == "real-size":
        seg = {"model": str(real_size_mask2former(work / "m2f-real")), "resolution": 384}
        return seg, {"model": "ViT-B-32", "pretrained": None}
    from segindex.testing.tiny_clip import save_tiny_open_clip
    from segindex.testing.tiny_models import save_tiny_mask2former

    seg = {"model": str(save_tiny_mask2former(work / "m2f-tiny")), "resolution": 128}
    return seg, {"model": str(save_tiny_open_clip(work / "clip-tiny")), "pretrained": None}


def run_clip(name: str, clip: Path, options: Any, args: Any, work: Path, loaded: Any) -> dict:
    """Decode rates, then alternating end-to-end and isolated runs of one clip."""
    from segindex import Index

    seg_opts, emb_opts, seg, emb, runtime, crop = loaded
    out: dict[str, Any] = {"clip": clip.name}
    out["decode_all"] = decode_rate(clip, keyframes_only=False)
    out["decode_keyframes"] = decode_rate(clip, keyframes_only=True)
    frames = sampled(clip, options)
    out["sampled_frames"] = len(frames)
    out["frame_size"] = list(frames[0].shape[:2]) if frames else None
    folder = work / f"clip-{name}"
    folder.mkdir()
    (folder / clip.name).symlink_to(clip.resolve())
    isos, reports = [], []
    for r in range(args.repeats):
        isos.append(isolated(frames, seg, emb, crop, runtime))
        idx = Index.create(
            work / f"{name}{r}.segindex",
            segmenter_options=seg_opts,
            embedder_options=emb_opts,
            runtime=runtime,
            video=options,
        )
        idx.models.loaded_segmenter, idx.models.loaded_embedder = seg, emb  # the same warm ones
        report = idx.ingest(folder)
        assert report.videos == 1 and report.failed == 0, report.failures
        out.setdefault("tracks", idx.info()["videos"]["tracks"])
        idx.close()
        reports.append(report)
        print(
            f"  [{name} {r + 1}/{args.repeats}] isolated {isos[-1]:.2f} s, "
            f"end to end {report.seconds:.2f} s ({report.frames} frames)",
            flush=True,
        )
    del frames
    pipe_s = statistics.median(x.seconds for x in reports)
    iso_s = statistics.median(isos)
    report = min(reports, key=lambda x: abs(x.seconds - pipe_s))
    out.update(
        end_to_end_s=round(pipe_s, 2),
        sampled_frames_per_s=round(report.frames / pipe_s, 2),
        isolated_models_s=round(iso_s, 2),
        ratio_end_to_end_to_models=round(pipe_s / iso_s, 3),
        tracker_ms_per_frame=round(
            1000 * report.stage_seconds.get("track", 0.0) / max(1, report.frames), 2
        ),
        stage_s={k: round(v, 3) for k, v in report.stage_seconds.items()},
        end_to_end_runs_s=[round(x.seconds, 2) for x in reports],
        isolated_runs_s=[round(x, 2) for x in isos],
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    )
    return out


def write_section(text: str) -> None:
    """Put ``text`` in RESULTS.md in place of an earlier video section, else at the end."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        RESULTS.write_text(old.rstrip() + "\n\n" + text.rstrip() + "\n")
        return
    end = old.find("\n## ", start + len(SECTION))
    rest = "" if end < 0 else old[end:]
    RESULTS.write_text(old[:start] + text.rstrip() + "\n" + rest)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clip", type=Path, default=SHARED_CLIP, help="a real clip")
    ap.add_argument("--long-seconds", type=float, default=60.0, help="generated clip length")
    ap.add_argument("--fps", type=float, default=2.0, help="sampled frames per second")
    ap.add_argument("--max-frames", type=int, default=16, help="per video, for the real clip")
    ap.add_argument("--models", choices=["tiny", "real-size"], default="tiny")
    ap.add_argument("--repeats", type=int, default=2, help="isolated/end-to-end alternations")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    args = ap.parse_args()

    from segindex import Index, RuntimeOptions, VideoOptions
    from segindex.testing.clips import write_clip

    desc = machine(args.device)
    print(f"machine: {desc}")
    runtime = RuntimeOptions(device=args.device)
    results: dict[str, Any] = {"models": args.models, "fps": args.fps}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seg_opts, emb_opts = models(args.models, work)
        t0 = time.perf_counter()
        idx = Index.create(
            work / "load.segindex",
            segmenter_options=seg_opts,
            embedder_options=emb_opts,
            runtime=runtime,
        )
        seg, emb = idx.segmenter, idx.embedder
        warm = [long_frame(0)] * 2
        seg.segment(warm, batch_size=2)
        emb.embed_images(warm, batch_size=2)
        results["model_load_s"] = round(time.perf_counter() - t0, 1)
        results["rss_after_load_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0
        )
        loaded = (seg_opts, emb_opts, seg, emb, runtime, idx.settings.crop)
        if args.clip.exists():
            print(f"real clip {args.clip} ...", flush=True)
            options = VideoOptions(fps=args.fps, max_frames=args.max_frames)
            results["real"] = run_clip("real", args.clip, options, args, work, loaded)
        else:
            print(f"no real clip at {args.clip}: skipped")
        n = round(args.long_seconds * 30)
        t0 = time.perf_counter()
        long_clip = write_clip(
            work / "long.mp4", n, fps=30, codec="libx264", gop=60, draw=long_frame
        )
        results["long_encode_s"] = round(time.perf_counter() - t0, 1)
        print(f"long clip: {n} frames, {long_clip.stat().st_size / 1e6:.1f} MB ...", flush=True)
        results["long"] = run_clip(
            "long", long_clip, VideoOptions(fps=args.fps), args, work, loaded
        )
    print(json.dumps(results, indent=2))
    if not args.no_results:
        write_section(report_text(results, args, desc))
        print(f"wrote the video section of {RESULTS}")


def report_text(res: dict[str, Any], args: Any, desc: str) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    model_text = (
        "tiny random Mask2Former (128 px) and open_clip of the tests"
        if args.models == "tiny"
        else "real-size random Mask2Former swin-tiny (384 px) and open_clip ViT-B-32"
    )
    rows = []
    for key, title in (("real", "real 720p clip"), ("long", "generated long clip")):
        r = res.get(key)
        if r is None:
            rows.append(f"| {title} | (absent) | | | | | | | |")
            continue
        met = "met" if r["ratio_end_to_end_to_models"] <= 1.15 else "**missed**"
        rows.append(
            f"| {title}: {r['clip']} {r['frame_size'][1]}x{r['frame_size'][0]} "
            f"| {r['decode_all']['frames_per_s']} ({r['decode_all']['frames']} frames) "
            f"| {r['decode_keyframes']['frames_per_s']} ({r['decode_keyframes']['frames']} key) "
            f"| {r['sampled_frames']} | {r['sampled_frames_per_s']} "
            f"| {r['end_to_end_s']} / {r['isolated_models_s']} "
            f"| {r['ratio_end_to_end_to_models']} ({met}) | {r['tracker_ms_per_frame']} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    splits = "; ".join(
        f"{k}: " + ", ".join(f"{s} {v:.2f} s" for s, v in res[k]["stage_s"].items() if v)
        for k in ("real", "long")
        if k in res
    )
    table = "\n".join(rows)
    return f"""{SECTION} (bench_video.py --models {args.models} --fps {args.fps} --max-frames {args.max_frames} --long-seconds {args.long_seconds:g} --repeats {args.repeats})

Run {when} on {desc}. Models: {model_text}; loaded and warmed in {res["model_load_s"]} s
(RSS {res["rss_after_load_mb"]:.0f} MB after loading). Sampling {args.fps:g} frames/s (the real
clip at most {args.max_frames} frames), default near-duplicate threshold and tracker (iou).
Decode rates are frames decoded per second without RGB conversion; end to end is
``Index.ingest`` of the clip alone; isolated is the segmenter and embedder passes alone on the
same sampled frames and crops (medians of {args.repeats} alternating runs).

| clip | decode all, frames/s | decode key frames only, frames/s | sampled frames | sampled frames/s end to end | end to end / isolated models, s | ratio (target <= 1.15) | tracker ms/frame | peak RSS MB |
|---|---|---|---|---|---|---|---|---|
{table}

Stage split of the run nearest the median: {splits}.
"""  # noqa: E501


if __name__ == "__main__":
    main()
