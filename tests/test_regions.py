"""``Regions``: validation, exact boxes from masks, slicing, concatenation, RLE round trip."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from segindex import rle as rle_codec
from segindex.masks import boxes_from_masks
from segindex.regions import Regions

H, W = 6, 8


def rect(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> np.ndarray:
    """``HxW`` bool mask of the XYXY rectangle (x1/y1 exclusive)."""
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def three() -> Regions:
    """Three regions with distinct, known field values."""
    masks = np.stack([rect(0, 0, 2, 3), rect(3, 1, 8, 2), rect(5, 4, 6, 6)])
    return Regions.from_masks(
        masks,
        label_ids=[7, 8, 9],
        labels=["cat", "sky", "dog"],
        scores=[0.9, 0.5, 0.7],
        is_thing=[True, False, True],
    )


def valid_fields(n: int = 2) -> dict[str, Any]:
    labels = np.empty(n, dtype=object)
    labels[:] = [f"l{i}" for i in range(n)]
    return {
        "masks": np.zeros((n, H, W), dtype=bool),
        "boxes": np.zeros((n, 4), dtype=np.float32),
        "label_ids": np.zeros(n, dtype=np.int64),
        "labels": labels,
        "scores": np.ones(n, dtype=np.float32),
        "is_thing": np.ones(n, dtype=bool),
    }


def test_valid_fields_construct() -> None:
    r = Regions(**valid_fields())
    assert len(r) == 2 and r.image_size == (H, W)


# (field, bad value, text that must appear in the message)
BAD_FIELDS = [
    (
        "masks",
        np.zeros((H, W), dtype=bool),
        "masks must be NxHxW bool, got shape (6, 8) dtype bool",
    ),
    ("masks", np.zeros((2, 1, H, W), dtype=bool), "shape (2, 1, 6, 8)"),
    (
        "masks",
        np.zeros((2, H, W), dtype=np.uint8),
        "masks must be NxHxW bool, got shape (2, 6, 8) dtype uint8",
    ),
    ("masks", [[[True]]], "masks must be NxHxW bool, got shape list dtype None"),
    (
        "boxes",
        np.zeros((3, 4), dtype=np.float32),
        "boxes must be (2, 4) float32 for 2 masks, got shape (3, 4) dtype float32",
    ),
    (
        "boxes",
        np.zeros((2, 4), dtype=np.float64),
        "boxes must be (2, 4) float32 for 2 masks, got shape (2, 4) dtype float64",
    ),
    ("boxes", np.zeros((2, 5), dtype=np.float32), "boxes must be (2, 4) float32"),
    ("boxes", np.zeros((8,), dtype=np.float32), "got shape (8,)"),
    (
        "label_ids",
        np.zeros(2, dtype=np.int32),
        "label_ids must be (2,) int64 for 2 masks, got shape (2,) dtype int32",
    ),
    (
        "label_ids",
        np.zeros(1, dtype=np.int64),
        "label_ids must be (2,) int64 for 2 masks, got shape (1,) dtype int64",
    ),
    (
        "labels",
        np.array(["a", "b"]),
        "labels must be (2,) object for 2 masks, got shape (2,) dtype <U1",
    ),
    ("labels", ["a", "b"], "labels must be (2,) object for 2 masks, got shape None dtype None"),
    (
        "scores",
        np.ones(2, dtype=np.float64),
        "scores must be (2,) float32 for 2 masks, got shape (2,) dtype float64",
    ),
    ("scores", np.ones(3, dtype=np.float32), "got shape (3,) dtype float32"),
    ("scores", np.ones((2, 1), dtype=np.float32), "got shape (2, 1)"),
    (
        "is_thing",
        np.ones(2, dtype=np.int64),
        "is_thing must be (2,) bool for 2 masks, got shape (2,) dtype int64",
    ),
    ("is_thing", np.ones(0, dtype=bool), "is_thing must be (2,) bool for 2 masks, got shape (0,)"),
]


@pytest.mark.parametrize(
    "field,value,message", BAD_FIELDS, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_FIELDS)]
)
def test_bad_fields_raise_value_error_naming_field_shape_dtype(field, value, message) -> None:
    kwargs = valid_fields()
    kwargs[field] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        Regions(**kwargs)


def test_from_masks_rejects_wrong_ndim() -> None:
    with pytest.raises(ValueError, match=re.escape("masks must be NxHxW, got shape (6, 8)")):
        Regions.from_masks(np.zeros((H, W), dtype=bool))


def test_from_masks_exact_boxes_x1_y1_exclusive_and_empty_mask_zeros() -> None:
    masks = np.stack(
        [
            rect(0, 0, 2, 3),  # touches the top-left corner
            rect(3, 1, 8, 2),  # touches the right border, one row tall
            rect(5, 4, 6, 6),  # single column, touches the bottom
            np.zeros((H, W), dtype=bool),  # empty
            rect(0, 0, W, H),  # full image
        ]
    )
    # an L-shape: box is the tight box of the union, not of either arm
    l_shape = rect(1, 1, 2, 5) | rect(1, 4, 6, 5)
    masks = np.concatenate([masks, l_shape[None]])
    r = Regions.from_masks(masks)
    expected = np.array(
        [[0, 0, 2, 3], [3, 1, 8, 2], [5, 4, 6, 6], [0, 0, 0, 0], [0, 0, 8, 6], [1, 1, 6, 5]],
        dtype=np.float32,
    )
    assert r.boxes.dtype == np.float32
    np.testing.assert_array_equal(r.boxes, expected)
    np.testing.assert_array_equal(boxes_from_masks(masks), expected)


def test_from_masks_defaults_and_casts() -> None:
    masks = np.stack([rect(0, 0, 1, 1), rect(1, 1, 3, 3)]).astype(np.uint8)  # non-bool is cast
    r = Regions.from_masks(masks)
    assert r.masks.dtype == np.bool_
    assert r.label_ids.tolist() == [-1, -1] and r.label_ids.dtype == np.int64
    assert r.labels.tolist() == ["object", "object"] and r.labels.dtype == np.object_
    assert r.scores.tolist() == [1.0, 1.0] and r.scores.dtype == np.float32
    assert r.is_thing.tolist() == [True, True] and r.is_thing.dtype == np.bool_
    r2 = Regions.from_masks(masks, label_ids=np.array([3, 4], dtype=np.int32), labels=[1, 2])
    assert r2.label_ids.dtype == np.int64 and r2.label_ids.tolist() == [3, 4]
    assert r2.labels.tolist() == ["1", "2"]  # labels are stringified


def test_from_masks_mismatched_optional_length_is_rejected() -> None:
    masks = np.stack([rect(0, 0, 1, 1), rect(1, 1, 3, 3)])
    with pytest.raises(ValueError, match="scores must be"):
        Regions.from_masks(masks, scores=[0.5])
    with pytest.raises(ValueError, match="labels must be"):
        Regions.from_masks(masks, labels=["a", "b", "c"])


def assert_rows(r: Regions, src: Regions, rows: list[int]) -> None:
    """``r`` holds exactly rows ``rows`` of ``src``, in that order, with every field consistent."""
    assert isinstance(r, Regions)
    assert len(r) == len(rows)
    assert r.image_size == src.image_size
    for name in ("masks", "boxes", "label_ids", "labels", "scores", "is_thing"):
        got, want = getattr(r, name), getattr(src, name)[rows]
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(r.boxes, boxes_from_masks(r.masks))


@pytest.mark.parametrize(
    "index,rows",
    [
        (0, [0]),
        (2, [2]),
        (-1, [2]),
        (np.int64(1), [1]),
        (slice(1, None), [1, 2]),
        (slice(None, None, -1), [2, 1, 0]),
        (slice(3, None), []),
        (np.array([2, 0]), [2, 0]),
        (np.array([1, 1]), [1, 1]),
        ([0, 2], [0, 2]),
        (np.array([True, False, True]), [0, 2]),
        (np.array([False, False, False]), []),
    ],
)
def test_indexing_returns_consistent_regions(index, rows) -> None:
    src = three()
    assert_rows(src[index], src, rows)


def test_int_index_out_of_range_raises() -> None:
    with pytest.raises(IndexError):
        three()[3]


def test_concatenate() -> None:
    a = three()
    b = Regions.from_masks(rect(1, 1, 4, 4)[None], labels=["box"], label_ids=[42])
    c = Regions.concatenate([a, Regions.empty(H, W), b])
    assert len(c) == 4
    assert c.labels.tolist() == ["cat", "sky", "dog", "box"]
    assert c.label_ids.tolist() == [7, 8, 9, 42]
    np.testing.assert_array_equal(c.masks[3], b.masks[0])
    np.testing.assert_array_equal(c.boxes, boxes_from_masks(c.masks))
    assert_rows(c[:3], a, [0, 1, 2])
    with pytest.raises(ValueError, match="at least one"):
        Regions.concatenate([])


def test_empty() -> None:
    e = Regions.empty(5, 7)
    assert len(e) == 0
    assert e.image_size == (5, 7)
    assert e.masks.shape == (0, 5, 7) and e.masks.dtype == np.bool_
    assert e.boxes.shape == (0, 4) and e.boxes.dtype == np.float32
    assert e.areas.shape == (0,) and e.areas.dtype == np.int64
    assert e.rles() == []
    assert len(e[np.zeros(0, dtype=bool)]) == 0


def test_areas_are_pixel_counts() -> None:
    r = three()
    assert r.areas.dtype == np.int64
    assert r.areas.tolist() == [6, 5, 2]
    rng = np.random.default_rng(0)
    masks = rng.random((5, 13, 9)) < 0.3
    np.testing.assert_array_equal(Regions.from_masks(masks).areas, masks.sum(axis=(1, 2)))


def test_rles_round_trip() -> None:
    rng = np.random.default_rng(1)
    masks = rng.random((4, 11, 17)) < 0.4
    masks[0] = False
    masks[1] = True
    r = Regions.from_masks(masks)
    rles = r.rles()
    assert len(rles) == 4
    for i, rle in enumerate(rles):
        assert rle["size"] == [11, 17]
        assert isinstance(rle["counts"], str)
        np.testing.assert_array_equal(rle_codec.decode(rle), masks[i])
        assert rle_codec.area(rle) == r.areas[i]
