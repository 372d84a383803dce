"""COCO run-length encoding of binary masks, through pycocotools.

:data:`RLE` is how segindex keeps a mask (``counts`` an ASCII string, JSON-ready);
:func:`to_coco` turns one into the form pycocotools takes (``counts`` bytes). IoU, area and box
are computed on the encoding, without decoding to pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from pycocotools import mask as mask_utils


class RLE(TypedDict):
    """Compressed COCO RLE: ``size`` is ``[height, width]``, ``counts`` an ASCII string."""

    size: list[int]
    counts: str


def encode(mask: np.ndarray) -> RLE:
    """Encode one ``HxW`` bool mask as compressed COCO RLE."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    return encode_many(mask[None])[0]


def encode_many(masks: np.ndarray) -> list[RLE]:
    """Encode ``NxHxW`` bool masks; one RLE per mask."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be NxHxW, got shape {masks.shape}")
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        for r in encode_coco(masks)
    ]


def encode_coco(masks: np.ndarray) -> list[dict[str, Any]]:
    """Encode ``NxHxW`` bool masks in pycocotools form (``counts`` bytes), for its functions."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be NxHxW, got shape {masks.shape}")
    if len(masks) == 0:
        return []
    encoded: list[dict[str, Any]] = mask_utils.encode(
        np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    )
    return encoded


def to_coco(rle: RLE) -> dict[str, Any]:
    """The pycocotools form of a stored RLE: ``{"size": [h, w], "counts": bytes}``."""
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].encode("ascii"),
    }


def decode(rle: RLE) -> np.ndarray:
    """Decode compressed COCO RLE to an ``HxW`` bool mask."""
    return mask_utils.decode(to_coco(rle)).astype(bool)


def area(rle: RLE) -> int:
    """Number of foreground pixels, without decoding."""
    return int(mask_utils.area(to_coco(rle)))


def bbox(rle: RLE) -> list[float]:
    """The mask's tight COCO box ``[x, y, width, height]`` in pixels (zeros if empty)."""
    return [float(x) for x in mask_utils.toBbox(to_coco(rle))]


def iou(
    a: Sequence[RLE], b: Sequence[RLE], crowd: Sequence[bool] | np.ndarray | None = None
) -> np.ndarray:
    """``(N, M)`` float64 IoU of the masks ``a`` with the masks ``b`` (all the same size).

    crowd: ``(M,)`` bool; for a crowd mask ``b[j]`` the union is ``a[i]``'s area (COCO's
    rule for crowd regions). An empty union gives 0.
    """
    return coco_iou([to_coco(r) for r in a], [to_coco(r) for r in b], crowd)


def coco_iou(
    a: list[Any], b: list[Any], crowd: Sequence[bool] | np.ndarray | None = None
) -> np.ndarray:
    """:func:`iou` of masks already in pycocotools form (as ``pycocotools.mask.encode`` gives)."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    flags = [0] * m if crowd is None else [int(bool(c)) for c in crowd]
    if len(flags) != m:
        raise ValueError(f"crowd must have one flag per mask of b ({m}), got {len(flags)}")
    return np.asarray(mask_utils.iou(a, b, flags), dtype=np.float64).reshape(n, m)
