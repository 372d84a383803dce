"""Fakes for fault tests: a segmenter that is slow and chokes on one colour.

``PickySegmenter`` is :class:`~segindex.testing.fakes.FakeSegmenter` (same regions) that sleeps
``delay`` seconds per image (so a test can interrupt a run midway) and raises ``ValueError`` on
any batch holding an image that shows the ``poison`` palette colour (so exactly those images
fail, with a known reason, once the runner retries image by image).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from segindex.regions import Regions
from segindex.testing.fakes import PALETTE_NAMES, FakeSegmenter, quantise

#: the reason a poisoned image is recorded with (after the runner's "segmentation failed: ")
POISON_REASON = "ValueError: poisoned picture"


class PickySegmenter(FakeSegmenter):
    """A slow :class:`FakeSegmenter` that raises on pictures showing the ``poison`` colour."""

    name = "picky"

    def __init__(
        self,
        poison: str = "magenta",
        delay: float = 0.0,
        min_fraction: float = 0.001,
        device: str = "cpu",
    ) -> None:
        if poison not in PALETTE_NAMES:
            raise ValueError(
                f"poison must be a palette colour ({', '.join(PALETTE_NAMES)}), got {poison!r}"
            )
        super().__init__(min_fraction=min_fraction, device=device)
        self.poison, self.delay = poison, float(delay)

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        time.sleep(self.delay * len(images))
        colour = PALETTE_NAMES.index(self.poison)
        if any((quantise(im) == colour).any() for im in images):
            raise ValueError("poisoned picture")
        return super()._segment_batch(images)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "name": self.name, "poison": self.poison}


def register_picky() -> None:
    """Register ``picky`` as a segmenter (idempotent), beside the ``fake`` backends."""
    from segindex.segment import SEGMENTERS
    from segindex.testing.fakes import register_fakes

    register_fakes()
    SEGMENTERS.register("picky", PickySegmenter, replace=True)
