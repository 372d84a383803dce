"""Retrieval metrics on hand-computed rankings, and an index evaluated against known truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex.config import CropPolicy
from segindex.eval.ranking import (
    average_precision,
    ndcg_at_k,
    precision_recall,
    ranking_metrics,
    recall_at_k,
    relevance,
)
from segindex.eval.retrieval import RetrievalOptions, evaluate_retrieval
from segindex.formats.coco import load_masks
from segindex.rle import encode
from segindex.testing.fakes import PALETTE, draw_scene


def test_relevance_counts_each_item_once() -> None:
    assert relevance([None, "a", "a", "b", None]).tolist() == [False, True, False, True, False]


RANKINGS = {
    # ranked items, n_relevant, expected {metric: value}
    "two_of_three": ([None, "a", "a", "b", None], 3, {
        "ap": (1 / 2 + 2 / 4) / 3, "recall@1": 0.0, "recall@2": 1 / 3, "recall@5": 2 / 3,
        "ndcg@3": (1 / np.log2(3)) / (1 + 1 / np.log2(3) + 1 / np.log2(4)),
    }),
    "perfect": (["a", "b", None], 2, {"ap": 1.0, "recall@1": 0.5, "recall@2": 1.0,
                                       "ndcg@2": 1.0, "ndcg@3": 1.0}),
    "nothing_found": ([None, None], 2, {"ap": 0.0, "recall@2": 0.0, "ndcg@2": 0.0}),
    "empty_ranking": ([], 1, {"ap": 0.0, "recall@10": 0.0, "ndcg@10": 0.0}),
    "no_relevant": (["a"], 0, {"ap": None, "recall@1": None, "ndcg@1": None}),
    "last": ([None, None, None, "a"], 1, {"ap": 0.25, "recall@3": 0.0, "recall@4": 1.0,
                                          "ndcg@4": 1 / np.log2(5)}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(RANKINGS))
def test_ranking_metrics_hand_computed(case: str) -> None:
    ranked, n_rel, expected = RANKINGS[case]
    rel = relevance(ranked)
    got = {
        "ap": average_precision(rel, n_rel),
        **{f"recall@{k}": recall_at_k(rel, n_rel, k) for k in range(1, 11)},
        **{f"ndcg@{k}": ndcg_at_k(rel, n_rel, k) for k in range(1, 11)},
    }
    for key, value in expected.items():
        assert (got[key] is None) if value is None else got[key] == pytest.approx(value), key
    assert ranking_metrics(rel, n_rel, [1])["ap"] == got["ap"]


def test_precision_recall_curve() -> None:
    p, r = precision_recall(relevance([None, "a", "b"]), 2)
    np.testing.assert_allclose(p, [0, 1 / 2, 2 / 3])
    np.testing.assert_allclose(r, [0, 0.5, 1.0])


# Colour scenes: the fake embedder maps a crop to its mean colour and "a photo of a red." to
# pure red, so with exact masks every query must rank its own colour first.
SCENES = [
    [("red", (5, 5, 40, 40)), ("blue", (60, 50, 120, 90))],
    [("green", (10, 10, 50, 60)), ("red", (70, 20, 100, 80))],
    [("blue", (20, 30, 90, 70))],
    [("red", (0, 0, 30, 30)), ("green", (50, 40, 110, 95)), ("blue", (40, 0, 70, 30))],
]


@pytest.fixture
def colour_set(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "scenes"
    root.mkdir()
    images, anns = [], []
    names = ["red", "green", "blue", "gray"]
    for i, shapes in enumerate(SCENES):
        img = draw_scene(shapes)
        Image.fromarray(img).save(root / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 96, "width": 128})
        for name in names:
            m = (img == np.array(PALETTE[name], np.uint8)).all(-1)
            if m.any():
                anns.append({"id": len(anns) + 1, "image_id": i + 1,
                             "category_id": names.index(name) + 1, "iscrowd": 0,
                             "segmentation": dict(encode(m))})  # fmt: skip
    cats = [{"id": i + 1, "name": n, "isthing": int(n != "gray")} for i, n in enumerate(names)]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root, gt


def test_retrieval_on_known_truth_is_perfect(colour_set, make_index) -> None:  # type: ignore[no-untyped-def]
    root, gt = colour_set
    idx = make_index(
        segmenter="coco",
        segmenter_options={"annotations": str(gt)},
        crop=CropPolicy(min_area_px=1, min_area_frac=0.0),
    )
    idx.ingest(root)
    r = evaluate_retrieval(idx, load_masks(gt), RetrievalOptions(ks=(1, 3)))
    assert r["images"] == {"indexed": 4, "matched": 4, "unmatched": 0}
    assert r["regions"]["matched_to_gt"] == r["regions"]["gt_instances"] == 12
    s = r["summary"]
    assert s["text_map"] == pytest.approx(1.0)
    assert s["image_map"] == pytest.approx(1.0)
    assert s["region_image_map"] == pytest.approx(1.0)
    assert s["ann_recall@10"] == 1.0 and r["ann"]["index_kind"] == "flat"
    rows = {x["name"]: x for x in r["text_to_region"]["per_class"]}
    assert rows["red"]["n_relevant"] == 3 and rows["red"]["recall@3"] == 1.0
    assert rows["red"]["recall@1"] == pytest.approx(1 / 3)
    # each blue instance queries for the two others, never for itself
    img_rows = {x["name"]: x for x in r["image_to_region"]["per_class"]}
    assert img_rows["blue"]["queries"] == 3 and img_rows["blue"]["recall@3"] == 1.0
    assert r["distributions"]["relevant"] and r["curves"]["text_pr"]["red"]["recall"][-1] == 1.0


def test_segmentation_errors_cost_recall(colour_set, make_index) -> None:  # type: ignore[no-untyped-def]
    root, gt = colour_set
    idx = make_index(segmenter="fake", crop=CropPolicy(min_area_px=1, min_area_frac=0.0))
    idx.ingest(root)
    r = evaluate_retrieval(idx, load_masks(gt), RetrievalOptions(image_queries=False))
    # the fake segmenter finds exactly the colour regions: all matched, so still perfect
    assert r["regions"]["gt_instances_found"] == 12 and r["summary"]["text_map"] == 1.0
    assert "image_to_region" not in r
    idx2 = make_index("blind.segindex", segmenter="fake", segmenter_options={"min_fraction": 0.5})
    idx2.ingest(root)
    r2 = evaluate_retrieval(idx2, load_masks(gt), RetrievalOptions(image_queries=False))
    assert r2["regions"]["gt_instances_found"] < 12
    assert r2["summary"]["text_map"] < 1.0
