"""What a search returns: :class:`Hit` (one region, with its mask as COCO RLE) and
:class:`SearchPage` (a page of hits); :func:`hit_from_row` makes a hit of a stored region row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segindex import rle as rle_codec

__all__ = ["Hit", "SearchPage", "hit_from_row"]


@dataclass
class Hit:
    """One matching region.

    bbox:       XYXY pixels in the original image (x1/y1 exclusive)
    rle:        COCO compressed RLE of the mask (``size`` = [height, width])
    similarity: cosine similarity of the region's vector to the query, in [-1, 1] (NaN for a
                region read by id, without a query)
    kind:       ``segment`` (a mask from the segmenter), ``image`` (the whole image) or
                ``track`` (a video track: see :class:`segindex.search.tracks.TrackHit`)
    frame_index, time_s: for a region of a sampled video frame, the frame's 0-based index in
                presentation order and its time in seconds; ``None`` for images
    track_id:   the stable id of the video track the region belongs to, or ``None``
    """

    region_id: int
    image_id: int
    image_path: str
    kind: str
    label: str
    label_id: int
    score: float
    is_thing: bool
    bbox: tuple[float, float, float, float]
    area: int
    rle: rle_codec.RLE
    similarity: float
    #: with ``group_by_image``: how many of the image's regions match (filters, min similarity)
    image_matches: int | None = None
    frame_index: int | None = None
    time_s: float | None = None
    track_id: int | None = None
    _mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def mask(self) -> np.ndarray:
        """``HxW`` bool mask at the image's resolution (decoded on first call, then cached)."""
        if self._mask is None:
            self._mask = rle_codec.decode(self.rle)
        return self._mask

    def to_dict(self) -> dict[str, Any]:
        out = {
            "region_id": self.region_id,
            "image_id": self.image_id,
            "image_path": self.image_path,
            "kind": self.kind,
            "label": self.label,
            "label_id": self.label_id,
            "score": round(self.score, 6),
            "is_thing": self.is_thing,
            "bbox": [round(v, 2) for v in self.bbox],
            "area": self.area,
            "rle": dict(self.rle),
            "similarity": None if np.isnan(self.similarity) else round(self.similarity, 6),
        }
        if self.image_matches is not None:
            out["image_matches"] = self.image_matches
        if self.frame_index is not None:
            out["frame_index"] = self.frame_index
            out["time_s"] = None if self.time_s is None else round(self.time_s, 6)
        if self.track_id is not None:
            out["track_id"] = self.track_id
        return out


def hit_from_row(row: Any, similarity: float) -> Hit:
    frame_index = getattr(row, "frame_index", None)
    time_s = getattr(row, "time_s", None)
    track_id = getattr(row, "track_id", None)
    return Hit(
        region_id=int(row.id),
        image_id=int(row.image_id),
        image_path=row.path,
        kind=row.kind,
        label=row.label,
        label_id=int(row.label_id),
        score=float(row.score),
        is_thing=bool(row.is_thing),
        bbox=(float(row.x0), float(row.y0), float(row.x1), float(row.y1)),
        area=int(row.area),
        rle={"size": [int(row.height), int(row.width)], "counts": row.rle},
        similarity=float(similarity),
        frame_index=None if frame_index is None else int(frame_index),
        time_s=None if time_s is None else float(time_s),
        track_id=None if track_id is None else int(track_id),
    )


@dataclass
class SearchPage:
    """One page of hits: ``hits[j]`` is overall rank ``offset + j``; ``has_more`` when a further
    page exists."""

    hits: list[Hit]
    k: int
    offset: int
    has_more: bool
    #: for region-of-a-new-image terms: the mask each prompt resolved to (``QueryRegion``)
    query_regions: list[Any] = field(default_factory=list)

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.k if self.has_more else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": [h.to_dict() for h in self.hits],
            "k": self.k,
            "offset": self.offset,
            "has_more": self.has_more,
            "next_offset": self.next_offset,
        }
