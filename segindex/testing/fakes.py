"""Deterministic fake backends with known ground truth, registered through the real registries.

``FakeSegmenter`` quantises every pixel to a small colour palette and returns one mask per palette
colour present (the most frequent colour is "stuff" background, the others "things").
``FakeEmbedder`` maps a crop to a vector of its mean colour's closeness to each palette colour,
and a text containing a colour word ("a photo of a red.") to exactly the vector of a pure crop of
that colour. So a text search for "red" must rank red regions first, and tests can say exactly
which regions each query should return.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from segindex.embed.base import Embedder
from segindex.regions import Regions
from segindex.segment.base import Segmenter

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 180, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "magenta": (200, 40, 200),
    "cyan": (40, 200, 200),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "gray": (128, 128, 128),
}
PALETTE_NAMES = list(PALETTE)
_COLOURS = np.array([PALETTE[n] for n in PALETTE_NAMES], dtype=np.float32)  # (P, 3)


def quantise(image: np.ndarray) -> np.ndarray:
    """``HxW`` int64 palette index of the nearest palette colour for each pixel of ``HxWx3``."""
    flat = image.reshape(-1, 3).astype(np.float32)
    d = ((flat[:, None, :] - _COLOURS[None]) ** 2).sum(-1)
    return d.argmin(1).reshape(image.shape[:2])


class FakeSegmenter(Segmenter):
    """One region per palette colour covering at least ``min_fraction`` of the image."""

    name = "fake"

    def __init__(self, min_fraction: float = 0.001, device: str = "cpu") -> None:
        self.min_fraction = min_fraction
        self.calls = 0  # number of batches segmented, for tests

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        self.calls += 1
        return [self._one(im) for im in images]

    def _one(self, image: np.ndarray) -> Regions:
        q = quantise(image)
        counts = np.bincount(q.ravel(), minlength=len(PALETTE_NAMES))
        background = int(counts.argmax())
        present = [
            i for i in range(len(PALETTE_NAMES)) if counts[i] >= max(1, self.min_fraction * q.size)
        ]
        masks = np.stack([q == i for i in present]) if present else np.zeros((0, *q.shape), bool)
        return Regions.from_masks(
            masks,
            label_ids=present,
            labels=[PALETTE_NAMES[i] for i in present],
            scores=[0.9 if i != background else 0.6 for i in present],
            is_thing=[i != background for i in present],
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "min_fraction": self.min_fraction}


def colour_vector(rgb: np.ndarray) -> np.ndarray:
    """``(N, 13)`` float32: closeness of each RGB row to the palette, plus the scaled RGB."""
    rgb = np.atleast_2d(np.asarray(rgb, dtype=np.float32))
    d2 = ((rgb[:, None, :] - _COLOURS[None]) ** 2).sum(-1)
    return np.concatenate([np.exp(-d2 / (2 * 40.0**2)), rgb / 255.0 * 0.1], axis=1).astype(
        np.float32
    )


class FakeEmbedder(Embedder):
    """Mean-colour embedder; ``variant`` changes the vector space identity (for mismatch tests)."""

    name = "fake"

    def __init__(self, variant: str = "v1", device: str = "cpu") -> None:
        self.variant = variant
        self.image_calls: list[int] = []  # batch sizes seen, for tests

    @property
    def dim(self) -> int:
        return len(PALETTE_NAMES) + 3

    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        self.image_calls.append(len(images))
        means = np.stack([im.reshape(-1, 3).mean(0) for im in images])
        return colour_vector(means)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._text(t) for t in texts])

    def _text(self, text: str) -> np.ndarray:
        for name in PALETTE_NAMES:
            if re.search(rf"\b{name}\b", text.lower()):
                return colour_vector(np.array(PALETTE[name]))[0]
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).random(self.dim).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "variant": self.variant}


def draw_scene(
    shapes: Sequence[tuple[str, tuple[int, int, int, int]]],
    size: tuple[int, int] = (96, 128),
    background: str = "gray",
) -> np.ndarray:
    """An ``HxWx3`` uint8 RGB scene: ``shapes`` are ``(colour name, XYXY box)`` rectangles drawn
    in order on a ``size`` = ``(height, width)`` canvas of the ``background`` colour."""
    canvas = np.empty((*size, 3), dtype=np.uint8)
    canvas[:] = PALETTE[background]
    for colour, (x0, y0, x1, y1) in shapes:
        canvas[y0:y1, x0:x1] = PALETTE[colour]
    return canvas


def register_fakes() -> None:
    """Register ``fake`` in both registries (idempotent)."""
    from segindex.embed import EMBEDDERS
    from segindex.segment import SEGMENTERS

    SEGMENTERS.register("fake", FakeSegmenter, replace=True)
    EMBEDDERS.register("fake", FakeEmbedder, replace=True)
