"""An evaluation set that can be made offline: seeded copy-paste composites with exact masks,
hard enough that a random embedder scores near chance.

Real object cut-outs (:mod:`.cutouts`: several distinct source instances per class wherever the
sources allow) are pasted onto real backgrounds; every paste is augmented (:mod:`.augment`:
scale, rotation, flip, colour jitter, blur) and may be partly occluded by a later paste;
distractor patches (class ``distractor``, never queried, never relevant) are pasted among them.
The ground truth is the pasted masks, so it is exact.

Relevance modes (see :mod:`segindex.eval.retrieval`): by class (``category_id``), and by source
instance: every annotation carries ``"source"``, e.g. ``"coin/07"`` or ``"ball/red-striped"``
(stuff segments: the background's name), so instance retrieval asks for the other pastes of the
very same object.

Output (``OUT``)::

    images/000000.jpg ...        the composites (JPEG, quality 92)
    panoptic.json + panoptic/    COCO panoptic ground truth (PNG ids = R + 256 G + 256^2 B)
    instances.json               COCO instance ground truth (compressed RLE), things and stuff

``file_name`` entries are relative to ``OUT/images``. The same ``seed`` gives byte-identical
files (image ``i`` depends only on ``(seed, i)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError
from segindex.eval.augment import Augment, augment, jitter
from segindex.eval.cutouts import (
    DISTRACTOR,
    Cutout,
    Sources,
    ball_instances,
    draw_ball,
    load_sources,
)
from segindex.masks import boxes_from_masks

CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "quokka", "isthing": 1, "supercategory": "animal"},
    {"id": 2, "name": "horse", "isthing": 1, "supercategory": "animal"},
    {"id": 3, "name": "coin", "isthing": 1, "supercategory": "object"},
    {"id": 4, "name": "ball", "isthing": 1, "supercategory": "object"},
    {"id": 5, "name": "cat", "isthing": 1, "supercategory": "animal"},
    {"id": 6, "name": "cup", "isthing": 1, "supercategory": "object"},
    {"id": 9, "name": DISTRACTOR, "isthing": 1, "supercategory": "other"},
    {"id": 101, "name": "grass", "isthing": 0, "supercategory": "ground"},
    {"id": 102, "name": "gravel", "isthing": 0, "supercategory": "ground"},
    {"id": 103, "name": "brick wall", "isthing": 0, "supercategory": "wall"},
]
_CAT = {c["name"]: c for c in CATEGORIES}
MIN_VISIBLE = 0.6  # an earlier object must keep this fraction of its pixels visible
_SIDE = {"coin": (0.15, 0.3), "ball": (0.12, 0.3), DISTRACTOR: (0.2, 0.4)}  # else (0.35, 0.7)
Segment = tuple[str, str, np.ndarray]  # class name, source instance, HxW bool mask


def make_background(rng: np.random.Generator, src: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    sh, sw = src.shape[:2]
    scale = max(h / sh, w / sw) * rng.uniform(1.0, 1.4)
    rw, rh = int(np.ceil(sw * scale)), int(np.ceil(sh * scale))
    big = np.asarray(Image.fromarray(src).resize((rw, rh), Image.Resampling.BILINEAR))
    y0, x0 = int(rng.integers(0, rh - h + 1)), int(rng.integers(0, rw - w + 1))
    return big[y0 : y0 + h, x0 : x0 + w].copy()


def pick_cutout(rng: np.random.Generator, sources: Sources, name: str, side: float) -> Cutout:
    if name == "ball":
        balls = ball_instances()
        return draw_ball(balls[int(rng.integers(len(balls)))], max(8, int(side)))
    pool = sources.distractors if name == DISTRACTOR else sources.things[name]
    return pool[int(rng.integers(len(pool)))]


def _position(
    rng: np.random.Generator,
    shape: tuple[int, int],
    obj: tuple[int, int],
    near: np.ndarray | None,
) -> tuple[int, int]:
    """Top-left corner of an ``obj`` = (h, w) paste: uniform, or overlapping the mask ``near``."""
    (h, w), (oh, ow) = shape, obj
    if near is None:
        return int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
    ys, xs = np.nonzero(near)
    k = int(rng.integers(len(ys)))
    y0 = int(np.clip(ys[k] - rng.integers(0, oh), 0, h - oh))
    x0 = int(np.clip(xs[k] - rng.integers(0, ow), 0, w - ow))
    return y0, x0


def compose(
    rng: np.random.Generator,
    sources: Sources,
    size: tuple[int, int] = (256, 320),
    max_objects: int = 4,
    aug: Augment | None = None,
    max_distractors: int = 2,
) -> tuple[np.ndarray, list[Segment]]:
    """One composite: ``HxWx3`` uint8 image and its segments (things and distractors in paste
    order, then the stuff background if any). Half of the pastes are placed over an earlier
    one (partial occlusion), as long as every earlier paste keeps ``MIN_VISIBLE`` of its area."""
    aug = aug or Augment()
    h, w = size
    bg_name, src, stuff = sources.backgrounds[int(rng.integers(len(sources.backgrounds)))]
    canvas = jitter(rng, make_background(rng, src, size), aug)
    placed: list[tuple[str, str, np.ndarray, int]] = []  # name, instance, visible mask, area
    names = sorted(k for k, v in sources.things.items() if v) + ["ball"]
    plan = [
        names[int(rng.integers(len(names)))] for _ in range(int(rng.integers(1, max_objects + 1)))
    ]
    plan += [DISTRACTOR] * int(rng.integers(0, max_distractors + 1))
    for name in [plan[i] for i in rng.permutation(len(plan))]:
        side = rng.uniform(*_SIDE.get(name, (0.35, 0.7))) * min(h, w)
        obj = augment(rng, pick_cutout(rng, sources, name, side), side, aug)
        oh, ow = obj.mask.shape
        if oh > h or ow > w:
            continue
        overlap = bool(placed) and rng.random() < 0.5
        for attempt in range(10):
            near = placed[int(rng.integers(len(placed)))][2] if overlap and attempt < 6 else None
            y0, x0 = _position(
                rng, size, (oh, ow), near if near is not None and near.any() else None
            )
            full = np.zeros((h, w), bool)
            full[y0 : y0 + oh, x0 : x0 + ow] = obj.mask
            if all((m & ~full).sum() >= MIN_VISIBLE * a for _, _, m, a in placed):
                break
        else:
            continue
        region = canvas[y0 : y0 + oh, x0 : x0 + ow]
        region[obj.mask] = obj.pixels[obj.mask]
        placed = [(n, i, m & ~full, a) for n, i, m, a in placed]
        placed.append((name, obj.instance, full, int(full.sum())))
    segments = [(n, i, m) for n, i, m, _ in placed if m.any()]
    if stuff is not None:
        covered = np.zeros((h, w), bool)
        for _, _, m in segments:
            covered |= m
        if (~covered).any():
            segments.append((stuff, bg_name, ~covered))
    return canvas, segments


def make_set(
    out: str | Path,
    n: int = 50,
    seed: int = 0,
    size: tuple[int, int] = (256, 320),
    max_objects: int = 4,
    shared_dir: str | Path | None = None,
    max_distractors: int = 2,
) -> dict[str, Any]:
    """Write ``n`` composites and their ground truth under ``out``; returns a summary dict
    (``per_class`` segment counts, ``instances_per_class`` distinct source instances)."""
    from PIL import Image

    from segindex.formats.coco import id_to_rgb
    from segindex.rle import encode

    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    sources = load_sources(Path(shared_dir) if shared_dir is not None else None)
    images, pan_anns, inst_anns = [], [], []
    counts: dict[str, int] = {}
    instances: dict[str, set[str]] = {}
    ann_id = 1
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        canvas, segments = compose(rng, sources, size, max_objects, None, max_distractors)
        name = f"{i:06d}.jpg"
        Image.fromarray(canvas).save(out / "images" / name, quality=92)
        h, w = size
        ids = np.zeros((h, w), np.int64)
        infos = []
        for k, (cls, source, m) in enumerate(segments):
            cat = _CAT[cls]
            sid = cat["id"] * 1000 + k + 1
            ids[m] = sid
            x0, y0, x1, y1 = (int(v) for v in boxes_from_masks(m[None])[0])
            area = int(m.sum())
            infos.append({"id": sid, "category_id": cat["id"], "area": area, "source": source,
                          "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})  # fmt: skip
            inst_anns.append({"id": ann_id, "image_id": i + 1, "category_id": cat["id"],
                              "segmentation": dict(encode(m)), "area": area, "source": source,
                              "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})  # fmt: skip
            ann_id += 1
            counts[cls] = counts.get(cls, 0) + 1
            instances.setdefault(cls, set()).add(source)
        png = f"{i:06d}.png"
        Image.fromarray(id_to_rgb(ids)).save(out / "panoptic" / png)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        pan_anns.append({"image_id": i + 1, "file_name": png, "segments_info": infos})
    info = {"description": "segindex copy-paste evaluation set", "seed": seed, "n": n,
            "sources": sorted(sources.things) + ["ball", DISTRACTOR]
                       + [b[0] for b in sources.backgrounds]}  # fmt: skip
    known = {*sources.things, "ball", DISTRACTOR}
    cats = [c for c in CATEGORIES if c["name"] in known or not c["isthing"]]
    _write_json(
        out / "panoptic.json",
        {"info": info, "images": images, "annotations": pan_anns, "categories": cats},
    )
    _write_json(
        out / "instances.json",
        {"info": info, "images": images, "annotations": inst_anns, "categories": cats},
    )
    return {"out": str(out), "images": n, "segments": ann_id - 1, "per_class": counts,
            "instances_per_class": {k: len(v) for k, v in sorted(instances.items())},
            "panoptic": str(out / "panoptic.json"), "instances": str(out / "instances.json"),
            "images_root": str(out / "images")}  # fmt: skip


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
