"""Base class of embedders: abstract batch methods; the base batches, normalises, averages
prompts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segindex.regions import Regions
    from segindex.segment.base import Segmenter

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def check_rgb_image(i: int, img: object) -> np.ndarray:
    """``img`` (the ``i``-th of a batch) if it is a non-empty ``HxWx3`` uint8 RGB array, else a
    ``ValueError`` saying what came."""
    if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3):
        got = (
            f"shape {img.shape} dtype {img.dtype}"
            if isinstance(img, np.ndarray)
            else type(img).__name__
        )
        raise ValueError(f"image {i} must be an HxWx3 uint8 RGB array, got {got}")
    if img.dtype != np.uint8:
        raise ValueError(f"image {i} must be uint8 RGB, got dtype {img.dtype}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image {i} is empty, got shape {img.shape}")
    return img


class Embedder(ABC):
    """Maps images and texts into one vector space of dimension :attr:`dim`."""

    name: str = ""
    #: texts go into the same space (text queries, zero-shot naming of class-agnostic regions)
    embeds_text: bool = True
    #: regions are embedded from the full image and their masks (``embed_regions(image,
    #: regions, segmenter=...) -> (N, D)``) instead of from crops
    embeds_regions: bool = False

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector dimension."""

    @abstractmethod
    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """``(N, D)`` float vectors for a batch of ``HxWx3`` uint8 RGB images (any norm)."""

    @abstractmethod
    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """``(N, D)`` float vectors for a batch of texts (any norm)."""

    def embed_images(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """``(N, D)`` L2-normalised float32 vectors for ``HxWx3`` uint8 RGB images."""
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._embed_images(list(images[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
        return l2_normalise(np.concatenate(parts))

    def embed_texts(
        self, texts: Sequence[str], templates: Sequence[str] | None = DEFAULT_TEMPLATES
    ) -> np.ndarray:
        """``(N, D)`` L2-normalised float32 vectors, one per text.

        With ``templates``, each text is written into every template ("a photo of a {}."), the
        template embeddings are normalised, averaged and normalised again (CLIP prompt ensembling).
        ``templates=None`` embeds the texts verbatim.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not templates:
            return l2_normalise(self._embed_texts(list(texts)))
        prompts = [t.format(text) for text in texts for t in templates]
        vecs = l2_normalise(self._embed_texts(prompts)).reshape(len(texts), len(templates), -1)
        return l2_normalise(vecs.mean(axis=1))

    def embed_regions(
        self, image: np.ndarray, regions: Regions, *, segmenter: Segmenter | None = None
    ) -> np.ndarray:
        """``(N, D)`` L2-normalised float32 vectors of the ``N`` regions of one ``HxWx3`` uint8
        RGB image, pooled from the full image and the regions' ``NxHxW`` bool masks (embedders
        with :attr:`embeds_regions` only; others embed crops with :meth:`embed_images`).

        segmenter: the segmenter that made ``regions``; an embedder may reuse its encoder pass
            over this image (:attr:`segindex.segment.base.Segmenter.encoder`).
        """
        from segindex.errors import ConfigError

        raise ConfigError(
            f"embedder {self.name!r} embeds crops, not regions of a full image "
            f"(embeds_regions is False): use embed_images on the crops"
        )

    def describe(self) -> dict[str, Any]:
        """What identifies this embedder's vector space (stored and checked on reopen)."""
        return {"name": self.name, "dim": self.dim}
