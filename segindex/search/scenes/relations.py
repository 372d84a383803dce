"""Relations between two regions (images) or two tracks (videos), on boxes first and on masks
only when the boxes cannot decide.

Geometry of a region (a :class:`~segindex.search.hits.Hit`): its box ``(x0, y0, x1, y1)`` in
pixels (``x1``/``y1`` exclusive), its mask (COCO RLE, decoded on demand and cached), its area.

* left of / right of / above / below: by mask centroid (pixel centres, ``x + 0.5``); ``a`` is
  left of ``b`` when ``cx(a) + margin * width < cx(b)`` (above: ``cy(a) + margin * height <
  cy(b)``, y grows downwards). A centroid lies within ``[x0 + 0.5, x1 - 0.5]``, so boxes that are
  apart decide without decoding a mask.
* inside: ``|a ∩ fill(b)| / |a| >= min_fraction``, where ``fill(b)`` is ``b``'s mask with its
  holes filled: a panoptic segmenter gives every pixel to one region, so a cup on a table is a
  hole in the table's mask, and it is inside the table when the table surrounds it (with
  overlapping masks, e.g. SAM's, ``fill(b)`` contains ``b`` and nothing changes for hole-free
  masks). overlaps: IoU (or ``|a ∩ b| / min(|a|, |b|)``) ``>= min_iou``, on the masks as they are
  (disjoint panoptic masks never overlap). The intersection of the boxes bounds the masks'
  intersection: boxes that do not overlap enough decide; otherwise the masks are decoded (only
  inside the boxes' intersection).
* near: the gap between the boxes (Euclidean, 0 when they touch or overlap) ``<= max_gap`` times
  the mean of the two box diagonals (boxes only).
* larger than: ``area(a) > ratio * area(b)`` (stored mask areas).
* videos: a spatial relation between two tracks holds when it holds on at least one sampled
  frame where both tracks have a region; during: the tracks' spans ``[start_s, end_s]`` overlap
  by ``>= min_overlap_s``; then: ``b`` starts strictly after ``a`` starts, at most ``within_s``
  later.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from segindex import rle as rle_codec
from segindex.search.hits import Hit
from segindex.search.scenes.algebra import (
    Above,
    Below,
    During,
    Inside,
    LargerThan,
    LeftOf,
    Near,
    Overlaps,
    Relation,
    RightOf,
    Then,
)

__all__ = ["Geometry", "holds", "holds_tracks"]


class Geometry:
    """Masks, centroids and intersections of regions, computed once per region (pair) and
    cached; ``decoded`` counts the masks decoded (tests check the box shortcuts)."""

    def __init__(self) -> None:
        self._masks: dict[int, np.ndarray] = {}
        self._centroids: dict[int, tuple[float, float]] = {}
        self._filled: dict[int, np.ndarray] = {}
        self.decoded = 0

    def mask(self, h: Hit) -> np.ndarray:
        m = self._masks.get(h.region_id)
        if m is None:
            m = self._masks[h.region_id] = rle_codec.decode(h.rle)
            self.decoded += 1
        return m

    def centroid(self, h: Hit) -> tuple[float, float]:
        c = self._centroids.get(h.region_id)
        if c is None:
            ys, xs = np.nonzero(self.mask(h))
            if len(xs) == 0:  # an empty mask: the box centre
                x0, y0, x1, y1 = h.bbox
                c = ((x0 + x1) / 2, (y0 + y1) / 2)
            else:
                c = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
            self._centroids[h.region_id] = c
        return c

    def filled(self, h: Hit) -> np.ndarray:
        """The region's mask with its holes filled (``scipy.ndimage.binary_fill_holes``)."""
        m = self._filled.get(h.region_id)
        if m is None:
            from scipy.ndimage import binary_fill_holes

            m = self._filled[h.region_id] = np.asarray(binary_fill_holes(self.mask(h)), bool)
        return m

    def intersection(self, a: Hit, b: Hit, *, fill_b: bool = False) -> int:
        """``|a ∩ b|`` in pixels (masks decoded; only the boxes' intersection is compared);
        ``fill_b``: against ``b``'s mask with its holes filled."""
        x0, y0, x1, y1 = _box_overlap(a, b)
        if x1 <= x0 or y1 <= y0:
            return 0
        ma, mb = self.mask(a), (self.filled(b) if fill_b else self.mask(b))
        if ma.shape != mb.shape:
            return 0
        xs, ys = slice(int(x0), int(math.ceil(x1))), slice(int(y0), int(math.ceil(y1)))
        return int(np.count_nonzero(ma[ys, xs] & mb[ys, xs]))


