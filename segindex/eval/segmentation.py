"""Segmentation metrics: predictions vs ground truth, both as COCO :class:`MaskSet` s.

Per image, masks become two maps (see :func:`paint`): a semantic map (category per pixel) and
a panoptic map (segment per pixel). Overlapping predictions are resolved by score: the highest
scoring mask is painted last and wins; ground truth is painted in file order. Pixels without a
ground-truth segment are void and ignored, as in COCO panoptic.

Metrics, per class and averaged over the classes that occur (in GT or predictions):

    iou, dice, accuracy   semantic, from one confusion matrix over all images
    boundary_f            F-score of boundary pixels matched within ``boundary_f_tol`` x diagonal
                          (Perazzi et al. 2016), per image and class, then averaged
    boundary_iou          Boundary IoU (Cheng et al. 2021), band ``boundary_iou_ratio`` x diagonal
    pq, sq, rq            panoptic quality (Kirillov et al. 2019), the panopticapi procedure:
                          matches need IoU > 0.5, void and same-class crowd pixels are left out
    best_iou              per ground-truth instance, the best mask IoU of any prediction
                          (class-agnostic; the pycocotools IoU)

Predicted classes are matched to ground-truth classes by name; a predicted class that the ground
truth does not know is treated as void (counted under ``unknown_pred_segments``).
``class_agnostic=True`` maps every class on both sides to one thing class, ``object``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segindex.formats.coco import Category, ImageMasks, MaskSet
from segindex.masks import iou_matrix

VOID = 0


# -- boundaries ---------------------------------------------------------------------------------


def boundary_band(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Pixels of ``mask`` within ``d`` (chessboard) of its contour, ``d = ratio x diagonal``
    (at least 1 px); the image border counts as contour (the Boundary IoU reference code)."""
    from scipy import ndimage

    h, w = mask.shape
    d = max(1, int(round(dilation_ratio * np.sqrt(h * h + w * w))))
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    eroded = ndimage.binary_erosion(padded, structure=np.ones((3, 3), bool), iterations=d)
    return mask & ~eroded[1:-1, 1:-1]


