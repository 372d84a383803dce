"""Crops: box expansion arithmetic, background policies, square padding, area filter, config."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segindex.config import CropPolicy
from segindex.crop import crop_all, crop_region, crop_whole, expand_box, keep_large
from segindex.errors import ConfigError
from segindex.regions import Regions

# ---------------------------------------------------------------------------------------------
# expand_box


@pytest.mark.parametrize(
    "box,margin,height,width,expected",
    [
        ((10, 10, 20, 20), 0.0, 100, 100, (10, 10, 20, 20)),  # zero margin: unchanged
        ((10, 10, 20, 20), 0.1, 100, 100, (9, 9, 21, 21)),  # 10 % of 10 px = 1 px each side
        ((10, 20, 30, 25), 0.2, 50, 40, (6, 19, 34, 26)),  # dx = 4, dy = 1
        ((10, 10, 13, 13), 0.1, 100, 100, (9, 9, 14, 14)),  # 0.3 px rounds outwards
        ((10.5, 10.5, 19.5, 19.5), 0.0, 100, 100, (10, 10, 20, 20)),  # fractional: floor / ceil
        ((0, 0, 10, 10), 0.5, 100, 100, (0, 0, 15, 15)),  # clipped at top-left
        ((90, 95, 100, 100), 0.5, 100, 100, (85, 92, 100, 100)),  # clipped at bottom-right
        ((2, 3, 8, 7), 2.0, 10, 10, (0, 0, 10, 10)),  # clipped on every side
        ((0, 0, 40, 30), 0.25, 30, 40, (0, 0, 40, 30)),  # whole image stays whole
        ((0, 0, 0, 0), 0.1, 30, 40, (0, 0, 1, 1)),  # empty mask's box -> 1x1, never empty
        ((5, 7, 5, 7), 0.5, 30, 40, (5, 7, 6, 8)),  # degenerate box -> one pixel
    ],
)
def test_expand_box_table(box, margin, height, width, expected) -> None:
    got = expand_box(np.array(box, dtype=np.float32), margin, height, width)
    assert got == expected
    assert all(isinstance(v, int) for v in got)


@st.composite
def boxes_in_images(draw):  # type: ignore[no-untyped-def]
    height = draw(st.integers(1, 300))
    width = draw(st.integers(1, 300))
    x0 = draw(st.integers(0, width - 1))
    x1 = draw(st.integers(x0 + 1, width))
    y0 = draw(st.integers(0, height - 1))
    y1 = draw(st.integers(y0 + 1, height))
    margin = draw(st.floats(0.0, 2.0, allow_nan=False))
    return (x0, y0, x1, y1), margin, height, width


@settings(max_examples=300, deadline=None, database=None)
@given(case=boxes_in_images())
def test_expand_box_property(case) -> None:
    (x0, y0, x1, y1), margin, height, width = case
    ix0, iy0, ix1, iy1 = expand_box(np.array([x0, y0, x1, y1], np.float32), margin, height, width)
    assert 0 <= ix0 < ix1 <= width and 0 <= iy0 < iy1 <= height  # inside, non-empty
    assert ix0 <= x0 and iy0 <= y0 and ix1 >= x1 and iy1 >= y1  # contains the box
    # symmetric growth up to rounding, unless clipped
    dx = (x1 - x0) * margin
    if ix0 > 0:
        assert x0 - ix0 <= dx + 1
    if ix1 < width:
        assert ix1 - x1 <= dx + 1


# ---------------------------------------------------------------------------------------------
# crop_region on a synthetic image with known pixels

H, W = 20, 24
RED, TEAL = (200, 10, 0), (0, 110, 50)
MEAN = (100, 60, 25)  # mean of RED and TEAL halves


def synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checkerboard black/white image with an 8x8 square object at x 8..16, y 6..14 whose left
    half is RED and right half TEAL. Returns (image, mask, box)."""
    yy, xx = np.mgrid[:H, :W]
    image = np.where(((yy + xx) % 2 == 0)[..., None], 250, 0).astype(np.uint8).repeat(3, -1)
    image = np.ascontiguousarray(image)
    image[6:14, 8:12] = RED
    image[6:14, 12:16] = TEAL
    mask = np.zeros((H, W), dtype=bool)
    mask[6:14, 8:16] = True
    return image, mask, np.array([8, 6, 16, 14], dtype=np.float32)


def policy(**kw) -> CropPolicy:  # type: ignore[no-untyped-def]
    kw.setdefault("square", False)
    return CropPolicy(**kw)


def test_keep_returns_original_pixels_of_expanded_box() -> None:
    image, mask, box = synthetic()
    crop = crop_region(image, mask, box, policy(background="keep", margin=0.25))
    # margin 0.25 of 8 px = 2 px each side -> x 6..18, y 4..16
    assert crop.shape == (12, 12, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, image[4:16, 6:18])
    assert crop.base is None or not np.shares_memory(crop, image)  # a copy, not a view


