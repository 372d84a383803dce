"""What every SAM-like backend shares: automatic mask generation and box/point prompting.

A backend (:class:`SamLikeSegmenter` subclass) supplies two things: an image embedding computed
once per image (:meth:`SamLikeSegmenter._embed`) and a prompt decoder (:meth:`_decode`). This
module does the rest, following segment-anything's ``SamAutomaticMaskGenerator``:

* a regular grid of ``points_per_side**2`` foreground points per crop (one crop, the whole image,
  unless ``crop_n_layers > 0``: layer ``i`` adds ``(2**i)**2`` overlapping crops, each with
  ``points_per_side / crop_n_points_downscale_factor**i`` points per side);
* each point prompt gives candidate masks (mask logits at the crop's resolution plus the model's
  predicted IoU); candidates are kept when predicted IoU >= ``pred_iou_thresh`` and stability
  (IoU of the masks thresholded at ``mask_threshold +- stability_score_offset``) >=
  ``stability_score_thresh``; masks that touch an inner crop edge are dropped;
* masks smaller than ``min_area`` pixels are dropped, then greedy mask NMS (mask IoU, not box IoU)
  at ``nms_thresh``, best predicted IoU first, so no two returned masks overlap above it.

Regions from SAM are class-agnostic: ``label_ids`` -1, ``labels`` ``"object"``, ``scores`` the
predicted IoU clipped to [0, 1] (see :mod:`segindex.labels` for open-vocabulary names).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from itertools import product
from typing import Any

import numpy as np

from segindex.errors import QueryError
from segindex.masks import boxes_from_masks, iou_matrix
from segindex.regions import Regions
from segindex.segment.base import Segmenter, check_image
from segindex.validate import fraction, integer, number

#: SAM ONNX point label convention (also used by the prompt decoders here)
LABEL_BACKGROUND, LABEL_FOREGROUND, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = 0, 1, 2, 3
#: masks whose box lies within this many pixels of an inner crop edge are dropped
_CROP_EDGE_TOLERANCE = 20.0


class SamLikeSegmenter(Segmenter):
    """Base of SAM-like backends: automatic "segment everything" and box/point prompts.

    Args (shared by every SAM backend):
        points_per_side: grid of point prompts per side on the full image (>= 1).
        points_per_batch: point prompts per decoder call (backends whose decoder takes one
            prompt at a time loop inside the call).
        pred_iou_thresh: minimum predicted IoU of a mask, in [0, 1].
        stability_score_thresh: minimum stability score, in [0, 1].
        stability_score_offset: logit offset of the stability score (> 0).
        nms_thresh: maximum mask IoU between two returned masks, in [0, 1].
        min_area: masks with fewer pixels are dropped (>= 0).
        crop_n_layers: extra layers of image crops (0: the whole image only).
        crop_overlap_ratio: overlap of neighbouring crops, as a fraction of the short side.
        crop_n_points_downscale_factor: points per side shrink by this factor per layer.
        mask_threshold: logit level at which masks are binarised.
    """

    promptable = True
    prompts_each = True

    def __init__(
        self,
        *,
        points_per_side: int = 16,
        points_per_batch: int = 16,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.85,
        stability_score_offset: float = 1.0,
        nms_thresh: float = 0.7,
        min_area: int = 0,
        crop_n_layers: int = 0,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        mask_threshold: float = 0.0,
    ) -> None:
        self.points_per_side = integer("points_per_side", points_per_side, lo=1)
        self.points_per_batch = integer("points_per_batch", points_per_batch, lo=1)
        self.pred_iou_thresh = fraction("pred_iou_thresh", pred_iou_thresh)
        self.stability_score_thresh = fraction("stability_score_thresh", stability_score_thresh)
        self.stability_score_offset = number(
            "stability_score_offset", stability_score_offset, lo=0, lo_open=True
        )
        self.nms_thresh = fraction("nms_thresh", nms_thresh)
        self.min_area = integer("min_area", min_area, lo=0)
        self.crop_n_layers = integer("crop_n_layers", crop_n_layers, lo=0)
        self.crop_overlap_ratio = fraction("crop_overlap_ratio", crop_overlap_ratio)
        self.crop_n_points_downscale_factor = integer(
            "crop_n_points_downscale_factor", crop_n_points_downscale_factor, lo=1
        )
        self.mask_threshold = float(mask_threshold)

    # -- what a backend supplies ----------------------------------------------------------------

    @abstractmethod
    def _embed(self, image: np.ndarray) -> Any:
        """Image embedding (and whatever the decoder needs) of one ``HxWx3`` uint8 RGB image."""

    @abstractmethod
    def _decode(
        self,
        state: Any,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode ``B`` prompts on the embedded image.

        points: ``(B, P, 2)`` float32 XY pixels of the embedded image, with ``labels`` ``(B, P)``
                int (1 foreground, 0 background); or None
        boxes:  ``(B, 4)`` float32 XYXY pixels; or None (at least one of points/boxes is given)
        multimask: ask for several candidate masks per prompt (a backend may return one)

        Returns ``(logits (B, K, H, W) float32 at the embedded image's resolution,
        predicted IoU (B, K) float32)``.
        """

    def _sam_settings(self) -> dict[str, Any]:
        return {
            "points_per_side": self.points_per_side,
            "pred_iou_thresh": self.pred_iou_thresh,
            "stability_score_thresh": self.stability_score_thresh,
            "stability_score_offset": self.stability_score_offset,
            "nms_thresh": self.nms_thresh,
            "min_area": self.min_area,
            "crop_n_layers": self.crop_n_layers,
            "crop_overlap_ratio": self.crop_overlap_ratio,
            "crop_n_points_downscale_factor": self.crop_n_points_downscale_factor,
            "mask_threshold": self.mask_threshold,
        }

    # -- automatic ------------------------------------------------------------------------------

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        return [self.generate(image) for image in images]

    def generate(self, image: np.ndarray) -> Regions:
        """Segment everything in one ``HxWx3`` uint8 RGB image (see the module doc)."""
        check_image(image)
        height, width = image.shape[:2]
        crops = crop_boxes(height, width, self.crop_n_layers, self.crop_overlap_ratio)
        masks: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        for layer, box in crops:
            m, s = self._generate_crop(image, box, layer)
            masks.append(m)
            scores.append(s)
        all_masks = np.concatenate(masks) if masks else np.zeros((0, height, width), bool)
        all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        if self.min_area > 0 and len(all_masks):
            big = all_masks.sum(axis=(1, 2)) >= self.min_area
            all_masks, all_scores = all_masks[big], all_scores[big]
        keep = mask_nms(all_masks, all_scores, self.nms_thresh)
        return _class_agnostic(all_masks[keep], all_scores[keep])

    def _generate_crop(
        self, image: np.ndarray, box: tuple[int, int, int, int], layer: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Kept masks ``(M, H, W)`` bool in full-image coordinates and their scores ``(M,)``."""
        height, width = image.shape[:2]
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        state = self._embed(crop)
        n_side = max(1, self.points_per_side // (self.crop_n_points_downscale_factor**layer))
        grid = point_grid(n_side) * np.array([x1 - x0, y1 - y0], dtype=np.float32)
        kept_masks: list[np.ndarray] = []
        kept_scores: list[np.ndarray] = []
        for start in range(0, len(grid), self.points_per_batch):
            pts = grid[start : start + self.points_per_batch, None, :]  # (B, 1, 2)
            labels = np.full(pts.shape[:2], LABEL_FOREGROUND, dtype=np.int64)
            logits, iou = self._decode(state, pts, labels, None, multimask=True)
            logits = logits.reshape(-1, *logits.shape[-2:])
            iou = iou.reshape(-1).astype(np.float32)
            ok = iou >= self.pred_iou_thresh
            if not ok.any():
                continue
            logits, iou = logits[ok], iou[ok]
            stable = (
                stability_score(logits, self.mask_threshold, self.stability_score_offset)
                >= self.stability_score_thresh
            )
            masks = logits[stable] > self.mask_threshold
            iou = iou[stable]
            if not len(masks):
                continue
            nonempty = masks.reshape(len(masks), -1).any(axis=1)
            masks, iou = masks[nonempty], iou[nonempty]
            if box != (0, 0, width, height):
                inside = ~_near_crop_edge(masks, box, width, height)
                masks, iou = masks[inside], iou[inside]
            kept_masks.append(_uncrop(masks, box, height, width))
            kept_scores.append(iou)
        if not kept_masks:
            return np.zeros((0, height, width), bool), np.zeros(0, np.float32)
        masks = np.concatenate(kept_masks)
        scores = np.concatenate(kept_scores)
        keep = mask_nms(masks, scores, self.nms_thresh)
        return masks[keep], scores[keep]

    # -- prompts --------------------------------------------------------------------------------

    def prompt(
        self,
        image: np.ndarray,
        *,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
    ) -> Regions:
        """Masks for box/point prompts on one ``HxWx3`` uint8 RGB image.

        boxes:        ``(B, 4)`` float XYXY pixels; one mask per box
        points:       ``(P, 2)`` float XY pixels, with ``point_labels`` ``(P,)`` int (1 foreground,
                      0 background; all foreground when omitted); together with a single box
                      they refine it, alone they give one mask
        Returns one class-agnostic region per box (or one for points alone), in prompt order,
        ``scores`` the predicted IoU; a prompt whose mask is empty still gets its (empty) row.
        """
        check_image(image)
        boxes_a, points_a, labels_a = check_prompts(image.shape[:2], boxes, points, point_labels)
        state = self._embed(image)
        if boxes_a is not None:
            pts = None if points_a is None else points_a[None]
            lbl = None if labels_a is None else labels_a[None]
            logits, iou = self._decode(state, pts, lbl, boxes_a, multimask=False)
        else:
            # one point alone is ambiguous (part / object / whole): ask for several, keep the best
            multimask = len(points_a) == 1  # type: ignore[arg-type]  # no box: check_prompts gave points
            logits, iou = self._decode(state, points_a[None], labels_a[None], None, multimask)  # type: ignore[index]  # and their labels
        best = iou.argmax(axis=1)
        rows = np.arange(len(best))
        masks = logits[rows, best] > self.mask_threshold
        return _class_agnostic(masks, iou[rows, best])

    def prompt_each(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        points: list[np.ndarray],
        point_labels: list[np.ndarray],
    ) -> Regions:
        """One mask per box, each refined by its own points; the image is embedded once.

        boxes: ``(B, 4)`` float XYXY pixels; points[i]: ``(P_i, 2)`` float XY pixels with
        point_labels[i] ``(P_i,)`` int (1 foreground, 0 background), ``P_i`` may be 0.
        """
        check_image(image)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if not (len(boxes) == len(points) == len(point_labels)):
            raise QueryError(
                f"need one points/labels array per box, got {len(boxes)} boxes, "
                f"{len(points)} point sets, {len(point_labels)} label sets"
            )
        if not len(boxes):
            return Regions.empty(*image.shape[:2])
        state = self._embed(image)
        masks, scores = [], []
        for box, pts, lab in zip(boxes, points, point_labels, strict=True):
            b, p, lb = check_prompts(
                image.shape[:2], box, pts if len(pts) else None, lab if len(pts) else None
            )
            logits, iou = self._decode(
                state,
                None if p is None else p[None],
                None if lb is None else lb[None],
                b,
                multimask=False,
            )
            k = int(iou[0].argmax())
            masks.append(logits[0, k] > self.mask_threshold)
            scores.append(float(iou[0, k]))
        return _class_agnostic(np.stack(masks), np.asarray(scores))


def check_prompts(
    image_size: tuple[int, int],
    boxes: np.ndarray | None,
    points: np.ndarray | None,
    point_labels: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validated ``(boxes (B, 4) float32, points (P, 2) float32, labels (P,) int64)``.

    Raises ``QueryError`` on a malformed prompt, saying what was expected and what came.
    """
    height, width = image_size
    if boxes is None and points is None:
        raise QueryError("a prompt needs boxes and/or points")
    b = None
    if boxes is not None:
        b = np.asarray(boxes, dtype=np.float32)
        if b.ndim == 1 and b.shape == (4,):
            b = b[None]
        if b.ndim != 2 or b.shape[1] != 4 or len(b) == 0:
            raise QueryError(f"boxes must be (B, 4) XYXY pixels, got shape {b.shape}")
        if not np.isfinite(b).all() or (b[:, 2] <= b[:, 0]).any() or (b[:, 3] <= b[:, 1]).any():
            raise QueryError(
                f"boxes must be finite XYXY with x1 > x0 and y1 > y0, got {b.tolist()}"
            )
        b = b.copy()
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    p = lab = None
    if points is not None:
        p = np.asarray(points, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0 or not np.isfinite(p).all():
            raise QueryError(f"points must be (P, 2) finite XY pixels, got shape {p.shape}")
        if point_labels is None:
            lab = np.ones(len(p), dtype=np.int64)
        else:
            lab = np.asarray(point_labels)
            if lab.shape != (len(p),) or not np.isin(lab, (0, 1)).all():
                raise QueryError(
                    f"point_labels must be ({len(p)},) of 0 (background) / 1 (foreground), "
                    f"got {lab.tolist()}"
                )
            lab = lab.astype(np.int64)
        if b is not None and len(b) != 1:
            raise QueryError(f"points refine a single box; got {len(b)} boxes with points")
    elif point_labels is not None:
        raise QueryError("point_labels given without points")
    return b, p, lab


def _class_agnostic(masks: np.ndarray, scores: np.ndarray) -> Regions:
    n = len(masks)
    return Regions.from_masks(
        masks,
        label_ids=[-1] * n,
        labels=["object"] * n,
        scores=np.clip(np.asarray(scores, dtype=np.float32), 0.0, 1.0),
        is_thing=[True] * n,
    )


def point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float32 XY points in [0, 1], cell centres of an n x n grid."""
    offset = 1.0 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side, dtype=np.float32)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def crop_boxes(
    height: int, width: int, n_layers: int, overlap_ratio: float
) -> list[tuple[int, tuple[int, int, int, int]]]:
    """``(layer, XYXY crop box)`` pairs: the whole image, then ``(2**i)**2`` crops per layer."""
    out: list[tuple[int, tuple[int, int, int, int]]] = [(0, (0, 0, width, height))]
    short = min(height, width)
    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * short * (2 / n))
        crop_w = math.ceil((overlap * (n - 1) + width) / n)
        crop_h = math.ceil((overlap * (n - 1) + height) / n)
        xs = [int((crop_w - overlap) * k) for k in range(n)]
        ys = [int((crop_h - overlap) * k) for k in range(n)]
        for x0, y0 in product(xs, ys):
            out.append((i + 1, (x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height))))
    return out


def stability_score(logits: np.ndarray, threshold: float, offset: float) -> np.ndarray:
    """``(N,)`` IoU between ``(N, H, W)`` logits thresholded at ``threshold +- offset``."""
    flat = logits.reshape(len(logits), -1)
    inter = (flat > threshold + offset).sum(axis=1, dtype=np.int64)
    union = (flat > threshold - offset).sum(axis=1, dtype=np.int64)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)


def mask_nms(masks: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of masks kept by greedy NMS on mask IoU, best score first (in that order)."""
    if len(masks) == 0:
        return np.zeros(0, dtype=np.int64)
    iou = iou_matrix(masks)
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept: list[int] = []
    for i in order:
        if all(iou[i, j] <= threshold for j in kept):
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def _near_crop_edge(
    masks: np.ndarray, box: tuple[int, int, int, int], width: int, height: int
) -> np.ndarray:
    """``(N,)`` bool: the mask's box (crop coordinates) touches an edge of the crop that is not
    an edge of the image."""
    x0, y0, x1, y1 = box
    b = boxes_from_masks(masks) + np.array([x0, y0, x0, y0], dtype=np.float32)
    crop = np.array(box, dtype=np.float32)
    image = np.array([0, 0, width, height], dtype=np.float32)
    near_crop = np.abs(b - crop) <= _CROP_EDGE_TOLERANCE
    near_image = np.abs(b - image) <= _CROP_EDGE_TOLERANCE
    return np.any(near_crop & ~near_image, axis=1)


def _uncrop(
    masks: np.ndarray, box: tuple[int, int, int, int], height: int, width: int
) -> np.ndarray:
    x0, y0, x1, y1 = box
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return masks
    out = np.zeros((len(masks), height, width), dtype=bool)
    out[:, y0:y1, x0:x1] = masks
    return out


__all__ = [
    "SamLikeSegmenter",
    "check_prompts",
    "crop_boxes",
    "mask_nms",
    "point_grid",
    "stability_score",
]
