"""Offline sources of the evaluation set: object cut-outs (each a distinct source instance),
distractor patches and backgrounds.

things      instances (``Cutout.instance``)
  quokka    ``quokka/0``: ``shared/images/quokka.jpg`` cut along its hand-drawn polygon (only
            when the shared folder is present)
  coin      ``coin/NN``: every coin of ``skimage.data.coins()`` of usable size, its own instance
  horse     ``horse/<coat>``: the ``skimage.data.horse()`` silhouette with three different coats
  cat       ``cat/0``: the cat's head of ``skimage.data.chelsea()`` (an elliptical cut)
  cup       ``cup/0``: the cup and saucer of ``skimage.data.coffee()`` (an elliptical cut)
  ball      ``ball/<colour>-<pattern>``: drawn, shaded discs, six colours x plain/striped, drawn
            at paste size (see :func:`draw_ball`)
distractors ``distractor/<photo>-N``: elliptical patches of photos (astronaut, rocket, camera,
            immunohistochemistry), each its own instance, never a query and never relevant
stuff       grass, gravel, brick wall: the ``skimage.data`` textures, tinted, as background segments
void        photo backgrounds (coffee, rocket, astronaut, motorcycle): unlabelled pixels

All pixels are ``hxwx3`` uint8 RGB, masks ``hxw`` bool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError

BALL_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 30),
    "blue": (30, 80, 200),
    "yellow": (240, 200, 30),
    "green": (40, 160, 60),
    "white": (235, 235, 225),
    "purple": (120, 50, 160),
}
BALL_PATTERNS = ("plain", "striped")
DISTRACTOR = "distractor"  # the class name of distractor regions


@dataclass(frozen=True)
class Cutout:
    """An object to paste: ``hxwx3`` uint8 RGB ``pixels``, ``hxw`` bool ``mask``, its class
    ``name`` and its source ``instance`` (``"coin/07"``)."""

    name: str
    pixels: np.ndarray
    mask: np.ndarray
    instance: str = ""


@dataclass(frozen=True)
class Sources:
    """Everything a composite is made of: cut-outs by class, distractor patches, and backgrounds
    as ``(name, HxWx3 uint8, stuff class or None)``."""

    things: dict[str, list[Cutout]]
    distractors: list[Cutout]
    backgrounds: list[tuple[str, np.ndarray, str | None]]


def default_shared_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared"


def _skimage_data() -> Any:
    try:
        import skimage.data
    except ImportError:
        raise ConfigError(
            "making an evaluation set needs scikit-image (pip install scikit-image)"
        ) from None
    return skimage.data


def load_sources(shared_dir: Path | None = None) -> Sources:
    """Load every source (deterministic: no randomness here)."""
    data = _skimage_data()
    things: dict[str, list[Cutout]] = {}
    quokka = _quokka(shared_dir if shared_dir is not None else default_shared_dir())
    if quokka is not None:
        things["quokka"] = [quokka]
    things["coin"] = _coins(data.coins())
    things["horse"] = _horses(data)
    things["cat"] = [_ellipse_cut("cat", "cat/0", data.chelsea(), (230, 150), (185, 140))]
    things["cup"] = [_ellipse_cut("cup", "cup/0", data.coffee(), (280, 225), (200, 150))]
    distractors = []
    for photo, centres in (
        ("astronaut", [(180, 330), (420, 420), (90, 90)]),
        ("rocket", [(320, 180), (520, 330)]),
        ("camera", [(250, 150), (140, 380)]),
        ("immunohistochemistry", [(256, 256)]),
    ):
        im = getattr(data, photo)()
        rgb = im if im.ndim == 3 else np.stack([im] * 3, -1)
        for j, c in enumerate(centres):
            distractors.append(
                _ellipse_cut(DISTRACTOR, f"{DISTRACTOR}/{photo}-{j}", rgb, c, (70, 55))
            )
    backgrounds: list[tuple[str, np.ndarray, str | None]] = [
        ("grass", _tint(data.grass(), (0.55, 0.95, 0.4)), "grass"),
        ("gravel", _tint(data.gravel(), (0.9, 0.85, 0.8)), "gravel"),
        ("brick", _tint(data.brick(), (1.0, 0.6, 0.45)), "brick wall"),
        ("coffee", data.coffee(), None),
        ("rocket", data.rocket(), None),
        ("astronaut", data.astronaut(), None),
        ("motorcycle", data.stereo_motorcycle()[0], None),
    ]
    return Sources(things, distractors, backgrounds)


def _quokka(shared: Path) -> Cutout | None:
    photo_path = shared / "images" / "quokka.jpg"
    ann = shared / "images" / "quokka_annotations.json"
    if not (photo_path.exists() and ann.exists()):
        return None
    from PIL import Image, ImageDraw

    photo = np.asarray(Image.open(photo_path).convert("RGB"))
    poly = [(p["x"], p["y"]) for p in json.loads(ann.read_text())["polygons"][0]["keypoints"]]
    canvas = Image.new("L", (photo.shape[1], photo.shape[0]), 0)
    ImageDraw.Draw(canvas).polygon(poly, fill=1)
    return tight(Cutout("quokka", photo, np.asarray(canvas, dtype=bool), "quokka/0"))


def _coins(coins: np.ndarray) -> list[Cutout]:
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    fg = ndimage.binary_fill_holes(
        ndimage.binary_opening(coins > threshold_otsu(coins), iterations=2)
    )
    labels, n = ndimage.label(fg)
    rgb = np.stack([coins] * 3, -1)
    rgb = np.clip(rgb * np.array([1.05, 0.95, 0.75]), 0, 255).astype(np.uint8)
    out: list[Cutout] = []
    for lab in range(1, n + 1):
        m = labels == lab
        if 800 <= m.sum() <= 3100:
            out.append(tight(Cutout("coin", rgb, m, f"coin/{len(out):02d}")))
    return out


def _horses(data: Any) -> list[Cutout]:
    horse = ~data.horse()
    h, w = horse.shape
    textures = {
        "bay": (data.gravel(), (120, 72, 40)),
        "black": (data.grass(), (45, 40, 38)),
        "grey": (data.brick(), (190, 188, 180)),
    }
    out = []
    for coat, (texture, colour) in textures.items():
        t = np.resize(texture, (h, w)).astype(np.float32) / 255
        pixels = np.array(colour, np.float32) * (0.7 + 0.6 * t[..., None])
        cut = Cutout("horse", np.clip(pixels, 0, 255).astype(np.uint8), horse, f"horse/{coat}")
        out.append(tight(cut))
    return out


def _ellipse_cut(
    name: str,
    instance: str,
    photo: np.ndarray,
    centre: tuple[int, int],
    radii: tuple[int, int],
) -> Cutout:
    """An elliptical cut-out of ``photo`` (``centre`` XY, ``radii`` XY pixels, clipped)."""
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    mask = ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0
    return tight(Cutout(name, photo, mask, instance))


def _tint(gray: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    return np.clip(gray[..., None].astype(np.float32) * np.array(factors), 0, 255).astype(np.uint8)


def tight(c: Cutout) -> Cutout:
    """The cut-out cropped to its mask's bounding box."""
    rows, cols = np.flatnonzero(c.mask.any(1)), np.flatnonzero(c.mask.any(0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Cutout(c.name, c.pixels[y0:y1, x0:x1].copy(), c.mask[y0:y1, x0:x1].copy(), c.instance)


def ball_instances() -> list[str]:
    """Every ball instance, ``"ball/<colour>-<pattern>"``."""
    return [f"ball/{c}-{p}" for c in BALL_COLOURS for p in BALL_PATTERNS]


def draw_ball(instance: str, size: int) -> Cutout:
    """The ball ``instance`` (see :func:`ball_instances`) drawn as a ``size`` px shaded disc."""
    colour_name, pattern = instance.split("/", 1)[1].split("-")
    colour = np.array(BALL_COLOURS[colour_name], np.float32)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) + 0.5
    r = size / 2
    mask = ((yy - r) ** 2 + (xx - r) ** 2) / r**2 <= 1.0
    light = np.clip(
        1.15 - 0.6 * (((yy - 0.35 * size) ** 2 + (xx - 0.35 * size) ** 2) / r**2), 0.3, 1.2
    )
    base = np.broadcast_to(colour, (size, size, 3)).copy()
    if pattern == "striped":
        band = np.abs(yy - r) < 0.22 * size
        base[band] = (245, 245, 240)
    pixels = np.clip(base * light[..., None], 0, 255).astype(np.uint8)
    return Cutout("ball", pixels, mask, instance)