def test_mean_fills_outside_mask_with_mask_mean_colour() -> None:
    image, mask, box = synthetic()
    crop = crop_region(image, mask, box, policy(background="mean", margin=0.25))
    inside = mask[4:16, 6:18]
    assert inside.sum() == 64 and (~inside).sum() == 144 - 64
    np.testing.assert_array_equal(crop[inside], image[4:16, 6:18][inside])
    assert (crop[~inside] == np.array(MEAN, np.uint8)).all()
    # the source image is untouched
    np.testing.assert_array_equal(image, synthetic()[0])


def test_blur_changes_only_outside_mask_pixels() -> None:
    image, mask, box = synthetic()
    original = image[4:16, 6:18]
    crop = crop_region(image, mask, box, policy(background="blur", margin=0.25, blur_radius=2.0))
    inside = mask[4:16, 6:18]
    np.testing.assert_array_equal(crop[inside], original[inside])
    outside_before = original[~inside].astype(int)
    outside_after = crop[~inside].astype(int)
    # a black/white checkerboard blurred is mid-grey: nearly every pixel moves a lot
    changed = np.abs(outside_after - outside_before).max(axis=1) > 40
    assert changed.mean() > 0.9
    assert outside_after.std() < outside_before.std() / 2
    # neither kept nor mean-filled
    assert not (crop[~inside] == np.array(MEAN, np.uint8)).all()


def test_blur_radius_matters() -> None:
    image, mask, box = synthetic()
    small = crop_region(image, mask, box, policy(background="blur", margin=0.25, blur_radius=0.5))
    large = crop_region(image, mask, box, policy(background="blur", margin=0.25, blur_radius=4.0))
    inside = mask[4:16, 6:18]
    assert small[~inside].astype(int).std() > large[~inside].astype(int).std()


def test_square_pads_wide_crop_with_object_centred_and_fill_colour() -> None:
    image, _, _ = synthetic()
    mask = np.zeros((H, W), dtype=bool)
    mask[8:12, 4:20] = True  # 16 wide x 4 tall
    image[8:12, 4:20] = RED
    box = np.array([4, 8, 20, 12], np.float32)
    for background in ("keep", "mean", "blur"):
        crop = crop_region(image, mask, box, CropPolicy(margin=0.0, background=background))
        assert crop.shape == (16, 16, 3), background
        top = (16 - 4) // 2
        np.testing.assert_array_equal(crop[top : top + 4], image[8:12, 4:20])
        # padding is the fill colour (the mask's mean colour), whatever the background policy
        assert (crop[:top] == np.array(RED, np.uint8)).all()
        assert (crop[top + 4 :] == np.array(RED, np.uint8)).all()


def test_square_pads_tall_crop_left_and_right() -> None:
    image = np.zeros((30, 30, 3), np.uint8)
    image[5:20, 10:15] = (10, 20, 30)
    image[5:20, 15:16] = (40, 50, 60)
    mask = np.zeros((30, 30), dtype=bool)
    mask[5:20, 10:16] = True  # 6 wide x 15 tall
    crop = crop_region(image, mask, np.array([10, 5, 16, 20], np.float32), CropPolicy(margin=0.0))
    assert crop.shape == (15, 15, 3)
    left = (15 - 6) // 2  # 4 columns of padding left, 5 right
    np.testing.assert_array_equal(crop[:, left : left + 6], image[5:20, 10:16])
    fill = np.array([15, 25, 35], np.uint8)  # (5*(10,20,30) + (40,50,60)) / 6
    assert (crop[:, :left] == fill).all() and (crop[:, left + 6 :] == fill).all()


def test_square_crop_already_square_is_unchanged() -> None:
    image, mask, box = synthetic()
    sq = crop_region(image, mask, box, CropPolicy(margin=0.25, background="keep", square=True))
    np.testing.assert_array_equal(sq, image[4:16, 6:18])


def test_square_false_gives_expanded_box_size() -> None:
    image, _, _ = synthetic()
    mask = np.zeros((H, W), dtype=bool)
    mask[8:12, 4:20] = True
    box = np.array([4, 8, 20, 12], np.float32)
    crop = crop_region(image, mask, box, policy(margin=0.25))
    x0, y0, x1, y1 = expand_box(box, 0.25, H, W)
    assert (x0, y0, x1, y1) == (0, 7, 24, 13)
    assert crop.shape == (y1 - y0, x1 - x0, 3)


def test_empty_mask_crop_is_the_one_pixel_box() -> None:
    image, _, _ = synthetic()
    mask = np.zeros((H, W), dtype=bool)
    crop = crop_region(image, mask, np.zeros(4, np.float32), CropPolicy())
    assert crop.shape == (1, 1, 3)
    np.testing.assert_array_equal(crop[0, 0], image[0, 0])


def test_mask_shape_mismatch_is_value_error() -> None:
    image, _, box = synthetic()
    with pytest.raises(ValueError, match=r"mask must be 20x24 bool, got shape \(24, 20\)"):
        crop_region(image, np.zeros((W, H), bool), box, CropPolicy())


