"""The model stages, each a plain function over one batch of decoded pictures (images, or the
sampled frames of a video: both go through exactly these functions).

    segment  -> Regions per picture                     (segindex.segment)
    crop     -> the kept regions and one crop per region (+ the whole picture)  (segindex.crop)
    embed    -> L2-normalised float32 vectors, many pictures' crops per batch  (segindex.embed)
    name     -> class-agnostic regions named by CLIP zero-shot  (segindex.labels)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segindex.config import CropPolicy, LabelPolicy
from segindex.crop import crop_all, crop_whole, keep_large
from segindex.embed.base import Embedder
from segindex.errors import ModelLoadError
from segindex.labels import name_class_agnostic
from segindex.regions import Regions
from segindex.segment.base import Segmenter


@dataclass
class Cropped:
    """One picture after the crop stage.

    ``image``: ``HxWx3`` uint8 RGB; ``regions``: the ``N`` kept regions (the whole picture last
    when the crop policy asks for it); ``kinds``: ``N`` of ``"segment"`` / ``"image"``;
    ``crops``: ``N`` ``hxwx3`` uint8 RGB pictures, parallel to ``regions``."""

    image: np.ndarray
    regions: Regions
    kinds: list[str]
    crops: list[np.ndarray]


def segment_safely(
    segmenter: Segmenter,
    images: Sequence[np.ndarray],
    batch_size: int,
    paths: Sequence[str] | None = None,
    prepared: Sequence[Any] | None = None,
) -> list[Regions | str]:
    """Segment a batch; if the batch fails, retry image by image so one bad image fails alone.

    ``paths`` (parallel to ``images``) reach only segmenters that declare ``needs_paths``;
    ``prepared`` (parallel too) only segmenters with a preprocessor.
    """
    try:
        return list(
            segmenter.segment(images, batch_size=batch_size, paths=paths, prepared=prepared)
        )
    except ModelLoadError:
        raise
    except Exception:
        out: list[Regions | str] = []
        for i, im in enumerate(images):
            one = None if paths is None else [paths[i]]
            try:
                out.append(segmenter.segment([im], batch_size=1, paths=one)[0])  # unprepared
            except ModelLoadError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded as this image's failure
                out.append(f"segmentation failed: {type(e).__name__}: {e}")
        return out


def top_regions(regions: Regions, limit: int) -> Regions:
    """At most ``limit`` regions: the highest scores first, larger areas breaking ties."""
    if len(regions) <= limit:
        return regions
    order = np.lexsort((-regions.areas, -regions.scores))[:limit]
    return regions[np.sort(order)]


def whole_image_region(height: int, width: int) -> Regions:
    """The whole image as one region (label ``image``, stuff, score 1)."""
    return Regions.from_masks(
        np.ones((1, height, width), dtype=bool),
        label_ids=[-1],
        labels=["image"],
        scores=[1.0],
        is_thing=[False],
    )


def crop_stage(image: np.ndarray, regions: Regions, crop: CropPolicy, max_regions: int) -> Cropped:
    """Keep the large regions (at most ``max_regions``, best scores first), cut one crop each,
    and add the whole picture as a region of kind ``image`` when ``crop.whole_image``.

    ``image``: ``HxWx3`` uint8 RGB; ``regions``: its segmentation (masks ``NxHxW``)."""
    h, w = image.shape[:2]
    kept = top_regions(keep_large(regions, crop), max_regions)
    crops = list(crop_all(image, kept, crop))
    kinds = ["segment"] * len(kept)
    if crop.whole_image:
        kept = Regions.concatenate([kept, whole_image_region(h, w)])
        crops.append(crop_whole(image, crop))
        kinds.append("image")
    return Cropped(image=image, regions=kept, kinds=kinds, crops=crops)


def embed_stage(
    embedder: Embedder,
    items: Sequence[Cropped],
    batch_size: int,
    segmenter: Segmenter | None = None,
) -> list[np.ndarray]:
    """Embed every item's regions, all items' crops in one batched pass (an embedder that
    ``embeds_regions`` gets each full picture and its regions instead, with the ``segmenter``
    so that it can reuse the segmenter's encoder pass).

    Returns one ``(N_i, D)`` float32 L2-normalised array per item, rows parallel to
    ``items[i].regions``."""
    if embedder.embeds_regions:
        return [
            embedder.embed_regions(item.image, item.regions, segmenter=segmenter) for item in items
        ]
    crops = [c for item in items for c in item.crops]
    vectors = embedder.embed_images(crops, batch_size=batch_size)
    out: list[np.ndarray] = []
    offset = 0
    for item in items:
        n = len(item.regions)
        out.append(vectors[offset : offset + n])
        offset += n
    return out


def name_stage(
    item: Cropped, vectors: np.ndarray, embedder: Embedder, labels: LabelPolicy | None
) -> Regions:
    """Name the item's class-agnostic regions (SAM's) by CLIP zero-shot on their ``(N, D)``
    vectors (:mod:`segindex.labels`); ``labels=None``, or an embedder that embeds no text, keeps
    the segmenter's names."""
    if labels is None or not embedder.embeds_text:
        return item.regions
    return name_class_agnostic(item.regions, item.kinds, vectors, embedder, labels)
