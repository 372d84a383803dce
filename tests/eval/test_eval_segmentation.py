"""Segmentation metrics: agreement with pycocotools / torchmetrics, and edge cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segindex.eval.segmentation import (
    boundary_band,
    boundary_f,
    boundary_iou,
    evaluate_segmentation,
)
from segindex.formats.coco import from_coco_dict
from segindex.masks import iou_matrix as mask_iou
from segindex.rle import encode

THINGS = (1, 2, 3)
STUFF = (4, 5)
CATS = [{"id": c, "name": f"c{c}", "isthing": int(c in THINGS)} for c in THINGS + STUFF]


def coco(maps: list[np.ndarray], scores: bool = False) -> dict[str, Any]:
    """COCO instance dict of ``HxWx2`` (category, instance) maps; category 0 is void."""
    images, anns = [], []
    for i, m in enumerate(maps):
        h, w = m.shape[:2]
        images.append({"id": i + 1, "file_name": f"img{i}.png", "height": h, "width": w})
        keys = {(int(c), int(k)) for c, k in m.reshape(-1, 2) if c != 0}
        for c, k in sorted(keys):
            seg = (m[..., 0] == c) & (m[..., 1] == k)
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": c,
                   "segmentation": dict(encode(seg)), "iscrowd": 0}  # fmt: skip
            if scores:
                ann["score"] = 1.0
            anns.append(ann)
    return {"images": images, "annotations": anns, "categories": CATS}


def random_map(rng: np.random.Generator, h: int = 24, w: int = 32) -> np.ndarray:
    out = np.zeros((h, w, 2), np.int64)
    out[..., 0] = rng.choice(STUFF)
    out[rng.random((h, w)) < 0.05, 0] = 0  # scattered void
    for k in range(int(rng.integers(1, 6))):
        y0, x0 = rng.integers(0, h - 4), rng.integers(0, w - 4)
        y1, x1 = y0 + rng.integers(3, h // 2), x0 + rng.integers(3, w // 2)
        cat = rng.choice(THINGS + STUFF) if rng.random() < 0.8 else 0
        out[y0:y1, x0:x1] = (cat, k + 1 if cat in THINGS else 0)
    return out


def perturb(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    p = m.copy()
    p = np.roll(p, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    for _ in range(int(rng.integers(0, 3))):
        y0, x0 = rng.integers(0, m.shape[0] - 3), rng.integers(0, m.shape[1] - 3)
        cat = rng.choice(THINGS + STUFF + (0,))
        p[y0 : y0 + rng.integers(2, 10), x0 : x0 + rng.integers(2, 10)] = (
            cat,
            50 + rng.integers(3) if cat in THINGS else 0,
        )
    return p


@pytest.mark.parametrize("seed", range(5))
def test_mask_iou_agrees_with_pycocotools(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.random((6, 20, 30)) < rng.uniform(0.05, 0.6, (6, 1, 1))
    gt = rng.random((4, 20, 30)) < rng.uniform(0.05, 0.6, (4, 1, 1))
    pred[0] = False  # an empty mask
    crowd = rng.random(4) < 0.5
    ours = mask_iou(pred, gt, crowd)
    ref = mask_utils.iou(
        [{"size": r["size"], "counts": r["counts"].encode()} for r in map(encode, pred)],
        [{"size": r["size"], "counts": r["counts"].encode()} for r in map(encode, gt)],
        crowd.astype(np.uint8).tolist(),
    )
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def no_void(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """Fill void pixels with a stuff class: torchmetrics 1.9 also drops the ground-truth pixels
    a prediction leaves void from the union (its ``_calculate_iou``), panopticapi does not, so
    the two agree only on predictions that label every pixel."""
    m = m.copy()
    m[m[..., 0] == 0] = (int(rng.choice(STUFF)), 0)
    return m


def random_pair(seed: int, pred_void: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(100 + seed)
    gts = [random_map(rng) for _ in range(3)]
    preds = [perturb(rng, g) if rng.random() < 0.8 else random_map(rng) for g in gts]
    return gts, preds if pred_void else [no_void(rng, p) for p in preds]


@pytest.mark.parametrize("seed", range(6))
def test_pq_agrees_with_torchmetrics(seed: int) -> None:
    import torch
    from torchmetrics.detection import PanopticQuality

    gts, preds = random_pair(seed, pred_void=False)
    result = evaluate_segmentation(
        from_coco_dict(coco(preds, scores=True)), from_coco_dict(coco(gts))
    )
    metric = PanopticQuality(
        things=set(THINGS), stuffs=set(STUFF), return_sq_and_rq=True, return_per_class=True
    )
    metric.update(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(gts)))
    per_class = metric.compute().double().numpy()  # (C, 3): pq, sq, rq; things then stuff
    rows = {r["name"]: r for r in result["per_class"]}
    occurred = []
    for j, c in enumerate(sorted(THINGS) + sorted(STUFF)):
        r = rows[f"c{c}"]
        if r["tp"] + r["fp"] + r["fn"] == 0:
            assert r["pq"] is None
            continue
        occurred.append(j)
        np.testing.assert_allclose([r["pq"], r["sq"], r["rq"]], per_class[j], atol=1e-6)
    avg = PanopticQuality(things=set(THINGS), stuffs=set(STUFF), return_sq_and_rq=True)
    avg.update(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(gts)))
    ref_pq, ref_sq, ref_rq = avg.compute().double().numpy()
    s = result["summary"]
    np.testing.assert_allclose([s["pq"], s["sq"], s["rq"]], [ref_pq, ref_sq, ref_rq], atol=1e-6)
    things = [j for j in occurred if j < len(THINGS)]
    if things:
        np.testing.assert_allclose(s["pq_things"], per_class[things, 0].mean(), atol=1e-6)


def panopticapi_pq(
    gts: list[np.ndarray], preds: list[np.ndarray], crowd: set[tuple[int, int, int]]
) -> dict[int, tuple[float, float, float]]:
    """panopticapi's ``pq_compute_single_core`` + ``PQStat.pq_average`` (per class), restated
    on ``HxWx2`` (category, instance) maps; ``crowd`` holds ``(image, category, instance)``."""
    from collections import defaultdict

    stat: dict[int, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0])  # iou, tp, fp, fn
    for n, (g, p) in enumerate(zip(gts, preds, strict=True)):

        def segs(m: np.ndarray, n: int = n) -> tuple[np.ndarray, dict[int, dict[str, int]]]:
            ids = np.where(m[..., 0] > 0, m[..., 0] * 1000 + m[..., 1], 0)
            info = {}
            for sid, area in zip(*np.unique(ids, return_counts=True), strict=True):
                if sid:
                    c, k = divmod(int(sid), 1000)
                    info[int(sid)] = {"category_id": c, "area": int(area),
                                      "iscrowd": int((n, c, k) in crowd)}  # fmt: skip
            return ids, info

        pan_gt, gt_segms = segs(g)
        pan_pred, pred_segms = segs(p)
        offset = 256 * 256 * 256
        labels, counts = np.unique(pan_gt * offset + pan_pred, return_counts=True)
        gt_pred_map = {(int(lab // offset), int(lab % offset)): int(c)
                       for lab, c in zip(labels, counts, strict=True)}  # fmt: skip
        gt_matched, pred_matched = set(), set()
        for (gt_label, pred_label), intersection in gt_pred_map.items():
            if gt_label not in gt_segms or pred_label not in pred_segms:
                continue
            if gt_segms[gt_label]["iscrowd"] == 1:
                continue
            if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
                continue
            union = (pred_segms[pred_label]["area"] + gt_segms[gt_label]["area"]
                     - intersection - gt_pred_map.get((0, pred_label), 0))  # fmt: skip
            iou = intersection / union
            if iou > 0.5:
                stat[gt_segms[gt_label]["category_id"]][1] += 1
                stat[gt_segms[gt_label]["category_id"]][0] += iou
                gt_matched.add(gt_label)
                pred_matched.add(pred_label)
        crowd_labels = {}
        for gt_label, gt_info in gt_segms.items():
            if gt_label in gt_matched:
                continue
            if gt_info["iscrowd"] == 1:
                crowd_labels[gt_info["category_id"]] = gt_label
                continue
            stat[gt_info["category_id"]][3] += 1
        for pred_label, pred_info in pred_segms.items():
            if pred_label in pred_matched:
                continue
            intersection = gt_pred_map.get((0, pred_label), 0)
            if pred_info["category_id"] in crowd_labels:
                intersection += gt_pred_map.get((crowd_labels[pred_info["category_id"]],
                                                 pred_label), 0)  # fmt: skip
            if intersection / pred_info["area"] > 0.5:
                continue
            stat[pred_info["category_id"]][2] += 1
    out = {}
    for c, (iou, tp, fp, fn) in stat.items():
        if tp + fp + fn == 0:
            continue
        sq = iou / tp if tp else 0.0
        rq = tp / (tp + 0.5 * fp + 0.5 * fn)
        out[c] = (sq * rq, sq, rq)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_pq_agrees_with_panopticapi_formula_with_void_and_crowd(seed: int) -> None:
    gts, preds = random_pair(seed, pred_void=True)
    gt_dict = coco(gts)
    rng = np.random.default_rng(seed)
    crowd = set()
    for a in gt_dict["annotations"]:
        if a["category_id"] in THINGS and rng.random() < 0.3:
            a["iscrowd"] = 1
            m = gts[a["image_id"] - 1]
            seg = m[..., 0] == a["category_id"]
            ks = set(m[..., 1][seg].tolist())
            k = next(
                k
                for k in ks
                if (m[..., 1][seg] == k).sum()
                and encode(seg & (m[..., 1] == k))["counts"] == a["segmentation"]["counts"]
            )
            crowd.add((a["image_id"] - 1, a["category_id"], k))
    result = evaluate_segmentation(
        from_coco_dict(coco(preds, scores=True)), from_coco_dict(gt_dict)
    )
    ref = panopticapi_pq(gts, preds, crowd)
    rows = {int(r["name"][1:]): r for r in result["per_class"]}
    assert {c for c, r in rows.items() if r["pq"] is not None} == set(ref)
    for c, (pq, sq, rq) in ref.items():
        np.testing.assert_allclose([rows[c]["pq"], rows[c]["sq"], rows[c]["rq"]], [pq, sq, rq],
                                   atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(result["summary"]["pq"], np.mean([v[0] for v in ref.values()]),
                               atol=1e-6)  # fmt: skip


def two_halves(left: int, right: int, h: int = 10, w: int = 20) -> np.ndarray:
    m = np.zeros((h, w, 2), np.int64)
    m[:, : w // 2] = (left, 1 if left in THINGS else 0)
    m[:, w // 2 :] = (right, 2 if right in THINGS else 0)
    return m


def test_semantic_metrics_hand_computed() -> None:
    gt = two_halves(1, 4)  # left thing c1, right stuff c4
    pred = np.zeros_like(gt)
    pred[..., 0], pred[..., 1] = 1, 1  # everything c1
    r = evaluate_segmentation(from_coco_dict(coco([pred], True)), from_coco_dict(coco([gt])))
    rows = {x["name"]: x for x in r["per_class"]}
    assert rows["c1"]["iou"] == pytest.approx(0.5)
    assert rows["c1"]["dice"] == pytest.approx(2 * 100 / (100 + 200))
    assert rows["c4"]["iou"] == 0.0
    assert r["summary"]["miou"] == pytest.approx(0.25)
    assert r["summary"]["pixel_accuracy"] == pytest.approx(0.5)
    # the c1 prediction covers the c1 truth with IoU 0.5 exactly: not > 0.5, so no match
    assert (rows["c1"]["tp"], rows["c1"]["fp"], rows["c1"]["fn"]) == (0, 1, 1)
    assert r["summary"]["pq"] == 0.0


EDGE_CASES = {
    # name: (gt map, pred map or None for no prediction, expected summary values)
    "perfect": (two_halves(1, 4), two_halves(1, 4), {"pq": 1.0, "miou": 1.0, "boundary_iou": 1.0,
                                                      "boundary_f": 1.0, "mean_best_iou": 1.0}),
    "empty_prediction": (two_halves(1, 4), None, {"pq": 0.0, "miou": 0.0, "pixel_accuracy": 0.0,
                                                  "boundary_f": 0.0, "mean_best_iou": 0.0}),
    # unannotated pixels are void: predictions there are neither right nor wrong (panopticapi)
    "empty_ground_truth": (np.zeros((10, 20, 2), np.int64), two_halves(1, 4),
                           {"pq": None, "pixel_accuracy": None, "mean_best_iou": None}),
    "false_positive_on_labelled_ground": (two_halves(4, 4), two_halves(1, 4),
                                          {"pq": 0.0, "miou": 0.25}),
    "no_overlap": (two_halves(1, 0), two_halves(0, 1),
                   {"pq": 0.0, "miou": 0.0, "mean_best_iou": 0.0}),
    "both_empty": (np.zeros((10, 20, 2), np.int64), None,
                   {"pq": None, "miou": None, "pixel_accuracy": None}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases(case: str) -> None:
    gt, pred, expected = EDGE_CASES[case]
    pred_dict = coco([pred], True) if pred is not None else coco([np.zeros_like(gt)], True)
    r = evaluate_segmentation(from_coco_dict(pred_dict), from_coco_dict(coco([gt])))
    for key, value in expected.items():
        got = r["summary"][key]
        assert (got is None) if value is None else got == pytest.approx(value), (key, got)


def test_missing_prediction_image_counts_as_empty() -> None:
    gt = from_coco_dict(coco([two_halves(1, 4), two_halves(2, 5)]))
    pred = coco([two_halves(1, 4)], True)
    r = evaluate_segmentation(from_coco_dict(pred), gt)
    assert r["images"]["without_prediction"] == 1
    rows = {x["name"]: x for x in r["per_class"]}
    assert rows["c2"]["fn"] == 1 and rows["c1"]["tp"] == 1


def test_unknown_predicted_class_is_void_and_class_agnostic_matches_it() -> None:
    gt = coco([two_halves(1, 0)])
    pred = coco([two_halves(1, 0)], True)
    pred["categories"] = [{"id": 1, "name": "something else", "isthing": 1}]
    r = evaluate_segmentation(from_coco_dict(pred), from_coco_dict(gt))
    assert r["unknown_pred_segments"] == 1 and r["summary"]["pq"] == 0.0
    from segindex.eval.segmentation import SegmentationOptions

    r = evaluate_segmentation(
        from_coco_dict(pred), from_coco_dict(gt), SegmentationOptions(class_agnostic=True)
    )
    assert r["summary"]["pq"] == 1.0


def test_crowd_region_neither_false_negative_nor_causes_false_positive() -> None:
    gt = coco([two_halves(1, 0)])
    gt["annotations"][0]["iscrowd"] = 1
    pred = coco([two_halves(1, 0)], True)
    r = evaluate_segmentation(from_coco_dict(pred), from_coco_dict(gt))
    row = {x["name"]: x for x in r["per_class"]}["c1"]
    assert (row["tp"], row["fp"], row["fn"]) == (0, 0, 0)


def test_boundary_band_matches_chessboard_distance_reference() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for _ in range(5):
        m = ndimage.binary_opening(rng.random((40, 50)) < 0.6)
        d = max(1, int(round(0.05 * np.hypot(40, 50))))
        padded = np.pad(m, 1)
        dist = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1]
        np.testing.assert_array_equal(boundary_band(m, 0.05), m & (dist <= d))


def test_boundary_scores_drop_with_shift() -> None:
    m = np.zeros((60, 60), bool)
    m[10:40, 10:40] = True
    assert boundary_iou(m, m) == 1.0 and boundary_f(m, m) == 1.0
    far = np.roll(m, 15, axis=1)
    assert boundary_iou(m, far) < 0.5 and boundary_f(m, far) < 0.6
    near = np.roll(m, 1, axis=1)
    assert boundary_f(m, near) == 1.0  # within the 1-pixel tolerance
    assert boundary_f(m, np.zeros_like(m)) == 0.0
