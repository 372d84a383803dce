"""Text-prompted segmentation of one image: the masks CLIP matches to a text.

Segment the image (automatically, or from box/point prompts), crop every mask as ingestion does
(:func:`segindex.crop.crop_all` with a :class:`~segindex.config.CropPolicy`), embed the crops and
the text with the same embedder, rank the masks by cosine similarity and keep the best ``top_k``
at or above ``min_similarity``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segindex.config import CropPolicy
from segindex.embed.base import DEFAULT_TEMPLATES, Embedder
from segindex.errors import QueryError
from segindex.regions import Regions
from segindex.segment.base import Segmenter, check_image


def rank_by_text(
    image: np.ndarray,
    regions: Regions,
    text: str,
    embedder: Embedder,
    *,
    crop: CropPolicy | None = None,
    top_k: int | None = 1,
    min_similarity: float | None = None,
    templates: Sequence[str] | None = DEFAULT_TEMPLATES,
) -> tuple[Regions, np.ndarray]:
    """``(regions best first, similarities (M,) float32)`` of the regions matching ``text``.

    image: ``HxWx3`` uint8 RGB; regions: its masks. Empty masks are never returned.
    """
    check_image(image)
    if not text.strip():
        raise QueryError("text must not be empty")
    if top_k is not None and top_k < 1:
        raise QueryError(f"top_k must be >= 1 or None, got {top_k}")
    from segindex.crop import crop_all

    regions = regions[regions.areas > 0]
    if not len(regions):
        return regions, np.zeros(0, dtype=np.float32)
    crops = crop_all(image, regions, crop or CropPolicy())
    vectors = embedder.embed_images(crops)  # (N, D) L2-normalised
    query = embedder.embed_texts([text], templates=templates)[0]
    sims = (vectors @ query).astype(np.float32)
    order = np.argsort(-sims, kind="stable")
    if min_similarity is not None:
        order = order[sims[order] >= min_similarity]
    if top_k is not None:
        order = order[:top_k]
    return regions[order], sims[order]


def segment_by_text(
    image: np.ndarray,
    text: str,
    segmenter: Segmenter,
    embedder: Embedder,
    **ranking: Any,
) -> tuple[Regions, np.ndarray]:
    """Segment ``image`` automatically, then :func:`rank_by_text` (same keyword options)."""
    check_image(image)
    (regions,) = segmenter.segment([image], batch_size=1)
    return rank_by_text(image, regions, text, embedder, **ranking)


__all__ = ["rank_by_text", "segment_by_text"]
