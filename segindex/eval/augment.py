"""Augmentation of one paste: scale, rotation, flip, colour jitter and blur (backgrounds get
the colour jitter and blur too).

Every paste of a source instance looks different, so that finding the other pastes of an
instance, or of a class, takes more than matching the same pixels again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from segindex.eval.cutouts import Cutout, tight

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class Augment:
    """Ranges the random augmentation draws from (uniform unless said otherwise).

    max_rotation:   degrees either way
    brightness, contrast, saturation: multiplicative factor ranges
    max_hue:        hue shift either way, as a fraction of the colour wheel
    blur_p, max_blur: probability of a Gaussian blur, and its largest radius in pixels
    """

    max_rotation: float = 30.0
    brightness: tuple[float, float] = (0.6, 1.4)
    contrast: tuple[float, float] = (0.6, 1.4)
    saturation: tuple[float, float] = (0.3, 1.7)
    max_hue: float = 0.5
    blur_p: float = 0.5
    max_blur: float = 1.5


def augment(rng: np.random.Generator, cut: Cutout, side: float, aug: Augment) -> Cutout:
    """``cut`` resized so its longer side is ``side`` pixels, rotated, maybe flipped,
    colour-jittered and blurred; the mask follows the geometry (nearest neighbour)."""
    from PIL import Image

    h, w = cut.mask.shape
    scale = side / max(h, w)
    size = (max(4, int(round(w * scale))), max(4, int(round(h * scale))))
    img = Image.fromarray(cut.pixels).resize(size, Image.Resampling.BILINEAR)
    mask = Image.fromarray(cut.mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
    angle = float(rng.uniform(-aug.max_rotation, aug.max_rotation))
    img = img.rotate(angle, Image.Resampling.BILINEAR, expand=True)
    mask = mask.rotate(angle, Image.Resampling.NEAREST, expand=True)
    if rng.integers(2):
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        mask = mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = jitter(rng, np.asarray(img.convert("RGB")), aug)
    m = np.asarray(mask) > 127
    if not m.any():  # a sliver rotated away: keep the unrotated pixel grid
        m = np.ones(m.shape, dtype=bool)
    return tight(Cutout(cut.name, pixels, m, cut.instance))


def jitter(rng: np.random.Generator, pixels: np.ndarray, aug: Augment) -> np.ndarray:
    """``HxWx3`` uint8 RGB with random brightness, contrast, saturation, hue and maybe blur."""
    from PIL import Image, ImageEnhance, ImageFilter

    img = Image.fromarray(pixels)
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(*aug.brightness)))
    img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(*aug.contrast)))
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(*aug.saturation)))
    img = _shift_hue(img, float(rng.uniform(-aug.max_hue, aug.max_hue)))
    if rng.random() < aug.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, aug.max_blur))))
    return np.asarray(img.convert("RGB")).copy()


def _shift_hue(img: Image.Image, shift: float) -> Image.Image:
    from PIL import Image

    hsv = np.asarray(img.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")
