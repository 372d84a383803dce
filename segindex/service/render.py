"""PNG pictures of regions: masks, cut-outs, outlined thumbnails, whole-image overlays.

Images are ``HxWx3`` uint8 RGB, masks ``HxW`` bool, boxes XYXY pixels (x1/y1 exclusive).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from segindex.crop import expand_box

#: distinct, readable overlay colours (RGB)
COLOURS = np.array(
    [
        (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
        (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
        (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
    ],
    dtype=np.uint8,
)  # fmt: skip
HIGHLIGHT = np.array((255, 40, 120), dtype=np.uint8)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """``HxW`` bool pixels of ``mask`` that touch a pixel outside it (4-neighbourhood)."""
    edge = np.zeros_like(mask)
    inner = mask.copy()
    for _ in range(max(1, width)):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = False
        shrunk[:, 0] = shrunk[:, -1] = False
        edge |= inner & ~shrunk
        inner = shrunk
    return edge


def mask_png(mask: np.ndarray) -> bytes:
    """The mask as a greyscale PNG at the image's size: 255 inside, 0 outside."""
    return png(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"))


def cutout_png(image: np.ndarray, mask: np.ndarray, box: Sequence[float]) -> bytes:
    """The region's tight box as RGBA, transparent outside the mask."""
    x0, y0, x1, y1 = expand_box(np.asarray(box), 0.0, *mask.shape)
    rgba = np.dstack([image[y0:y1, x0:x1], mask[y0:y1, x0:x1].astype(np.uint8) * 255])
    return png(Image.fromarray(rgba, mode="RGBA"))


def thumb_png(image: np.ndarray, mask: np.ndarray, box: Sequence[float], size: int = 256) -> bytes:
    """The region with some context, its mask tinted and outlined, fitted into ``size`` px."""
    h, w = mask.shape
    x0, y0, x1, y1 = expand_box(np.asarray(box), 0.15, h, w)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    inside = mask[y0:y1, x0:x1]
    crop[~inside] *= 0.55  # dim the context
    crop[inside] = crop[inside] * 0.7 + HIGHLIGHT * 0.3
    scale = min(1.0, size / max(crop.shape[:2]))
    edge_width = max(1, round(2 / max(scale, 1e-3)))
    crop[outline(inside, edge_width)] = HIGHLIGHT
    out = Image.fromarray(crop.round().clip(0, 255).astype(np.uint8))
    if scale < 1.0:
        out = out.resize(
            (max(1, round(out.width * scale)), max(1, round(out.height * scale))),
            Image.Resampling.LANCZOS,
        )
    return png(out)


def overlay_png(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    boxes: Sequence[Sequence[float]],
    alpha: float = 0.45,
    *,
    draw_boxes: bool = False,
    max_side: int | None = None,
) -> bytes:
    """The whole image with every region coloured, outlined and labelled; ``draw_boxes`` also
    draws each XYXY box; ``max_side`` shrinks the picture to fit that many pixels."""
    out = image.astype(np.float32)
    for i, mask in enumerate(masks):
        colour = COLOURS[i % len(COLOURS)].astype(np.float32)
        out[mask] = out[mask] * (1 - alpha) + colour * alpha
        out[outline(mask, max(1, min(mask.shape) // 300))] = colour
    picture = Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for i, (label, box) in enumerate(zip(labels, boxes, strict=True)):
        colour = tuple(int(c) for c in COLOURS[i % len(COLOURS)])
        if draw_boxes:
            width = max(1, min(image.shape[:2]) // 200)
            x1, y1 = float(box[2]) - 1, float(box[3]) - 1  # x1/y1 exclusive
            draw.rectangle((float(box[0]), float(box[1]), x1, y1), outline=colour, width=width)
        x, y = float(box[0]) + 2, float(box[1]) + 2
        text_box = draw.textbbox((x, y), label)
        draw.rectangle(text_box, fill=(0, 0, 0))
        draw.text((x, y), label, fill=colour)
    if max_side is not None and max(picture.size) > max_side:
        scale = max_side / max(picture.size)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    return png(picture)
