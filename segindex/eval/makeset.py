"""An evaluation set that can be made offline: seeded copy-paste composites with exact masks.

Real object cut-outs are pasted onto real backgrounds; the ground truth is the pasted masks,
so it is exact. Sources (all offline):

things   quokka  the photo in ``shared/images/quokka.jpg`` cut along its hand-drawn polygon
                 (used when the shared folder is present)
         coin    the coins of ``skimage.data.coins()``, cut out by Otsu threshold + labelling
         horse   the silhouette ``skimage.data.horse()``, filled with a brown, textured coat
         ball    a drawn, shaded disc (the drawn-shape fallback)
stuff    grass, gravel, brick wall: the ``skimage.data`` textures, tinted, as background segments
void     photo backgrounds (coffee, rocket, astronaut, motorcycle): their pixels are unlabelled

Output (``OUT``)::

    images/000000.jpg ...        the composites (JPEG, quality 92)
    panoptic.json + panoptic/    COCO panoptic ground truth (PNG ids = R + 256 G + 256^2 B)
    instances.json               COCO instance ground truth (compressed RLE), things and stuff

``file_name`` entries are relative to ``OUT/images``. The same ``seed`` gives byte-identical
files (image ``i`` depends only on ``(seed, i)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError

CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "quokka", "isthing": 1, "supercategory": "animal"},
    {"id": 2, "name": "horse", "isthing": 1, "supercategory": "animal"},
    {"id": 3, "name": "coin", "isthing": 1, "supercategory": "object"},
    {"id": 4, "name": "ball", "isthing": 1, "supercategory": "object"},
    {"id": 101, "name": "grass", "isthing": 0, "supercategory": "ground"},
    {"id": 102, "name": "gravel", "isthing": 0, "supercategory": "ground"},
    {"id": 103, "name": "brick wall", "isthing": 0, "supercategory": "wall"},
]
_CAT = {c["name"]: c for c in CATEGORIES}
MIN_VISIBLE = 0.6  # an earlier object must keep this fraction of its pixels visible


@dataclass(frozen=True)
class Cutout:
    """An object to paste: ``hxwx3`` uint8 RGB pixels and an ``hxw`` bool mask."""

    name: str
    pixels: np.ndarray
    mask: np.ndarray


def default_shared_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared"


def _skimage_data() -> Any:
    try:
        import skimage.data
    except ImportError:
        raise ConfigError(
            "making an evaluation set needs scikit-image (pip install scikit-image)"
        ) from None
    return skimage.data


def load_sources(shared_dir: Path | None = None) -> tuple[dict[str, list[Cutout]], list[Any]]:
    """Cut-outs by class and backgrounds as ``(name, HxWx3 uint8, stuff class or None)``."""
    from scipy import ndimage

    data = _skimage_data()
    things: dict[str, list[Cutout]] = {}
    shared = shared_dir if shared_dir is not None else default_shared_dir()
    quokka = shared / "images" / "quokka.jpg"
    ann = shared / "images" / "quokka_annotations.json"
    if quokka.exists() and ann.exists():
        from PIL import Image, ImageDraw

        photo = np.asarray(Image.open(quokka).convert("RGB"))
        poly = [(p["x"], p["y"]) for p in json.loads(ann.read_text())["polygons"][0]["keypoints"]]
        canvas = Image.new("L", (photo.shape[1], photo.shape[0]), 0)
        ImageDraw.Draw(canvas).polygon(poly, fill=1)
        things["quokka"] = [_tight(Cutout("quokka", photo, np.asarray(canvas, dtype=bool)))]
    coins = data.coins()
    from skimage.filters import threshold_otsu

    fg = ndimage.binary_fill_holes(
        ndimage.binary_opening(coins > threshold_otsu(coins), iterations=2)
    )
    labels, n = ndimage.label(fg)
    rgb_coins = np.stack([coins] * 3, -1)
    rgb_coins = np.clip(rgb_coins * np.array([1.05, 0.95, 0.75]), 0, 255).astype(np.uint8)
    coin_list = []
    for lab in range(1, n + 1):
        m = labels == lab
        if 800 <= m.sum() <= 3100:
            coin_list.append(_tight(Cutout("coin", rgb_coins, m)))
    things["coin"] = coin_list
    horse = ~data.horse()
    gravel = data.gravel()[: horse.shape[0], : horse.shape[1]].astype(np.float32) / 255
    coat = np.array([120, 72, 40], np.float32) * (0.7 + 0.6 * gravel[..., None])
    things["horse"] = [_tight(Cutout("horse", np.clip(coat, 0, 255).astype(np.uint8), horse))]
    backgrounds: list[Any] = [
        ("grass", _tint(data.grass(), (0.55, 0.95, 0.4)), "grass"),
        ("gravel", _tint(data.gravel(), (0.9, 0.85, 0.8)), "gravel"),
        ("brick", _tint(data.brick(), (1.0, 0.6, 0.45)), "brick wall"),
        ("coffee", data.coffee(), None),
        ("rocket", data.rocket(), None),
        ("astronaut", data.astronaut(), None),
        ("motorcycle", data.stereo_motorcycle()[0], None),
    ]
    return things, backgrounds


def _tint(gray: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    return np.clip(gray[..., None].astype(np.float32) * np.array(factors), 0, 255).astype(np.uint8)


def _tight(c: Cutout) -> Cutout:
    rows, cols = np.flatnonzero(c.mask.any(1)), np.flatnonzero(c.mask.any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Cutout(c.name, c.pixels[y0:y1, x0:x1].copy(), c.mask[y0:y1, x0:x1].copy())


def _ball(rng: np.random.Generator, size: int) -> Cutout:
    colours = np.array([[200, 30, 30], [30, 80, 200], [240, 200, 30], [40, 160, 60]], np.float32)
    colour = colours[rng.integers(len(colours))]
    yy, xx = np.mgrid[:size, :size].astype(np.float32) + 0.5
    r = size / 2
    d2 = ((yy - r) ** 2 + (xx - r) ** 2) / r**2
    mask = d2 <= 1.0
    light = np.clip(
        1.15 - 0.6 * (((yy - 0.35 * size) ** 2 + (xx - 0.35 * size) ** 2) / r**2), 0.3, 1.2
    )
    pixels = np.clip(colour * light[..., None], 0, 255).astype(np.uint8)
    return Cutout("ball", pixels, mask)


def _resize(c: Cutout, scale: float, flip: bool) -> Cutout:
    from PIL import Image

    h, w = c.mask.shape
    size = (max(4, int(round(w * scale))), max(4, int(round(h * scale))))
    pixels = np.asarray(Image.fromarray(c.pixels).resize(size, Image.Resampling.BILINEAR))
    mask = (
        np.asarray(
            Image.fromarray(c.mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        )
        > 127
    )
    if flip:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
    return Cutout(c.name, pixels, mask)


def _background(rng: np.random.Generator, src: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    sh, sw = src.shape[:2]
    scale = max(h / sh, w / sw) * rng.uniform(1.0, 1.4)
    rw, rh = int(np.ceil(sw * scale)), int(np.ceil(sh * scale))
    big = np.asarray(Image.fromarray(src).resize((rw, rh), Image.Resampling.BILINEAR))
    y0, x0 = int(rng.integers(0, rh - h + 1)), int(rng.integers(0, rw - w + 1))
    return big[y0 : y0 + h, x0 : x0 + w].copy()


def compose(
    rng: np.random.Generator,
    things: dict[str, list[Cutout]],
    backgrounds: list[Any],
    size: tuple[int, int] = (256, 320),
    max_objects: int = 4,
) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """One composite: ``HxWx3`` uint8 image and its ``(class name, HxW bool mask)`` segments
    (things in paste order, then the stuff background if any)."""
    h, w = size
    _, src, stuff = backgrounds[int(rng.integers(len(backgrounds)))]
    canvas = _background(rng, src, size)
    placed: list[tuple[str, np.ndarray, int]] = []  # name, visible mask, pasted area
    names = sorted(k for k, v in things.items() if v) + ["ball"]
    for _ in range(int(rng.integers(1, max_objects + 1))):
        name = names[int(rng.integers(len(names)))]
        frac = {"coin": (0.15, 0.3), "ball": (0.12, 0.3)}.get(name, (0.35, 0.7))
        side = rng.uniform(*frac) * min(h, w)
        if name == "ball":
            obj = _ball(rng, max(8, int(side)))
        else:
            choice = things[name][int(rng.integers(len(things[name])))]
            obj = _resize(choice, side / max(choice.mask.shape), bool(rng.integers(2)))
        oh, ow = obj.mask.shape
        if oh > h or ow > w:
            continue
        for _attempt in range(10):
            y0, x0 = int(rng.integers(0, h - oh + 1)), int(rng.integers(0, w - ow + 1))
            full = np.zeros((h, w), bool)
            full[y0 : y0 + oh, x0 : x0 + ow] = obj.mask
            if all((m & ~full).sum() >= MIN_VISIBLE * a for _, m, a in placed):
                break
        else:
            continue
        region = canvas[y0 : y0 + oh, x0 : x0 + ow]
        region[obj.mask] = obj.pixels[obj.mask]
        placed = [(n, m & ~full, a) for n, m, a in placed]
        placed.append((name, full, int(full.sum())))
    segments = [(n, m) for n, m, _ in placed if m.any()]
    if stuff is not None:
        covered = np.zeros((h, w), bool)
        for _, m in segments:
            covered |= m
        if (~covered).any():
            segments.append((stuff, ~covered))
    return canvas, segments


def make_set(
    out: str | Path,
    n: int = 50,
    seed: int = 0,
    size: tuple[int, int] = (256, 320),
    max_objects: int = 4,
    shared_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``n`` composites and their ground truth under ``out``; returns a summary dict."""
    from PIL import Image

    from segindex.eval.coco import id_to_rgb
    from segindex.rle import encode

    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "panoptic").mkdir(parents=True, exist_ok=True)
    things, backgrounds = load_sources(Path(shared_dir) if shared_dir is not None else None)
    images, pan_anns, inst_anns = [], [], []
    counts: dict[str, int] = {}
    ann_id = 1
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        canvas, segments = compose(rng, things, backgrounds, size, max_objects)
        name = f"{i:06d}.jpg"
        Image.fromarray(canvas).save(out / "images" / name, quality=92)
        h, w = size
        ids = np.zeros((h, w), np.int64)
        infos = []
        for k, (cls, m) in enumerate(segments):
            cat = _CAT[cls]
            sid = cat["id"] * 1000 + k + 1
            ids[m] = sid
            x0, y0, x1, y1 = _bbox(m)
            area = int(m.sum())
            infos.append({"id": sid, "category_id": cat["id"], "area": area,
                          "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})  # fmt: skip
            inst_anns.append({"id": ann_id, "image_id": i + 1, "category_id": cat["id"],
                              "segmentation": dict(encode(m)), "area": area,
                              "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})  # fmt: skip
            ann_id += 1
            counts[cls] = counts.get(cls, 0) + 1
        png = f"{i:06d}.png"
        Image.fromarray(id_to_rgb(ids)).save(out / "panoptic" / png)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        pan_anns.append({"image_id": i + 1, "file_name": png, "segments_info": infos})
    info = {"description": "segindex copy-paste evaluation set", "seed": seed, "n": n,
            "sources": sorted(things) + ["ball"] + [b[0] for b in backgrounds]}  # fmt: skip
    cats = [c for c in CATEGORIES if c["name"] in things or c["name"] == "ball" or not c["isthing"]]
    _write_json(
        out / "panoptic.json",
        {"info": info, "images": images, "annotations": pan_anns, "categories": cats},
    )
    _write_json(
        out / "instances.json",
        {"info": info, "images": images, "annotations": inst_anns, "categories": cats},
    )
    return {"out": str(out), "images": n, "segments": ann_id - 1, "per_class": counts,
            "panoptic": str(out / "panoptic.json"), "instances": str(out / "instances.json"),
            "images_root": str(out / "images")}  # fmt: skip


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1] + 1), int(rows[-1] + 1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
