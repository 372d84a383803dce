"""What a scene search returns: :class:`SceneHit`, an image (or a video time span) with the
regions (or tracks) that satisfied each named part."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from segindex.search.hits import Hit

__all__ = ["SceneHit"]


@dataclass
class SceneHit:
    """One image (or video) where the scene holds.

    score:     the scene's score: the minimum over its positive parts of each part's similarity
               (see :mod:`segindex.search.scenes.executor`); higher is better
    kind:      ``image``, or ``video`` for a video (its parts are tracks)
    parts:     part name -> the regions that satisfied it (for an Object: its best region under
               the relations; for ``COUNT(x) >= n``: the ``n`` best regions); a video's parts are
               :class:`~segindex.search.tracks.TrackHit`s
    start_s, end_s: a video's time span covering the matched tracks (``None`` for images)
    """

    image_id: int
    image_path: str
    score: float
    kind: Literal["image", "video"] = "image"
    parts: dict[str, list[Hit]] = field(default_factory=dict)
    start_s: float | None = None
    end_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (each region with its RLE mask, like a search hit's JSON)."""
        return {
            "image_id": self.image_id,
            "image_path": self.image_path,
            "score": None if math.isnan(self.score) else round(self.score, 6),
            "kind": self.kind,
            "parts": {name: [h.to_dict() for h in hits] for name, hits in self.parts.items()},
            "start_s": None if self.start_s is None else round(self.start_s, 6),
            "end_s": None if self.end_s is None else round(self.end_s, 6),
        }
