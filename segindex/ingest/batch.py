"""One batch of decoded images through the model stages, to the rows to write.

The composition every engine runs (the local engine in this process, a Ray worker in its actor,
the video runner over sampled frames):
segment -> crop -> embed -> name (:mod:`segindex.ingest.stages`), one :class:`ImageWrite` per
image, a model failure recorded as that image's reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions
from segindex.device import backend_device
from segindex.embed.base import Embedder
from segindex.ingest.stages import Cropped, crop_stage, embed_stage, name_stage, segment_safely
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageWrite


@dataclass
class DecodedImage:
    """A decoded image: ``image`` ``HxWx3`` uint8 RGB; ``prepared`` the segmenter's network
    input made in a decode worker (``None``: the segmenter prepares it itself)."""

    path: str
    sha256: str
    image: np.ndarray
    prepared: Any = None


@dataclass(frozen=True)
class ModelStages:
    """The models and options of the batch stages, built once per run (a local run, a Ray
    actor, the videos of one ingest): ``segment_batch`` pictures per segmenter call,
    ``embed_batch`` crops per embedder call, at most ``max_regions`` regions per picture;
    ``labels=None`` keeps the segmenter's names."""

    segmenter: Segmenter
    embedder: Embedder
    crop: CropPolicy
    labels: LabelPolicy | None
    max_regions: int
    segment_batch: int
    embed_batch: int

    @classmethod
    def of(
        cls,
        segmenter: Segmenter,
        embedder: Embedder,
        crop: CropPolicy,
        runtime: RuntimeOptions,
        *,
        labels: LabelPolicy | None,
    ) -> ModelStages:
        """The stages for these models, with ``runtime``'s batch sizes for their devices."""
        segment_batch, embed_batch = runtime.batch_sizes(
            backend_device(segmenter), backend_device(embedder)
        )
        return cls(
            segmenter, embedder, crop, labels, runtime.max_regions, segment_batch, embed_batch
        )

    def run(
        self,
        decoded: Sequence[DecodedImage],
        timer: Callable[[str], AbstractContextManager[Any]],
    ) -> list[ImageWrite]:
        """Segment, crop, embed and name a batch; one write per image (failed images first,
        then the indexed ones in input order). ``timer(stage)`` times each stage."""
        segmenter, embedder, crop = self.segmenter, self.embedder, self.crop
        writes: list[ImageWrite] = []
        crop_meta = crop.to_dict()
        with timer("segment"):
            segs = segment_safely(
                segmenter,
                [d.image for d in decoded],
                self.segment_batch,
                paths=[d.path for d in decoded],
                prepared=[d.prepared for d in decoded],
            )
        pending: list[tuple[DecodedImage, Cropped]] = []
        with timer("crop"):
            for d, seg in zip(decoded, segs, strict=True):
                h, w = d.image.shape[:2]
                if isinstance(seg, str):
                    writes.append(
                        ImageWrite(path=d.path, sha256=d.sha256, width=w, height=h, error=seg)
                    )
                    continue
                pending.append((d, crop_stage(d.image, seg, crop, self.max_regions)))
        with timer("embed"):
            vectors = embed_stage(embedder, [c for _, c in pending], self.embed_batch, segmenter)
        for (d, item), vecs in zip(pending, vectors, strict=True):
            h, w = d.image.shape[:2]
            writes.append(
                ImageWrite(
                    path=d.path,
                    sha256=d.sha256,
                    width=w,
                    height=h,
                    regions=name_stage(item, vecs, embedder, self.labels),
                    kinds=item.kinds,
                    vectors=vecs,
                    crop=crop_meta,
                )
            )
        return writes
