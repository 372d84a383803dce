"""The shared mask and box math (segindex.masks, segindex.rle) against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from segindex import rle
from segindex.masks import box_areas, box_iou_matrix, box_masks, boxes_from_masks, iou_matrix


def random_masks(rng: np.random.Generator, n: int, h: int = 13, w: int = 17) -> np.ndarray:
    masks = rng.random((n, h, w)) < rng.uniform(0.05, 0.6, size=(n, 1, 1))
    masks[0] = False  # an empty mask among them
    return masks


def brute_iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            inter = int((a[i] & b[j]).sum())
            union = int(a[i].sum()) if crowd[j] else int((a[i] | b[j]).sum())
            out[i, j] = inter / union if union else 0.0
    return out


@pytest.mark.parametrize("seed", range(5))
def test_iou_matrix_is_the_brute_force_iou(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = random_masks(rng, 6), random_masks(rng, 4)
    crowd = rng.random(4) < 0.5
    np.testing.assert_allclose(iou_matrix(a, b), brute_iou(a, b, np.zeros(4, bool)), atol=1e-12)
    np.testing.assert_allclose(iou_matrix(a, b, crowd), brute_iou(a, b, crowd), atol=1e-12)
    np.testing.assert_allclose(iou_matrix(a), brute_iou(a, a, np.zeros(6, bool)), atol=1e-12)
    # the same numbers from the stored encodings
    np.testing.assert_allclose(
        rle.iou(rle.encode_many(a), rle.encode_many(b), crowd), brute_iou(a, b, crowd), atol=1e-12
    )


def test_iou_matrix_edges() -> None:
    a = np.zeros((0, 4, 5), bool)
    b = np.ones((3, 4, 5), bool)
    assert iou_matrix(a, b).shape == (0, 3) and iou_matrix(b, a).shape == (3, 0)
    assert iou_matrix(a).shape == (0, 0)
    assert iou_matrix(b).dtype == np.float64 and (iou_matrix(b) == 1).all()
    assert iou_matrix(np.zeros((1, 4, 5), bool))[0, 0] == 0.0  # empty union: 0
    assert iou_matrix(b.astype(np.uint8) * 255)[0, 0] == 1.0  # any non-zero is foreground
    with pytest.raises(ValueError, match="same HxW"):
        iou_matrix(b, np.ones((1, 5, 4), bool))
    with pytest.raises(ValueError, match="NxHxW"):
        iou_matrix(np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="one flag per mask"):
        iou_matrix(b, b, [True])


def test_rle_to_coco_bbox_and_area() -> None:
    m = np.zeros((6, 9), bool)
    m[1:4, 2:7] = True
    stored = rle.encode(m)
    coco = rle.to_coco(stored)
    assert coco["size"] == [6, 9] and isinstance(coco["counts"], bytes)
    assert coco["counts"].decode("ascii") == stored["counts"]
    assert rle.bbox(stored) == [2.0, 1.0, 5.0, 3.0]  # COCO x, y, width, height
    assert rle.area(stored) == 15
    np.testing.assert_array_equal(rle.decode(stored), m)
    assert rle.bbox(rle.encode(np.zeros((3, 3), bool))) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("seed", range(3))
def test_boxes_from_masks_is_the_brute_force_box(seed: int) -> None:
    masks = random_masks(np.random.default_rng(seed), 5)
    for mask, box in zip(masks, boxes_from_masks(masks), strict=True):
        ys, xs = np.nonzero(mask)
        want = [0, 0, 0, 0] if not len(xs) else [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert box.tolist() == want and box.dtype == np.float32


def test_box_masks_round_outwards_and_clip() -> None:
    out = box_masks(np.array([[1.5, 0.2, 3.1, 2.0], [-4, -4, 100, 100], [2, 2, 2, 2]]), 5, 6)
    assert out.shape == (3, 5, 6) and out.dtype == bool
    want = np.zeros((5, 6), bool)
    want[0:2, 1:4] = True
    np.testing.assert_array_equal(out[0], want)
    assert out[1].all()
    assert out[2].sum() == 1 and out[2, 2, 2]  # a degenerate box still covers one pixel
    np.testing.assert_array_equal(boxes_from_masks(out[:1]), [[1, 0, 4, 2]])


def test_box_iou_matrix_is_the_mask_iou_of_the_filled_boxes() -> None:
    rng = np.random.default_rng(7)
    corners = rng.integers(0, 20, size=(8, 2, 2))
    boxes = np.concatenate([corners.min(1), corners.max(1) + 1], axis=1).astype(np.float32)
    filled = box_masks(boxes, 21, 21)
    np.testing.assert_allclose(
        box_iou_matrix(boxes[:5], boxes[5:]), iou_matrix(filled[:5], filled[5:])
    )
    np.testing.assert_allclose(box_areas(boxes), filled.sum(axis=(1, 2)))
    assert box_iou_matrix(np.zeros((0, 4)), boxes).shape == (0, 8)
    assert box_iou_matrix(np.zeros((1, 4)), np.zeros((1, 4)))[0, 0] == 0.0
