"""Ingest throughput and per-stage time split on 10 real photos (scikit-image's bundled ones).

    python benchmarks/bench_core_ingest.py [--models tiny|real-size|both] [--device cpu]

"tiny": the test suite's tiny random Mask2Former + open_clip. "real-size": a Mask2Former with the
swin-tiny COCO-panoptic architecture (Swin-T backbone, 200 queries, 133 classes) and open_clip
ViT-B-32, both randomly initialised (no weights can be downloaded here); compute cost equals the
real models'. The Mask2Former heads are made confident (as in segindex.testing.tiny_models) so it
yields segments like a trained model instead of none. Inference resolution 384 (the default).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from PIL import Image


def bundled_photos() -> dict[str, object]:
    """The ten real photos bundled with scikit-image, by short name (HxWx3 or HxW uint8)."""
    from skimage import data

    left, right, _ = data.stereo_motorcycle()
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "ihc": data.immunohistochemistry(),
        "hubble": data.hubble_deep_field(),
        "moto_left": left,
        "moto_right": right,
        "camera": data.camera(),
        "coins": data.coins(),
    }


def photos(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, arr in bundled_photos().items():
        Image.fromarray(arr).save(root / f"{name}.jpg", quality=92)
    return root


def real_size_mask2former(directory: Path) -> Path:
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    from segindex.data.coco_panoptic import coco_panoptic_id2label
    from segindex.testing.tiny_models import _make_confident

    id2label = coco_panoptic_id2label()
    swin_t = SwinConfig(
        image_size=224,
        patch_size=4,
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        drop_path_rate=0.3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=swin_t,
        num_queries=200,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    _make_confident(model)
    model.save_pretrained(directory)
    Mask2FormerImageProcessor().save_pretrained(directory)
    return directory


def run(kind: str, folder: Path, work: Path, device: str) -> dict[str, object]:
    from segindex import Index, RuntimeOptions
    from segindex.testing.tiny_clip import save_tiny_open_clip
    from segindex.testing.tiny_models import save_tiny_mask2former

    if kind == "tiny":
        seg = {"model": str(save_tiny_mask2former(work / "m2f-tiny")), "resolution": 384}
        emb = {"model": str(save_tiny_open_clip(work / "clip-tiny")), "pretrained": None}
    else:
        seg = {"model": str(real_size_mask2former(work / "m2f-real")), "resolution": 384}
        emb = {"model": "ViT-B-32", "pretrained": None}
    t0 = time.perf_counter()
    idx = Index.create(
        work / f"{kind}.segindex",
        segmenter_options=seg,
        embedder_options=emb,
        runtime=RuntimeOptions(device=device),
    )
    _ = idx.segmenter
    load = time.perf_counter() - t0
    report = idx.ingest(folder)
    idx.close()
    out = report.to_dict()
    out.pop("failures")
    out["model_load_seconds"] = round(load, 2)
    out["regions_per_image"] = round(report.regions / max(report.indexed, 1), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", choices=["tiny", "real-size", "both"], default="both")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch

    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, device {args.device}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = photos(work / "photos")
        kinds = ["tiny", "real-size"] if args.models == "both" else [args.models]
        for kind in kinds:
            result = run(kind, folder, work, args.device)
            print(f"\n== {kind} models ==")
            print(json.dumps(result, indent=2))
            total = sum(result["stage_seconds"].values())  # type: ignore[union-attr]
            split = ", ".join(f"{k} {v / total:.0%}" for k, v in result["stage_seconds"].items())
            print(f"split: {split}")


if __name__ == "__main__":
    main()
