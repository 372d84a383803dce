"""Boundary refinement: optional post-processing of any backend's masks.

Two methods, as functions on ``(image, Regions)`` and as a wrapping segmenter:

* ``smooth`` (cheap, no model): morphological opening then closing of each mask (removes specks
  and fills pin-holes up to ``radius`` px), then an edge-aware step: a guided filter (He et al.)
  of the mask with the grey image as guide, re-thresholded at 0.5, so boundaries snap to image
  edges within a few pixels. Tens of milliseconds per mask at VGA size.
* ``sam``: each mask becomes a SAM prompt (its box, plus its innermost pixel as a foreground
  point); SAM's mask replaces it when the two agree (IoU >= ``min_iou``), else the original is
  kept. Good for coarse masks (semantic, low-resolution panoptic); one SAM image embedding per
  image.

* ``crf``: a fully connected CRF (Kraehenbuehl & Koltun) per mask, with the mask as a soft unary
  and Gaussian + bilateral (colour) pairwise terms. Needs ``pydensecrf2`` (``pip install
  'segindex[crf]'``; a source distribution that compiles with a C++ compiler). Slowest of the
  three (about 0.1-0.3 s per mask at VGA size).

:class:`RefinedSegmenter` (registry name ``refined``) wraps a backend by name::

    segindex ingest photos/ --index p.segindex --segmenter refined \\
        --segmenter-option base=semantic --segmenter-option method=smooth
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from segindex.errors import ConfigError
from segindex.masks import boxes_from_masks
from segindex.regions import Regions
from segindex.segment.base import Segmenter, check_image
from segindex.validate import fraction, number, positive_int

Method = Literal["smooth", "sam", "crf"]


def smooth_masks(
    image: np.ndarray, regions: Regions, radius: int = 2, eps: float = 1e-3
) -> Regions:
    """``regions`` with every mask opened/closed and guided-filtered (see the module doc).

    image: ``HxWx3`` uint8 RGB; radius: structuring element and guided-filter window radius in
    pixels (>= 1); eps: guided-filter regularisation (larger = smoother, less edge-bound).
    A mask that the smoothing would erase entirely is kept as it was.
    """
    from scipy import ndimage

    check_image(image)
    radius = positive_int("radius", radius)
    if not len(regions):
        return regions
    guide = image.astype(np.float32).mean(axis=2) / 255.0
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = xx**2 + yy**2 <= radius**2
    out = np.empty_like(regions.masks)
    for i, mask in enumerate(regions.masks):
        m = ndimage.binary_opening(mask, structure=disk)
        m = ndimage.binary_closing(m, structure=disk) | m  # closing may erode at the border
        smoothed = guided_filter(guide, m.astype(np.float32), radius, eps) >= 0.5
        out[i] = smoothed if smoothed.any() else mask
    return _with_masks(regions, out)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey-guide guided filter (He, Sun, Tang 2010): ``(H, W)`` float32 in, ``(H, W)`` out."""
    from scipy.ndimage import uniform_filter

    size = 2 * radius + 1

    def box(x: np.ndarray) -> np.ndarray:
        return uniform_filter(x, size=size, mode="reflect")

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def crf_masks(
    image: np.ndarray,
    regions: Regions,
    iterations: int = 5,
    confidence: float = 0.8,
    sxy_bilateral: float = 40.0,
    srgb: float = 13.0,
) -> Regions:
    """``regions`` with every mask re-estimated by a two-label dense CRF (see the module doc).

    confidence: probability the unary gives a pixel's own mask value, in (0.5, 1).
    A mask the CRF would erase entirely is kept as it was.
    """
    check_image(image)
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError as exc:
        raise ConfigError(
            "dense-CRF refinement needs pydensecrf2: pip install 'segindex[crf]'"
        ) from exc
    confidence = number("confidence", confidence, lo=0.5, hi=1, lo_open=True, hi_open=True)
    height, width = image.shape[:2]
    rgb = np.ascontiguousarray(image)
    out = np.empty_like(regions.masks)
    for i, mask in enumerate(regions.masks):
        p = np.where(mask, confidence, 1.0 - confidence).astype(np.float32)
        crf = dcrf.DenseCRF2D(width, height, 2)
        crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.stack([1.0 - p, p]))))
        crf.addPairwiseGaussian(sxy=3, compat=3)
        crf.addPairwiseBilateral(sxy=sxy_bilateral, srgb=srgb, rgbim=rgb, compat=10)
        q = np.asarray(crf.inference(iterations)).reshape(2, height, width)
        refined = q[1] > q[0]
        out[i] = refined if refined.any() else mask
    return _with_masks(regions, out)