def _box_overlap(a: Hit, b: Hit) -> tuple[float, float, float, float]:
    return (
        max(a.bbox[0], b.bbox[0]),
        max(a.bbox[1], b.bbox[1]),
        min(a.bbox[2], b.bbox[2]),
        min(a.bbox[3], b.bbox[3]),
    )


def _size(h: Hit) -> tuple[int, int]:
    """``(height, width)`` of the region's image."""
    size = h.rle["size"]
    return int(size[0]), int(size[1])


def _before(geo: Geometry, a: Hit, b: Hit, axis: int, margin: float) -> bool:
    """``centre(a) + margin * extent < centre(b)`` along ``axis`` (0: x, 1: y)."""
    extent = _size(a)[1 - axis]
    shift = margin * extent
    a_lo, a_hi = a.bbox[axis] + 0.5, a.bbox[axis + 2] - 0.5
    b_lo, b_hi = b.bbox[axis] + 0.5, b.bbox[axis + 2] - 0.5
    if a_hi + shift < b_lo:  # the boxes decide: every centre of a is before every centre of b
        return True
    if a_lo + shift >= b_hi:
        return False
    return geo.centroid(a)[axis] + shift < geo.centroid(b)[axis]


def _overlap_bound(a: Hit, b: Hit) -> float:
    """An upper bound of ``|a ∩ b|``: the boxes' intersection, and each area."""
    x0, y0, x1, y1 = _box_overlap(a, b)
    box = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return min(box, float(a.area), float(b.area))


def holds(rel: Relation, a: Hit, b: Hit, geo: Geometry) -> bool:
    """Whether the spatial relation ``rel`` holds between regions ``a`` and ``b`` (temporal
    relations hold between two regions of one image: they are present at once)."""
    if isinstance(rel, LeftOf):
        return _before(geo, a, b, 0, rel.margin)
    if isinstance(rel, RightOf):
        return _before(geo, b, a, 0, rel.margin)
    if isinstance(rel, Above):
        return _before(geo, a, b, 1, rel.margin)
    if isinstance(rel, Below):
        return _before(geo, b, a, 1, rel.margin)
    if isinstance(rel, Inside):  # fill(b) lies within b's box: the box intersection bounds it
        x0, y0, x1, y1 = _box_overlap(a, b)
        bound = min(max(0.0, x1 - x0) * max(0.0, y1 - y0), float(a.area))
        if a.area <= 0 or bound / a.area < rel.min_fraction:
            return False
        return geo.intersection(a, b, fill_b=True) / a.area >= rel.min_fraction
    if isinstance(rel, Overlaps):
        return _overlaps(rel, a, b, geo)
    if isinstance(rel, Near):
        dx = max(0.0, b.bbox[0] - a.bbox[2], a.bbox[0] - b.bbox[2])
        dy = max(0.0, b.bbox[1] - a.bbox[3], a.bbox[1] - b.bbox[3])
        diag = (_diagonal(a) + _diagonal(b)) / 2
        return math.hypot(dx, dy) <= rel.max_gap * diag
    if isinstance(rel, LargerThan):
        return a.area > rel.ratio * b.area
    if isinstance(rel, (During, Then)):
        return True
    raise TypeError(f"not a relation: {rel!r}")


def _overlaps(rel: Overlaps, a: Hit, b: Hit, geo: Geometry) -> bool:
    def score(inter: float) -> float:
        if rel.mode == "smaller":
            small = min(a.area, b.area)
            return inter / small if small > 0 else 0.0
        union = a.area + b.area - inter
        return inter / union if union > 0 else 0.0

    if score(_overlap_bound(a, b)) < rel.min_iou:  # both scores grow with the intersection
        return False
    return score(float(geo.intersection(a, b))) >= rel.min_iou


def _diagonal(h: Hit) -> float:
    return math.hypot(h.bbox[2] - h.bbox[0], h.bbox[3] - h.bbox[1])


def holds_tracks(
    rel: Relation, a: Any, b: Any, frames: dict[int, dict[int, Hit]], geo: Geometry
) -> bool:
    """Whether ``rel`` holds between tracks ``a`` and ``b``
    (:class:`~segindex.search.tracks.TrackHit`); ``frames[track_id]`` maps a frame index to
    the track's region on that frame."""
    if isinstance(rel, During):
        overlap = min(a.end_s, b.end_s) - max(a.start_s, b.start_s)
        return overlap >= rel.min_overlap_s - 1e-9
    if isinstance(rel, Then):
        lag = b.start_s - a.start_s
        return lag > 1e-9 and lag <= rel.within_s + 1e-9
    fa, fb = frames.get(int(a.track_id), {}), frames.get(int(b.track_id), {})
    return any(holds(rel, fa[i], fb[i], geo) for i in sorted(fa.keys() & fb.keys()))
