"""Writing one image's regions: a COCO RLE JSON and an overlay PNG for eyes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segindex.regions import Regions

#: distinct, saturated overlay colours (RGB), cycled
PALETTE = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
    ],
    dtype=np.float32,
)  # fmt: skip


def regions_to_coco(
    regions: Regions,
    file_name: str,
    extra: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """COCO results for one image: ``images`` (one), ``categories`` by label name,
    ``annotations`` with compressed RLE ``segmentation``, XYWH ``bbox``, ``area``, ``score``.

    extra: per-region dicts merged into the annotations (e.g. ``{"similarity": 0.31}``).
    """
    height, width = regions.image_size
    categories: dict[str, dict[str, Any]] = {}
    annotations = []
    for i, rle in enumerate(regions.rles()):
        label = str(regions.labels[i])
        cat = categories.setdefault(
            label,
            {
                "id": len(categories) + 1,
                "name": label,
                "isthing": int(bool(regions.is_thing[i])),
                "segindex_label_id": int(regions.label_ids[i]),
            },
        )
        x0, y0, x1, y1 = (float(v) for v in regions.boxes[i])
        ann = {
            "id": i + 1,
            "image_id": 1,
            "category_id": cat["id"],
            "segmentation": rle,
            "area": int(regions.areas[i]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(regions.scores[i]),
            "iscrowd": 0,
        }
        if extra is not None:
            ann.update(extra[i])
        annotations.append(ann)
    return {
        "info": {"description": "segindex segment"},
        "images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
        "categories": list(categories.values()),
        "annotations": annotations,
    }


def draw_overlay(
    image: np.ndarray, regions: Regions, captions: Sequence[str] | None = None, alpha: float = 0.5
) -> np.ndarray:
    """``HxWx3`` uint8 RGB: masks tinted in distinct colours (largest first, so small ones stay
    visible), mask outlines, and a caption per region at its box's top-left corner."""
    from PIL import Image, ImageDraw
    from scipy import ndimage

    out = image.astype(np.float32)
    order = np.argsort(-regions.areas, kind="stable")
    for rank, i in enumerate(order):
        colour = PALETTE[rank % len(PALETTE)]
        mask = regions.masks[i]
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
        out[edge] = colour
    picture = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    if captions is not None:
        draw = ImageDraw.Draw(picture)
        for rank, i in enumerate(order):
            x0, y0 = (float(v) for v in regions.boxes[i][:2])
            colour = tuple(int(c) for c in PALETTE[rank % len(PALETTE)])
            text = captions[i]
            left, top, right, bottom = draw.textbbox((x0 + 2, y0 + 2), text)
            draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
            draw.text((x0 + 2, y0 + 2), text, fill=colour)
    return np.asarray(picture)


__all__ = ["draw_overlay", "regions_to_coco"]