def test_crop_all_one_crop_per_region_in_order() -> None:
    image, mask, _ = synthetic()
    other = np.zeros((H, W), dtype=bool)
    other[0:2, 0:3] = True
    regions = Regions.from_masks(np.stack([mask, other]))
    crops = crop_all(image, regions, policy(margin=0.0, background="keep"))
    assert [c.shape for c in crops] == [(8, 8, 3), (2, 3, 3)]
    np.testing.assert_array_equal(crops[1], image[0:2, 0:3])


# ---------------------------------------------------------------------------------------------
# crop_whole


def test_crop_whole() -> None:
    image = np.zeros((4, 10, 3), np.uint8)
    image[:, :5] = (100, 0, 0)
    image[:, 5:] = (0, 0, 201)
    assert crop_whole(image, CropPolicy(square=False)) is image
    sq = crop_whole(image, CropPolicy(square=True))
    assert sq.shape == (10, 10, 3)
    np.testing.assert_array_equal(sq[3:7], image)
    mean = np.array([50, 0, 100], np.uint8)  # 100.5 rounds half to even -> 100
    assert (sq[:3] == mean).all() and (sq[7:] == mean).all()
    square = np.full((6, 6, 3), 9, np.uint8)
    np.testing.assert_array_equal(crop_whole(square, CropPolicy(square=True)), square)


# ---------------------------------------------------------------------------------------------
# keep_large

AREAS = [0, 1, 6, 7, 8, 100]  # on a 10x10 image


def areas_regions() -> Regions:
    masks = np.zeros((len(AREAS), 10, 10), dtype=bool)
    for i, a in enumerate(AREAS):
        masks[i].flat[:a] = True
    return Regions.from_masks(masks, label_ids=list(range(len(AREAS))))


@pytest.mark.parametrize(
    "min_area_px,min_area_frac,kept",
    [
        (0, 0.0, [1, 6, 7, 8, 100]),  # empty masks always go
        (1, 0.0, [1, 6, 7, 8, 100]),
        (7, 0.0, [7, 8, 100]),
        (8, 0.0, [8, 100]),
        (101, 0.0, []),
        (0, 0.06, [6, 7, 8, 100]),
        (0, 0.07, [7, 8, 100]),  # exactly 7 % is kept (0.07 * 100 is 7.000000000000001 in float)
        (0, 0.071, [8, 100]),
        (0, 0.08, [8, 100]),
        (0, 0.5, [100]),
        (7, 0.08, [8, 100]),  # the stricter of the two wins
        (9, 0.07, [100]),
    ],
)
def test_keep_large(min_area_px, min_area_frac, kept) -> None:
    r = areas_regions()
    out = keep_large(r, CropPolicy(min_area_px=min_area_px, min_area_frac=min_area_frac))
    assert out.areas.tolist() == kept
    assert out.label_ids.tolist() == [AREAS.index(a) for a in kept]


def test_keep_large_on_no_regions() -> None:
    assert len(keep_large(Regions.empty(10, 10), CropPolicy())) == 0


# ---------------------------------------------------------------------------------------------
# CropPolicy validation


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"margin": -0.1}, r"crop margin must be in \[0, 2\], got -0.1"),
        ({"margin": 2.5}, r"crop margin must be in \[0, 2\], got 2.5"),
        ({"background": "fill"}, r"crop background must be 'keep', 'mean' or 'blur', got 'fill'"),
        ({"blur_radius": 0}, r"blur_radius must be > 0, got 0"),
        ({"blur_radius": -3.0}, r"blur_radius must be > 0, got -3.0"),
        ({"min_area_px": -1}, r"min_area_px must be >= 0 and min_area_frac in \[0, 1\), got -1"),
        ({"min_area_frac": 1.0}, r"min_area_frac in \[0, 1\), got 64, 1.0"),
        ({"min_area_frac": -0.01}, r"got 64, -0.01"),
    ],
)
def test_crop_policy_validation(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        CropPolicy(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"margin": 0.0}, {"margin": 2.0}, {"min_area_px": 0, "min_area_frac": 0.0}, {}],
)
def test_crop_policy_bounds_accepted_and_round_trip(kwargs) -> None:
    p = CropPolicy(**kwargs)
    assert CropPolicy.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("box", [(10, 10, 30, 30), (20, 20, 40, 40), (0, 0, 64, 64)])
def test_mean_fill_is_the_whole_masks_mean_whatever_the_box(box: tuple[int, int, int, int]) -> None:
    # the fill is read from the crop only when the whole mask lies inside it; a box that cuts the
    # mask (a detector's box, not the mask's tight box) still gets the full mask's mean colour
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True
    policy = CropPolicy(margin=0.25, background="mean", square=False)
    crop = crop_region(image, mask, np.array(box, np.float32), policy)
    x0, y0, x1, y1 = expand_box(np.array(box, np.float32), 0.25, 64, 64)
    outside = ~mask[y0:y1, x0:x1]
    assert outside.any()
    expected = image[mask].mean(axis=0).round().astype(np.uint8)
    assert (crop[outside] == expected).all()
