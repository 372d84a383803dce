"""Where masks become crops: the picture the embedder sees for each region.

All images are ``HxWx3`` uint8 RGB; masks ``HxW`` bool; boxes XYXY pixels (x1/y1 exclusive).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from segindex.config import CropPolicy
from segindex.regions import Regions


def keep_large(regions: Regions, policy: CropPolicy) -> Regions:
    """Drop regions smaller than ``policy.min_area_px`` pixels or ``min_area_frac`` of the image."""
    h, w = regions.image_size
    areas = regions.areas
    keep = areas >= max(policy.min_area_px, 1)
    if policy.min_area_frac > 0:
        # Compare fractions, not areas with ceil(frac * h * w): 0.07 * 100 == 7.000000000000001,
        # which would drop a region of exactly 7 % of the image.
        keep &= areas / max(h * w, 1) >= policy.min_area_frac
    return regions[keep]


def expand_box(
    box: np.ndarray, margin: float, height: int, width: int
) -> tuple[int, int, int, int]:
    """Grow an XYXY box by ``margin`` x its size on each side, clip to the image, round outwards."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    ix0 = max(0, int(np.floor(x0 - dx)))
    iy0 = max(0, int(np.floor(y0 - dy)))
    ix1 = min(width, int(np.ceil(x1 + dx)))
    iy1 = min(height, int(np.ceil(y1 + dy)))
    return ix0, iy0, max(ix1, ix0 + 1), max(iy1, iy0 + 1)


def pad_square(crop: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """Centre ``crop`` on a square canvas of its longer side filled with RGB ``fill``."""
    h, w = crop.shape[:2]
    side = max(h, w)
    if h == w:
        return crop
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = fill
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = crop
    return canvas


def crop_region(
    image: np.ndarray, mask: np.ndarray, box: np.ndarray, policy: CropPolicy
) -> np.ndarray:
    """Cut one region out of ``image`` following ``policy``; returns ``hxwx3`` uint8 RGB."""
    height, width = image.shape[:2]
    if mask.shape != (height, width):
        raise ValueError(f"mask must be {height}x{width} bool, got shape {mask.shape}")
    x0, y0, x1, y1 = expand_box(box, policy.margin, height, width)
    crop = image[y0:y1, x0:x1].copy()
    inside = mask[y0:y1, x0:x1]
    fill = _mask_mean(image, mask, crop, inside)
    if policy.background == "mean":
        crop[~inside] = fill
    elif policy.background == "blur":
        blurred = np.asarray(
            Image.fromarray(crop).filter(ImageFilter.GaussianBlur(policy.blur_radius))
        )
        crop[~inside] = blurred[~inside]
    return pad_square(crop, fill) if policy.square else crop


def _mask_mean(
    image: np.ndarray, mask: np.ndarray, crop: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """The region's mean RGB colour (the crop's when the mask is empty). Read from the crop when
    the whole mask lies inside it (the usual case: a box is its mask's tight box), which is the
    same pixels in the same order as ``image[mask]`` without gathering a full frame per region."""
    n_inside = np.count_nonzero(inside)
    if n_inside and n_inside == np.count_nonzero(mask):
        pixels = crop[inside]
    elif n_inside or mask.any():
        pixels = image[mask]
    else:
        pixels = crop.reshape(-1, 3)
    return pixels.mean(axis=0).round().astype(np.uint8)


def crop_whole(image: np.ndarray, policy: CropPolicy) -> np.ndarray:
    """The whole image as one crop (padded to a square with its mean colour when asked)."""
    if not policy.square:
        return image
    fill = image.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    return pad_square(image, fill)


def crop_all(image: np.ndarray, regions: Regions, policy: CropPolicy) -> list[np.ndarray]:
    """One crop per region, in order."""
    return [
        crop_region(image, regions.masks[i], regions.boxes[i], policy) for i in range(len(regions))
    ]