def boundary_iou(gt: np.ndarray, pred: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two ``HxW`` bool masks; 1 when both are empty, 0 when one is."""
    g, p = boundary_band(gt, dilation_ratio), boundary_band(pred, dilation_ratio)
    union = np.logical_or(g, p).sum()
    return 1.0 if union == 0 else float(np.logical_and(g, p).sum() / union)


def _contour(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=1)


def boundary_f(gt: np.ndarray, pred: np.ndarray, tolerance: float = 0.008) -> float:
    """Boundary F-score of two ``HxW`` bool masks: contour pixels count as matched within
    ``tolerance x diagonal`` (at least 1 px) of the other contour; 1 when both are empty."""
    from scipy import ndimage

    h, w = gt.shape
    tol = max(1.0, float(np.ceil(tolerance * np.sqrt(h * h + w * w))))
    gb, pb = _contour(gt.astype(bool)), _contour(pred.astype(bool))
    ng, np_ = int(gb.sum()), int(pb.sum())
    if ng == 0 and np_ == 0:
        return 1.0
    if ng == 0 or np_ == 0:
        return 0.0
    near_g = ndimage.distance_transform_edt(~gb) <= tol
    near_p = ndimage.distance_transform_edt(~pb) <= tol
    precision = float((pb & near_g).sum() / np_)
    recall = float((gb & near_p).sum() / ng)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


# -- panoptic quality ---------------------------------------------------------------------------


@dataclass
class Segment:
    id: int
    category: int  # index into the evaluation's class list (1-based; 0 is void)
    area: int
    iscrowd: bool = False


@dataclass
class PQStat:
    """Per-class accumulators of the panopticapi procedure (index 0 unused)."""

    n_classes: int
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    iou: np.ndarray = field(init=False)
    matched_ious: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        k = self.n_classes + 1
        self.tp, self.fp, self.fn = (np.zeros(k, np.int64) for _ in range(3))
        self.iou = np.zeros(k, np.float64)

    def add_image(
        self,
        gt_map: np.ndarray,
        gt_segments: list[Segment],
        pred_map: np.ndarray,
        pred_segments: list[Segment],
    ) -> None:
        """Accumulate one image: ``HxW`` int64 segment-id maps (0 = void) and their segments."""
        offset = int(max(pred_map.max(initial=0), max((s.id for s in pred_segments), default=0)))
        offset += 1
        pairs, counts = np.unique(gt_map.astype(np.int64) * offset + pred_map, return_counts=True)
        inter = {
            (int(p // offset), int(p % offset)): int(c) for p, c in zip(pairs, counts, strict=True)
        }
        gts = {s.id: s for s in gt_segments}
        preds = {s.id: s for s in pred_segments}
        gt_done: set[int] = set()
        pred_done: set[int] = set()
        for (g, p), n in inter.items():
            if g not in gts or p not in preds:
                continue
            gs, ps = gts[g], preds[p]
            if gs.iscrowd or gs.category != ps.category:
                continue
            union = ps.area + gs.area - n - inter.get((VOID, p), 0)
            iou = n / union
            if iou > 0.5:
                self.tp[gs.category] += 1
                self.iou[gs.category] += iou
                self.matched_ious.append(iou)
                gt_done.add(g)
                pred_done.add(p)
        crowd_of: dict[int, int] = {}
        for s in gt_segments:
            if s.id in gt_done:
                continue
            if s.iscrowd:
                crowd_of[s.category] = s.id
                continue
            self.fn[s.category] += 1
        for s in pred_segments:
            if s.id in pred_done or s.area == 0:
                continue
            ignored = inter.get((VOID, s.id), 0)
            if s.category in crowd_of:
                ignored += inter.get((crowd_of[s.category], s.id), 0)
            if ignored / s.area > 0.5:
                continue
            self.fp[s.category] += 1

    def per_class(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pq, sq, rq)`` arrays per class index (0 where the class never occurred)."""
        tp = self.tp.astype(np.float64)
        den = tp + 0.5 * self.fp + 0.5 * self.fn
        sq = np.divide(self.iou, tp, out=np.zeros_like(tp), where=tp > 0)
        rq = np.divide(tp, den, out=np.zeros_like(tp), where=den > 0)
        return sq * rq, sq, rq

    def occurred(self) -> np.ndarray:
        return (self.tp + self.fp + self.fn) > 0


def segments_of(
    regions_masks: np.ndarray,
    classes: np.ndarray,
    iscrowd: np.ndarray,
    is_thing: np.ndarray,
    order: np.ndarray,
) -> tuple[np.ndarray, list[Segment]]:
    """Paint ``(N, H, W)`` masks in ``order`` (later wins) into an ``HxW`` int64 segment map.

    ``classes`` are 1-based class indices (0 drops the mask: void). Stuff masks of one class
    become one segment, as in COCO panoptic. Returns the map and the non-empty segments.
    """
    h, w = regions_masks.shape[1:]
    seg_map = np.zeros((h, w), dtype=np.int64)
    seg_class: dict[int, tuple[int, bool]] = {}
    stuff_id: dict[int, int] = {}
    next_id = 1
    for i in order:
        c = int(classes[i])
        if c == VOID:
            continue
        if not is_thing[i] and not iscrowd[i]:
            sid = stuff_id.get(c)
            if sid is None:
                sid = stuff_id[c] = next_id
                next_id += 1
        else:
            sid = next_id
            next_id += 1
        seg_class[sid] = (c, bool(iscrowd[i]))
        seg_map[regions_masks[i]] = sid
    ids, areas = np.unique(seg_map, return_counts=True)
    segments = [
        Segment(int(s), seg_class[int(s)][0], int(a), seg_class[int(s)][1])
        for s, a in zip(ids, areas, strict=True)
        if s != VOID
    ]
    return seg_map, segments


# -- the evaluation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentationOptions:
    """How to evaluate: class matching and boundary widths (fractions of the image diagonal)."""

    class_agnostic: bool = False
    boundary_f_tol: float = 0.008
    boundary_iou_ratio: float = 0.02
    images_root: str | None = None


def evaluate_segmentation(
    pred: MaskSet,
    gt: MaskSet,
    options: SegmentationOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Compare predictions with ground truth; returns the JSON-ready result (see module doc)."""
    opts = options or SegmentationOptions()
    classes = _class_list(gt, opts.class_agnostic)
    class_index = {c.name: i + 1 for i, c in enumerate(classes)}
    k = len(classes) + 1
    conf = np.zeros((k, k), dtype=np.int64)  # rows: gt class (0 unused), cols: pred (0 = none)
    pq = PQStat(len(classes))
    bf_sum, biou_sum, b_n = np.zeros(k), np.zeros(k), np.zeros(k, np.int64)
    best_ious: list[list[float]] = [[] for _ in range(k)]
    pred_by_gt: dict[int, int] = {}
    unmatched_pred = 0
    for im in pred.images:
        info = gt.find(im.file_name, opts.images_root)
        if info is None:
            unmatched_pred += 1
        else:
            pred_by_gt.setdefault(info.id, im.id)
    unknown = 0
    for n_done, info in enumerate(gt.images):
        g = gt.masks(info.id)
        if info.id in pred_by_gt:
            p = pred.masks(pred_by_gt[info.id])
            if p.regions.image_size != g.regions.image_size:
                raise ValueError(
                    f"prediction of {info.file_name!r} is {p.regions.image_size}, "
                    f"the ground truth {g.regions.image_size}"
                )
        else:
            p = _empty_like(g)
        g_cls = _classes(g, class_index, opts.class_agnostic)
        p_cls = _classes(p, class_index, opts.class_agnostic)
        unknown += int((p_cls == VOID).sum())
        g_thing = g.regions.is_thing | opts.class_agnostic
        p_thing = p.regions.is_thing | opts.class_agnostic
        g_order = np.arange(len(g.regions))
        p_order = np.lexsort((np.arange(len(p.regions)), p.regions.scores))  # ascending score
        g_map, g_segs = segments_of(g.regions.masks, g_cls, g.iscrowd, g_thing, g_order)
        p_map, p_segs = segments_of(
            p.regions.masks, p_cls, np.zeros(len(p.regions), bool), p_thing, p_order
        )
        pq.add_image(g_map, g_segs, p_map, p_segs)
        # semantic maps from the panoptic ones (crowd keeps its class for semantics)
        g_sem = _semantic(g_map, g_segs)
        p_sem = _semantic(p_map, p_segs)
        valid = g_sem != VOID
        np.add.at(conf, (g_sem[valid], p_sem[valid]), 1)
        for c in np.union1d(np.unique(g_sem), np.unique(p_sem)):
            if c == VOID:
                continue
            gm, pm = g_sem == c, p_sem == c
            bf_sum[c] += boundary_f(gm, pm, opts.boundary_f_tol)
            biou_sum[c] += boundary_iou(gm, pm, opts.boundary_iou_ratio)
            b_n[c] += 1
        keep = ~g.iscrowd
        if keep.any():
            ious = iou_matrix(g.regions.masks[keep], p.regions.masks)  # (G, P)
            best = ious.max(axis=1) if ious.shape[1] else np.zeros(len(ious))
            for c, b in zip(g_cls[keep], best, strict=True):
                if c != VOID:
                    best_ious[c].append(float(b))
        if progress is not None:
            progress(n_done + 1, len(gt.images))
    return _result(classes, conf, pq, bf_sum, biou_sum, b_n, best_ious, opts, {
        "ground_truth": len(gt.images),
        "with_prediction": len(pred_by_gt),
        "without_prediction": len(gt.images) - len(pred_by_gt),
        "prediction_without_ground_truth": unmatched_pred,
    }, unknown)  # fmt: skip


def _class_list(gt: MaskSet, agnostic: bool) -> list[Category]:
    if agnostic:
        return [Category(1, "object", True)]
    seen: dict[str, Category] = {}
    for c in sorted(gt.categories.values(), key=lambda c: c.id):
        seen.setdefault(c.name, c)
    return list(seen.values())


def _classes(m: ImageMasks, index: dict[str, int], agnostic: bool) -> np.ndarray:
    if agnostic:
        return np.ones(len(m.regions), dtype=np.int64)
    return np.asarray([index.get(str(n), VOID) for n in m.regions.labels], dtype=np.int64)


def _semantic(seg_map: np.ndarray, segments: list[Segment]) -> np.ndarray:
    lut = np.zeros(int(seg_map.max(initial=0)) + 1, dtype=np.int64)
    for s in segments:
        lut[s.id] = s.category
    return lut[seg_map]


def _empty_like(g: ImageMasks) -> ImageMasks:
    from segindex.regions import Regions

    h, w = g.regions.image_size
    return ImageMasks(g.image, Regions.empty(h, w), np.zeros(0, bool), np.zeros(0, np.int64))


def _nanmean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def _result(
    classes: list[Category],
    conf: np.ndarray,
    pq: PQStat,
    bf_sum: np.ndarray,
    biou_sum: np.ndarray,
    b_n: np.ndarray,
    best_ious: list[list[float]],
    opts: SegmentationOptions,
    images: dict[str, int],
    unknown: int,
) -> dict[str, Any]:
    tp = np.diag(conf).astype(np.float64)
    gt_px = conf.sum(1).astype(np.float64)
    pred_px = conf.sum(0).astype(np.float64)
    union = gt_px + pred_px - tp
    nan = np.full_like(tp, np.nan)
    iou = np.divide(tp, union, out=nan.copy(), where=union > 0)
    dice = np.divide(2 * tp, gt_px + pred_px, out=nan.copy(), where=(gt_px + pred_px) > 0)
    acc = np.divide(tp, gt_px, out=nan.copy(), where=gt_px > 0)
    bf = np.divide(bf_sum, b_n, out=nan.copy(), where=b_n > 0)
    biou = np.divide(biou_sum, b_n, out=nan.copy(), where=b_n > 0)
    pqc, sqc, rqc = pq.per_class()
    occurred = pq.occurred()
    per_class = []
    for i, c in enumerate(classes, start=1):
        per_class.append({
            "name": c.name,
            "isthing": c.isthing,
            "iou": _num(iou[i]), "dice": _num(dice[i]), "accuracy": _num(acc[i]),
            "boundary_f": _num(bf[i]), "boundary_iou": _num(biou[i]),
            "pq": _num(pqc[i]) if occurred[i] else None,
            "sq": _num(sqc[i]) if occurred[i] else None,
            "rq": _num(rqc[i]) if occurred[i] else None,
            "tp": int(pq.tp[i]), "fp": int(pq.fp[i]), "fn": int(pq.fn[i]),
            "best_iou": _num(np.mean(best_ious[i])) if best_ious[i] else None,
            "gt_instances": len(best_ious[i]),
            "gt_pixels": int(gt_px[i]),
        })  # fmt: skip
    things = np.array([False] + [c.isthing for c in classes])

    def pq_avg(sel: np.ndarray) -> dict[str, float | int | None]:
        sel = sel & occurred
        n = int(sel.sum())
        if n == 0:
            return {"pq": None, "sq": None, "rq": None, "n": 0}
        return {
            "pq": float(pqc[sel].mean()),
            "sq": float(sqc[sel].mean()),
            "rq": float(rqc[sel].mean()),
            "n": n,
        }

    all_sel = np.ones_like(things)
    all_sel[0] = False
    valid_px = conf[1:].sum()
    all_best = [v for lst in best_ious for v in lst]
    summary = {
        "miou": _nanmean(iou[1:]),
        "mdice": _nanmean(dice[1:]),
        "pixel_accuracy": float(tp[1:].sum() / valid_px) if valid_px else None,
        "mean_class_accuracy": _nanmean(acc[1:]),
        "boundary_f": _nanmean(bf[1:]),
        "boundary_iou": _nanmean(biou[1:]),
        "mean_best_iou": float(np.mean(all_best)) if all_best else None,
    }
    panoptic = {
        "all": pq_avg(all_sel),
        "things": pq_avg(all_sel & things),
        "stuff": pq_avg(all_sel & ~things),
    }
    summary.update({"pq": panoptic["all"]["pq"], "sq": panoptic["all"]["sq"],
                    "rq": panoptic["all"]["rq"], "pq_things": panoptic["things"]["pq"],
                    "pq_stuff": panoptic["stuff"]["pq"]})  # fmt: skip
    return {
        "kind": "segmentation",
        "options": {
            "class_agnostic": opts.class_agnostic,
            "boundary_f_tol": opts.boundary_f_tol,
            "boundary_iou_ratio": opts.boundary_iou_ratio,
        },
        "images": images,
        "unknown_pred_segments": unknown,
        "summary": summary,
        "panoptic": panoptic,
        "per_class": per_class,
        "distributions": {
            "matched_iou": [round(v, 6) for v in pq.matched_ious],
            "best_iou": [round(v, 6) for v in all_best],
        },
    }


def _num(v: float | np.floating[Any] | None) -> float | None:
    return None if v is None or np.isnan(v) else float(v)
