"""Region prompts on new images become masks: :func:`resolve_region` turns a
:class:`~segindex.search.query.RegionPrompt` (a mask, a box, points) into the
:class:`~segindex.search.query.QueryRegion` whose crop is embedded, running the segmenter when the
prompt needs one."""

from __future__ import annotations

import math

import numpy as np

from segindex.errors import QueryError
from segindex.masks import boxes_from_masks
from segindex.search.query import QueryRegion, RegionMethod, RegionPrompt
from segindex.segment.base import Segmenter

__all__ = ["box_mask", "resolve_region"]


def box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """``HxW`` bool mask of an XYXY box (rounded outwards, clipped); raises if nothing is left."""
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    if x1 <= x0 or y1 <= y0:
        raise QueryError(f"box {np.round(box, 2).tolist()} lies outside the {width}x{height} image")
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def resolve_region(
    image: np.ndarray, prompt: RegionPrompt, segmenter: Segmenter | None
) -> QueryRegion:
    """The mask of a region prompt on an ``HxWx3`` uint8 RGB image.

    * a ``mask`` is used as given;
    * with a promptable ``segmenter`` the box and/or points become its best mask;
    * otherwise a ``box`` is the region itself (its crop follows the index's crop policy, so the
      margin is filled, blurred or kept like any region's background);
    * points without a box and without a promptable segmenter pick the automatic segment that
      holds the most foreground points (and fewest background ones).
    """
    h, w = image.shape[:2]

    def done(mask: np.ndarray, method: RegionMethod) -> QueryRegion:
        return QueryRegion(mask, boxes_from_masks(mask[None])[0], method)

    if prompt.mask is not None:
        if prompt.mask.shape != (h, w):
            raise QueryError(f"mask must be {h}x{w} like the image, got shape {prompt.mask.shape}")
        return done(prompt.mask, "mask")
    # arrays since RegionPrompt checked them: box (4,) float32, points (P, 2), labels (P,)
    box = None if prompt.box is None else np.asarray(prompt.box, np.float32)
    points = None if prompt.points is None else np.asarray(prompt.points, np.float32)
    labels = None if prompt.point_labels is None else np.asarray(prompt.point_labels, np.int64)
    if box is not None:
        box_mask(box, h, w)  # fails early if the box misses the image
    if segmenter is not None and segmenter.promptable:
        found = segmenter.prompt(
            image,
            boxes=None if box is None else box[None],
            points=points,
            point_labels=labels,
        )
        areas = found.areas
        if len(found) and areas.max() > 0:
            best = int(np.argmax(np.where(areas > 0, found.scores, -np.inf)))
            return done(found.masks[best], "prompt")
    if box is not None:
        return done(box_mask(box, h, w), "box")
    assert points is not None and labels is not None  # by RegionPrompt
    if segmenter is None:
        raise QueryError("points need a segmenter; give a box or a mask instead")
    regions = segmenter.segment([image])[0]
    xs = np.clip(points[:, 0].astype(int), 0, w - 1)
    ys = np.clip(points[:, 1].astype(int), 0, h - 1)
    sign = np.where(labels == 1, 1, -1)
    best_mask, best_score = None, 0
    for i in range(len(regions)):
        inside = regions.masks[i][ys, xs]
        if not inside[sign > 0].any():
            continue
        score = int((inside * sign).sum())
        if best_mask is None or score > best_score:
            best_mask, best_score = regions.masks[i], score
    if best_mask is None:
        raise QueryError("no segment of the image lies under the foreground points")
    return done(best_mask, "segment")
