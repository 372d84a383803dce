"""Where masks are made: segmenter backends, chosen by name from a registry."""

from __future__ import annotations

from segindex.registry import Registry
from segindex.segment.base import Segmenter

SEGMENTERS: Registry[Segmenter] = Registry("segmenter", "segindex.segmenters")

__all__ = ["SEGMENTERS", "Segmenter"]
