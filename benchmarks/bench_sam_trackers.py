"""Per-frame CPU time of the SAM 2 / SAM 3 backends at their REAL sizes, random weights.

    sam2     Sam2VideoModel with facebook/sam2.1-hiera-tiny's shapes (1024 px): a seeded frame,
             then propagation of 1 and of 5 objects, through segindex.track.sam2.Sam2Propagator
    sam3     Sam3Model with facebook/sam3's shapes (1008 px): one image, one concept (vision
             encoder + detector), then a second concept on the same image (detector only),
             through segindex.segment.sam3.Sam3Segmenter
    sam3v    Sam3VideoModel (facebook/sam3 detector + tracker): streamed frames with one concept,
             through segindex.track.sam3_video.Sam3VideoPropagator

Random weights give the real cost, not real masks. The models are built in memory (no weights
file is written); ``load_pretrained`` is the only thing replaced. Run from the repository root:

    python benchmarks/bench_sam_trackers.py [--frames 3] [--skip sam3v] [--size 480x640]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from contextlib import contextmanager
from typing import Any
from unittest import mock

import numpy as np


def frame(i: int, size: tuple[int, int]) -> np.ndarray:
    """``HxWx3`` uint8: a noisy background with a square moving right."""
    h, w = size
    img = np.random.default_rng(i).integers(0, 80, (h, w, 3), dtype=np.uint8)
    x = 20 + 8 * i
    img[h // 4 : h // 4 + h // 5, x : x + w // 6] = (220, 40, 40)
    return img


@contextmanager
def loaded(module: str, model: Any, processor: Any) -> Any:
    with mock.patch(f"{module}.load_pretrained", lambda *a, **k: (model, processor)):
        yield


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_sam2(frames: int, size: tuple[int, int]) -> dict[str, Any]:
    from transformers import Sam2VideoModel

    from segindex.testing.tiny_sam2 import sam2_video_config, sam2_video_processor
    from segindex.track.sam2 import Sam2Propagator

    t = time.perf_counter()
    model = Sam2VideoModel(sam2_video_config(real_size=True)).eval()
    build = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    with loaded("segindex.track.sam2", model, sam2_video_processor(1024)):
        prop = Sam2Propagator("hiera-tiny-random", device="cpu", precision="fp32")
    s = prop.start()
    h, w = size
    masks = {}
    for k in range(5):
        m = np.zeros((h, w), bool)
        m[20 + 60 * k : 70 + 60 * k, 30 : 30 + 80] = True
        masks[k] = m
    seed = timed(lambda: prop.track(s, frame(0, size), {0: masks[0]}))
    one = [timed(lambda i=i: prop.track(s, frame(i, size), {})) for i in range(1, frames + 1)]
    prop.track(s, None, {k: masks[k] for k in range(1, 5)})
    five = [
        timed(lambda i=i: prop.track(s, frame(i, size), {}))
        for i in range(frames + 1, 2 * frames + 1)
    ]
    return {"params": params, "build_s": build, "seed_s": seed, "one": one, "five": five}


def bench_sam3(size: tuple[int, int]) -> dict[str, Any]:
    from transformers import CLIPTokenizer, Sam3Model, Sam3Processor

    from segindex.segment.sam3 import Sam3Segmenter
    from segindex.testing.tiny_sam3 import _image_processor, sam3_config

    t = time.perf_counter()
    model = Sam3Model(sam3_config(real_size=True)).eval()
    build = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    processor = Sam3Processor(
        image_processor=_image_processor(1008), tokenizer=CLIPTokenizer(), target_size=1008
    )
    with loaded("segindex.segment.sam3", model, processor):
        seg = Sam3Segmenter("sam3-random", device="cpu", precision="fp32", threshold=0.0)
    img = frame(0, size)
    t = time.perf_counter()
    vision = seg._vision(img)  # what segment_text does first, once per image
    vision_s = time.perf_counter() - t
    first = timed(lambda: seg._concept(vision, size, 0, "umbrella"))  # + the text encoder
    second = timed(lambda: seg._concept(vision, size, 1, "dog"))
    return {
        "params": params,
        "build_s": build,
        "first_s": vision_s + first,
        "concept_s": second,
        "vision_s": vision_s,
    }


def bench_sam3_video(frames: int, size: tuple[int, int]) -> dict[str, Any]:
    from transformers import CLIPTokenizer, Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    from segindex.testing.tiny_sam3 import _image_processor
    from segindex.track.sam3_video import Sam3VideoPropagator

    t = time.perf_counter()
    model = Sam3VideoModel(Sam3VideoConfig()).eval()
    build = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    processor = Sam3VideoProcessor(
        image_processor=_image_processor(1008),
        video_processor=Sam2VideoVideoProcessor(size={"height": 1008, "width": 1008}),
        tokenizer=CLIPTokenizer(),
        target_size=1008,
    )
    with loaded("segindex.track.sam2", model, processor):
        prop = Sam3VideoPropagator("sam3-video-random", ["umbrella"], device="cpu")
    s = prop.start()
    per = [timed(lambda i=i: prop.track(s, frame(i, size), {})) for i in range(frames)]
    return {"params": params, "build_s": build, "frames": per, "objects": len(s.found.ids)}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--size", default="480x640", help="HxW of the frames")
    ap.add_argument("--skip", default="", help="comma list of sam2, sam3, sam3v")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    torch.manual_seed(0)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), frames {size[0]}x{size[1]}, fp32 CPU, random weights"
    )
    med = statistics.median
    if "sam2" not in skip:
        r = bench_sam2(args.frames, size)
        print(
            f"sam2 hiera-tiny size ({r['params'] / 1e6:.1f} M params, built in "
            f"{r['build_s']:.1f} s): seeded frame {r['seed_s']:.2f} s; per propagated frame "
            f"1 object {med(r['one']):.2f} s {[round(x, 2) for x in r['one']]}, "
            f"5 objects {med(r['five']):.2f} s {[round(x, 2) for x in r['five']]}"
        )
    if "sam3" not in skip:
        r = bench_sam3(size)
        print(
            f"sam3 image ({r['params'] / 1e6:.0f} M params, built in {r['build_s']:.0f} s): "
            f"first concept {r['first_s']:.1f} s (vision encoder {r['vision_s']:.1f} s), "
            f"each further concept {r['concept_s']:.2f} s"
        )
    if "sam3v" not in skip:
        r = bench_sam3_video(args.frames, size)
        print(
            f"sam3 video ({r['params'] / 1e6:.0f} M params, built in {r['build_s']:.0f} s): per "
            f"frame {med(r['frames']):.1f} s {[round(x, 1) for x in r['frames']]} "
            f"({r['objects']} instances tracked at the end)"
        )


if __name__ == "__main__":
    main()
