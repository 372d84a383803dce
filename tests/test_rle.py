"""COCO RLE codec: exact round trips, areas, agreement with pycocotools, property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from segindex import rle


def _random(shape: tuple[int, int], p: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < p


EDGE_MASKS = {
    "all_false": np.zeros((7, 5), dtype=bool),
    "all_true": np.ones((7, 5), dtype=bool),
    "1x1_false": np.zeros((1, 1), dtype=bool),
    "1x1_true": np.ones((1, 1), dtype=bool),
    "one_row": _random((1, 33), 0.5, 0),
    "one_col": _random((33, 1), 0.5, 1),
    "wide": _random((3, 50), 0.3, 2),
    "tall": _random((50, 3), 0.7, 3),
    "sparse": _random((40, 30), 0.02, 4),
    "dense": _random((40, 30), 0.98, 5),
    "random": _random((64, 48), 0.5, 6),
    "first_pixel_only": np.pad(np.ones((1, 1), bool), ((0, 8), (0, 6))),
    "last_pixel_only": np.pad(np.ones((1, 1), bool), ((8, 0), (6, 0))),
    "c_order": np.ascontiguousarray(_random((9, 13), 0.5, 7)),
    "f_order": np.asfortranarray(_random((9, 13), 0.5, 8)),
    "transposed_view": _random((13, 9), 0.5, 9).T,
    "strided_view": _random((30, 40), 0.5, 10)[::3, 1::2],
}


@pytest.mark.parametrize("name", list(EDGE_MASKS))
def test_round_trip_and_area(name: str) -> None:
    mask = EDGE_MASKS[name]
    enc = rle.encode(mask)
    assert enc["size"] == [mask.shape[0], mask.shape[1]]
    assert isinstance(enc["counts"], str)
    dec = rle.decode(enc)
    assert dec.dtype == np.bool_ and dec.shape == mask.shape
    np.testing.assert_array_equal(dec, mask)
    assert rle.area(enc) == int(mask.sum())


def test_c_and_fortran_order_encode_identically() -> None:
    mask = _random((17, 23), 0.5, 11)
    c = rle.encode(np.ascontiguousarray(mask))
    f = rle.encode(np.asfortranarray(mask))
    assert c == f


def test_non_bool_input_is_treated_as_binary() -> None:
    mask = _random((10, 12), 0.5, 12)
    assert rle.encode(mask.astype(np.uint8)) == rle.encode(mask)


def test_encode_is_not_transposed() -> None:
    # an asymmetric mask: a single pixel at row 0, column 4 of a 2x5 image
    mask = np.zeros((2, 5), dtype=bool)
    mask[0, 4] = True
    dec = rle.decode(rle.encode(mask))
    assert dec[0, 4] and dec.sum() == 1


def test_encode_many_equals_encode_per_mask() -> None:
    rng = np.random.default_rng(13)
    masks = rng.random((6, 21, 14)) < 0.4
    masks[0] = False
    masks[5] = True
    many = rle.encode_many(masks)
    assert many == [rle.encode(m) for m in masks]
    for m, r in zip(masks, many, strict=True):
        np.testing.assert_array_equal(rle.decode(r), m)


def test_encode_many_single_and_empty_stack() -> None:
    m = _random((5, 6), 0.5, 14)
    assert rle.encode_many(m[None]) == [rle.encode(m)]
    assert rle.encode_many(np.zeros((0, 5, 6), dtype=bool)) == []


def test_agrees_with_pycocotools_decode_and_area() -> None:
    mask = _random((37, 29), 0.45, 15)
    enc = rle.encode(mask)
    coco = {"size": enc["size"], "counts": enc["counts"].encode("ascii")}
    np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)
    assert int(mask_utils.area(coco)) == int(mask.sum())
    # and decoding what pycocotools itself encoded
    theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = {"size": [int(s) for s in theirs["size"]], "counts": theirs["counts"].decode("ascii")}
    np.testing.assert_array_equal(rle.decode(ours), mask)
    assert ours == enc


@pytest.mark.parametrize(
    "fn,shape,match",
    [
        (rle.encode, (5,), r"mask must be HxW, got shape \(5,\)"),
        (rle.encode, (2, 5, 5), r"mask must be HxW, got shape \(2, 5, 5\)"),
        (rle.encode_many, (5, 5), r"masks must be NxHxW, got shape \(5, 5\)"),
        (rle.encode_many, (1, 2, 5, 5), r"masks must be NxHxW, got shape \(1, 2, 5, 5\)"),
    ],
)
def test_wrong_ndim_raises_value_error(fn, shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        fn(np.zeros(shape, dtype=bool))


bool_masks = arrays(
    dtype=np.bool_,
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    elements=st.booleans(),
)


@settings(max_examples=150, deadline=None, database=None)
@given(mask=bool_masks, fortran=st.booleans())
def test_property_round_trip_and_area(mask: np.ndarray, fortran: bool) -> None:
    if fortran:
        mask = np.asfortranarray(mask)
    enc = rle.encode(mask)
    assert enc["size"] == list(mask.shape)
    np.testing.assert_array_equal(rle.decode(enc), mask)
    assert rle.area(enc) == int(mask.sum())
