"""Mask and box math shared by segmentation, tracking, evaluation and formats.

Masks are ``NxHxW`` bool arrays; boxes are ``(N, 4)`` float32 XYXY pixels with ``x1``/``y1``
exclusive (a one-pixel mask at ``(x, y)`` has the box ``(x, y, x + 1, y + 1)``). Stored masks
(COCO RLE) have their own functions in :mod:`segindex.rle`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from segindex import rle as rle_codec


def _check_masks(name: str, masks: np.ndarray) -> None:
    if not isinstance(masks, np.ndarray) or masks.ndim != 3:
        raise ValueError(
            f"{name} must be NxHxW bool masks, got shape {getattr(masks, 'shape', None)}"
        )


def iou_matrix(
    a: np.ndarray,
    b: np.ndarray | None = None,
    crowd: Sequence[bool] | np.ndarray | None = None,
) -> np.ndarray:
    """``(N, M)`` float64 IoU of ``NxHxW`` bool masks ``a`` with ``MxHxW`` bool masks ``b``
    (``b=None``: ``a`` with itself).

    crowd: ``(M,)`` bool; for a crowd mask ``b[j]`` the union is ``a[i]``'s area, as in
    ``pycocotools.mask.iou``. An empty union gives 0. Computed on run-length encodings, so
    memory stays small for many large masks.
    """
    _check_masks("a", a)
    if b is not None:
        _check_masks("b", b)
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(
                f"masks must be NxHxW and MxHxW with the same HxW, got {a.shape} and {b.shape}"
            )
    ca = rle_codec.encode_coco(np.asarray(a, dtype=bool))
    cb = ca if b is None else rle_codec.encode_coco(np.asarray(b, dtype=bool))
    return rle_codec.coco_iou(ca, cb, crowd)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes (float32, x1/y1 exclusive) of ``NxHxW`` bool masks; empty mask -> zeros."""
    n = len(masks)
    boxes = np.zeros((n, 4), dtype=np.float32)
    for i in range(n):
        rows = np.flatnonzero(masks[i].any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(masks[i].any(axis=0))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def box_masks(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """``NxHxW`` bool masks, each of ``(N, 4)`` XYXY ``boxes`` filled: fractional edges are
    rounded outwards, clipped to the image, and every box covers at least one pixel."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(boxes), height, width), dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        ix0 = min(max(int(np.floor(x0)), 0), width - 1)
        iy0 = min(max(int(np.floor(y0)), 0), height - 1)
        out[i, iy0 : max(int(np.ceil(y1)), iy0 + 1), ix0 : max(int(np.ceil(x1)), ix0 + 1)] = True
    return out


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` float64 IoU of ``(N, 4)`` XYXY boxes ``a`` with ``(M, 4)`` XYXY boxes ``b``;
    an empty union gives 0."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 areas of ``(N, 4)`` XYXY boxes."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


__all__ = ["box_areas", "box_iou_matrix", "box_masks", "boxes_from_masks", "iou_matrix"]
