"""``Regions``: the one batched result type of segmentation, for a single image.

Parallel arrays, validated on construction, sliceable into the same type::

    masks     (N, H, W) bool      at the original image resolution
    boxes     (N, 4)    float32   XYXY pixels, x1/y1 exclusive (tight box of the mask)
    label_ids (N,)      int64     backend's class ids (-1 when class-agnostic)
    labels    (N,)      object    class names (str)
    scores    (N,)      float32   backend confidence in [0, 1]
    is_thing  (N,)      bool      countable object (True) or amorphous stuff (False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segindex import rle as rle_codec
from segindex.masks import boxes_from_masks


@dataclass(frozen=True)
class Regions:
    masks: np.ndarray
    boxes: np.ndarray
    label_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    is_thing: np.ndarray

    def __post_init__(self) -> None:
        m = self.masks
        if not isinstance(m, np.ndarray) or m.ndim != 3 or m.dtype != np.bool_:
            got = getattr(m, "shape", type(m).__name__), getattr(m, "dtype", None)
            raise ValueError(f"masks must be NxHxW bool, got shape {got[0]} dtype {got[1]}")
        n = m.shape[0]
        expect = {
            "boxes": ((n, 4), np.float32),
            "label_ids": ((n,), np.int64),
            "labels": ((n,), np.object_),
            "scores": ((n,), np.float32),
            "is_thing": ((n,), np.bool_),
        }
        for name, (shape, dtype) in expect.items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                raise ValueError(
                    f"{name} must be {shape} {np.dtype(dtype).name} for {n} masks, got "
                    f"shape {getattr(a, 'shape', None)} dtype {getattr(a, 'dtype', None)}"
                )

    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray,
        *,
        label_ids: Sequence[int] | np.ndarray | None = None,
        labels: Sequence[str] | None = None,
        scores: Sequence[float] | np.ndarray | None = None,
        is_thing: Sequence[bool] | np.ndarray | None = None,
    ) -> Regions:
        """Build from masks, computing boxes; missing fields get neutral defaults."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be NxHxW, got shape {masks.shape}")
        masks = masks.astype(bool, copy=False)
        n = len(masks)
        return cls(
            masks=masks,
            boxes=boxes_from_masks(masks),
            label_ids=np.asarray(label_ids if label_ids is not None else [-1] * n, dtype=np.int64),
            labels=_object_array(labels if labels is not None else ["object"] * n),
            scores=np.asarray(scores if scores is not None else [1.0] * n, dtype=np.float32),
            is_thing=np.asarray(is_thing if is_thing is not None else [True] * n, dtype=bool),
        )

    @classmethod
    def empty(cls, height: int, width: int) -> Regions:
        return cls.from_masks(np.zeros((0, height, width), dtype=bool))

    @classmethod
    def concatenate(cls, parts: Sequence[Regions]) -> Regions:
        if not parts:
            raise ValueError("concatenate needs at least one Regions")
        return cls(
            masks=np.concatenate([p.masks for p in parts]),
            boxes=np.concatenate([p.boxes for p in parts]),
            label_ids=np.concatenate([p.label_ids for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            is_thing=np.concatenate([p.is_thing for p in parts]),
        )

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Regions:
        """Index with an int, slice, integer array or bool array; always returns ``Regions``."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Regions(
            masks=self.masks[index],
            boxes=self.boxes[index],
            label_ids=self.label_ids[index],
            labels=self.labels[index],
            scores=self.scores[index],
            is_thing=self.is_thing[index],
        )

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the image the masks belong to."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def areas(self) -> np.ndarray:
        """``(N,)`` int64 pixel counts of the masks."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def rles(self) -> list[rle_codec.RLE]:
        """COCO RLE of each mask."""
        return rle_codec.encode_many(self.masks)


def _object_array(values: Sequence[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [str(v) for v in values]
    return out
