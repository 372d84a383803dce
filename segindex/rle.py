"""COCO run-length encoding of binary masks, through pycocotools."""

from __future__ import annotations

from typing import TypedDict

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
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [
        {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
        for r in rles
    ]


def decode(rle: RLE) -> np.ndarray:
    """Decode compressed COCO RLE to an ``HxW`` bool mask."""
    coco = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(coco).astype(bool)


def area(rle: RLE) -> int:
    """Number of foreground pixels, without decoding."""
    coco = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    return int(mask_utils.area(coco))