def sam_refine(
    image: np.ndarray, regions: Regions, sam: Any, min_iou: float = 0.5
) -> tuple[Regions, np.ndarray]:
    """``(refined regions, (N,) bool: SAM's mask was taken)``; see the module doc.

    sam: a promptable SAM-like segmenter (``sam`` or ``sam_onnx`` backend). Labels, scores and
    thing flags are kept from ``regions``; only masks (and boxes) change.
    """
    from scipy import ndimage

    check_image(image)
    if isinstance(sam, Segmenter):
        able = sam.prompts_each  # declared by the backend (SAM-like ones)
    else:  # a stand-in that is no Segmenter qualifies by having the method
        able = callable(getattr(sam, "prompt_each", None))
    if not able:
        raise ConfigError(f"SAM refinement needs a SAM backend, got {type(sam).__name__}")
    n = len(regions)
    if n == 0:
        return regions, np.zeros(0, dtype=bool)
    points, labels = [], []
    for mask in regions.masks:
        depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(depth.argmax()), depth.shape)
        points.append(np.array([[x + 0.5, y + 0.5]], dtype=np.float32))
        labels.append(np.ones(1, dtype=np.int64))
    proposed = sam.prompt_each(image, regions.boxes, points, labels)
    inter = (proposed.masks & regions.masks).sum(axis=(1, 2))
    union = (proposed.masks | regions.masks).sum(axis=(1, 2))
    agree = (union > 0) & (inter >= min_iou * np.maximum(union, 1))
    masks = np.where(agree[:, None, None], proposed.masks, regions.masks)
    return _with_masks(regions, masks), agree


class RefinedSegmenter(Segmenter):
    """Any registered segmenter followed by boundary refinement.

    Args:
        base: registry name of the segmenter whose masks are refined.
        base_options: its options (``device`` and ``precision`` are passed on).
        method: ``smooth``, ``sam`` or ``crf`` (see the module doc).
        radius, eps: ``smooth`` settings.
        refiner: registry name of the SAM backend for ``sam`` (``sam_onnx`` or ``sam``).
        refiner_options: its options.
        min_iou: ``sam``: SAM's mask replaces the original only at IoU >= this.
    """

    name = "refined"

    def __init__(
        self,
        base: str = "panoptic",
        *,
        base_options: dict[str, Any] | None = None,
        method: Method = "smooth",
        radius: int = 2,
        eps: float = 1e-3,
        refiner: str = "sam_onnx",
        refiner_options: dict[str, Any] | None = None,
        min_iou: float = 0.5,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        from segindex.segment import SEGMENTERS

        if method not in ("smooth", "sam", "crf"):
            raise ConfigError(f"refinement method must be 'smooth', 'sam' or 'crf', got {method!r}")
        self.method = method
        self.min_iou = fraction("min_iou", min_iou)
        self.radius = positive_int("radius", radius)
        self.eps = number("eps", eps, lo=0, lo_open=True)
        self.base = SEGMENTERS.build_on(
            base, dict(base_options or {}), device=device, precision=precision
        )
        self.promptable = self.base.promptable
        self.refiner = None
        if method == "sam":
            self.refiner = SEGMENTERS.build_on(
                refiner, dict(refiner_options or {}), device=device, precision=precision
            )
            if not self.refiner.prompts_each:
                raise ConfigError(f"refiner {refiner!r} is not a SAM backend (sam, sam_onnx)")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "base": self.base.describe(), "method": self.method}
        if self.method == "smooth":
            d.update(radius=self.radius, eps=self.eps)
        elif self.method == "sam":
            d.update(refiner=self.refiner.describe(), min_iou=self.min_iou)  # type: ignore[union-attr]  # set for sam
        return d

    def refine(self, image: np.ndarray, regions: Regions) -> Regions:
        """Apply this segmenter's refinement to ``regions`` of ``image``."""
        if self.method == "smooth":
            return smooth_masks(image, regions, self.radius, self.eps)
        if self.method == "crf":
            return crf_masks(image, regions)
        return sam_refine(image, regions, self.refiner, self.min_iou)[0]

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        found = self.base.segment(images, batch_size=len(images))
        return [self.refine(im, r) for im, r in zip(images, found, strict=True)]

    def prompt(self, image: np.ndarray, **prompts: Any) -> Regions:
        return self.refine(image, self.base.prompt(image, **prompts))


def _with_masks(regions: Regions, masks: np.ndarray) -> Regions:
    return Regions(
        masks=masks,
        boxes=boxes_from_masks(masks),
        label_ids=regions.label_ids,
        labels=regions.labels,
        scores=regions.scores,
        is_thing=regions.is_thing,
    )


__all__ = ["RefinedSegmenter", "crf_masks", "guided_filter", "sam_refine", "smooth_masks"]
