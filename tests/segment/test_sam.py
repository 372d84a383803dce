"""SAM through transformers (tiny random SamModel) and the SAM logic every backend shares
(grid, thresholds, mask NMS, crops, prompts), the latter with a deterministic fake SAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex.errors import ConfigError, ModelLoadError, QueryError
from segindex.masks import iou_matrix as mask_iou_matrix
from segindex.segment import SEGMENTERS
from segindex.segment.sam_auto import (
    SamLikeSegmenter,
    crop_boxes,
    mask_nms,
    point_grid,
    stability_score,
)
from segindex.testing.fakes import draw_scene, quantise

SCENE = [("red", (10, 10, 50, 40)), ("blue", (60, 50, 120, 90)), ("green", (70, 5, 110, 30))]


class FakeSam(SamLikeSegmenter):
    """Point -> the palette-colour region under it; box -> the box's majority colour inside it.

    Logits are +8 inside, -8 outside (stable); predicted IoU 0.95, but 0.5 for background."""

    name = "fakesam"

    def __init__(self, **options) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**options)
        self.embeds = 0

    def _embed(self, image):  # type: ignore[no-untyped-def]
        self.embeds += 1
        q = quantise(image)
        return q, int(np.bincount(q.ravel()).argmax())

    def _decode(self, state, points, labels, boxes, multimask):  # type: ignore[no-untyped-def]
        q, background = state
        n = len(boxes) if boxes is not None else len(points)
        logits = np.full((n, 1, *q.shape), -8.0, dtype=np.float32)
        iou = np.full((n, 1), 0.95, dtype=np.float32)
        for i in range(n):
            if boxes is not None:
                x0, y0, x1, y1 = boxes[i].astype(int)
                colour = np.bincount(q[y0:y1, x0:x1].ravel()).argmax()
                logits[i, 0][y0:y1, x0:x1][q[y0:y1, x0:x1] == colour] = 8.0
            else:
                x, y = points[i][labels[i] == 1][0].astype(int)
                colour = q[y, x]
                logits[i, 0][q == colour] = 8.0
            if colour == background:
                iou[i] = 0.5
        return logits, iou


def scene_masks() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from segindex.testing.fakes import PALETTE

    image = draw_scene(SCENE, background="gray")
    return image, {c: (image == np.array(PALETTE[c], np.uint8)).all(-1) for c, _ in SCENE}


def test_fake_sam_automatic_finds_each_object_once() -> None:
    image, truth = scene_masks()
    sam = FakeSam(points_per_side=16)
    regions = sam.segment([image])[0]
    assert sam.embeds == 1  # one embedding for 256 prompts
    assert len(regions) == 3  # duplicates removed by NMS, background under pred_iou_thresh
    got = {
        int(np.flatnonzero([(regions.masks[i] == m).all() for m in truth.values()])[0])
        for i in range(3)
    }
    assert got == {0, 1, 2}
    assert regions.label_ids.tolist() == [-1] * 3 and set(regions.labels) == {"object"}
    assert np.allclose(regions.scores, 0.95)


def test_fake_sam_thresholds_and_min_area() -> None:
    image, truth = scene_masks()
    everything = FakeSam(points_per_side=16, pred_iou_thresh=0.4).segment([image])[0]
    assert len(everything) == 4  # background now too
    small = int(truth["green"].sum())
    big_only = FakeSam(points_per_side=16, min_area=small + 1).segment([image])[0]
    assert len(big_only) == 2


def test_fake_sam_crop_layers_drop_masks_cut_by_crops() -> None:
    image, _ = scene_masks()
    sam = FakeSam(points_per_side=8, crop_n_layers=1)
    regions = sam.segment([image])[0]
    assert sam.embeds == 5  # the image and 4 crops
    overlap = mask_iou_matrix(regions.masks)
    np.fill_diagonal(overlap, 0)
    assert overlap.max() <= sam.nms_thresh
    assert 3 <= len(regions)


def test_fake_sam_prompts() -> None:
    image, truth = scene_masks()
    sam = FakeSam()
    r = sam.prompt(image, boxes=np.array([[5, 5, 55, 45], [55, 45, 125, 95]]))
    assert (r.masks[0] == truth["red"]).all() and (r.masks[1] == truth["blue"]).all()
    r = sam.prompt(image, points=np.array([[80.0, 20.0]]))
    assert len(r) == 1 and (r.masks[0] == truth["green"]).all()
    each = sam.prompt_each(
        image,
        np.array([[5, 5, 55, 45], [55, 45, 125, 95]], np.float32),
        [np.zeros((0, 2)), np.array([[90.0, 70.0]])],
        [np.zeros(0), np.array([1])],
    )
    assert len(each) == 2 and sam.embeds == 3


def test_helpers() -> None:
    g = point_grid(2)
    assert g.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    crops = crop_boxes(100, 200, 1, 0.25)
    assert crops[0] == (0, (0, 0, 200, 100)) and len(crops) == 5
    assert all(c[0] == 1 and c[1][2] <= 200 and c[1][3] <= 100 for c in crops[1:])
    logits = np.array([[[3.0, 0.5, -3.0]], [[0.5, 0.5, 0.5]]], dtype=np.float32)
    assert stability_score(logits, 0.0, 1.0).tolist() == [0.5, 0.0]
    a = np.zeros((3, 4, 4), bool)
    a[0, :2] = True
    a[1, :2, :3] = True  # IoU with 0: 6/8
    a[2, 3:] = True
    assert mask_nms(a, np.array([0.9, 0.8, 0.7]), 0.7).tolist() == [0, 2]
    assert mask_nms(a, np.array([0.9, 0.8, 0.7]), 0.8).tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "options",
    [
        {"points_per_side": 0},
        {"points_per_side": 2.5},
        {"pred_iou_thresh": 1.5},
        {"nms_thresh": -0.1},
        {"stability_score_offset": 0},
        {"crop_n_layers": -1},
    ],
)
def test_bad_options_rejected(options: dict) -> None:
    with pytest.raises(ConfigError):
        FakeSam(**options)


# -- transformers SamModel, tiny random config ---------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_segmenters import save_tiny_sam

    return save_tiny_sam(tmp_path_factory.mktemp("tiny-sam"))


def test_sam_model_automatic_and_prompts(tiny_sam_dir: Path) -> None:
    loose = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    sam = SEGMENTERS.build("sam", model=str(tiny_sam_dir), device="cpu", points_per_side=4, **loose)
    image = (np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)
    (regions,) = sam.segment([image])
    assert regions.image_size == (50, 70) and len(regions) >= 1
    overlap = mask_iou_matrix(regions.masks)
    np.fill_diagonal(overlap, 0)
    assert overlap.max(initial=0) <= sam.nms_thresh
    boxes = np.array([[5, 5, 30, 40], [10, 10, 60, 45]], np.float32)
    assert len(sam.prompt(image, boxes=boxes)) == 2
    assert len(sam.prompt(image, points=np.array([[20.0, 20.0]]))) == 1
    r = sam.prompt(
        image, boxes=boxes[0], points=np.array([[20, 20], [25, 25]]), point_labels=np.array([1, 0])
    )
    assert r.masks.shape == (1, 50, 70)
    with pytest.raises(QueryError):
        sam.prompt(image)
    d = sam.describe()
    assert d["name"] == "sam" and d["model"] == str(tiny_sam_dir) and d["points_per_side"] == 4


def test_sam_model_crop_layer(tiny_sam_dir: Path) -> None:
    sam = SEGMENTERS.build(
        "sam",
        model=str(tiny_sam_dir),
        device="cpu",
        points_per_side=2,
        crop_n_layers=1,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    image = (np.random.default_rng(1).random((40, 60, 3)) * 255).astype(np.uint8)
    assert sam.segment([image])[0].image_size == (40, 60)


def test_sam_model_load_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    with pytest.raises(ModelLoadError, match="does not exist"):
        SEGMENTERS.build("sam", model=str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match="could not load segmenter model from directory"):
        SEGMENTERS.build("sam", model=str(tmp_path), device="cpu")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        SEGMENTERS.build("sam", device="cpu")
    assert "facebook/sam-vit-base" in str(info.value) and "--segmenter-model DIR" in str(info.value)
