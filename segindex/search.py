"""Where queries are answered: query vectors -> FAISS -> region rows (one SQL query) -> hits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from segindex import rle as rle_codec
from segindex.errors import QueryError
from segindex.store.sql import Store
from segindex.store.vectors import VectorIndex

Scope = Literal["regions", "images", "all"]
_SCOPE_KIND: dict[str, str | None] = {"regions": "segment", "images": "image", "all": None}


@dataclass
class Hit:
    """One matching region.

    bbox:       XYXY pixels in the original image (x1/y1 exclusive)
    rle:        COCO compressed RLE of the mask (``size`` = [height, width])
    similarity: cosine similarity of the region's vector to the query, in [-1, 1]
    kind:       ``segment`` (a mask from the segmenter) or ``image`` (the whole image)
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
    _mask: np.ndarray | None = field(default=None, repr=False, compare=False)

    def mask(self) -> np.ndarray:
        """``HxW`` bool mask at the image's resolution (decoded on first call, then cached)."""
        if self._mask is None:
            self._mask = rle_codec.decode(self.rle)
        return self._mask

    def to_dict(self) -> dict[str, Any]:
        return {
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
            "similarity": round(self.similarity, 6),
        }


def check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise QueryError(f"k must be a positive integer, got {k!r}")
    return int(k)


def hit_from_row(row: Any, similarity: float) -> Hit:
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
    )


def search_vectors(
    query: np.ndarray, *, store: Store, vectors: VectorIndex, k: int, scope: Scope
) -> list[Hit]:
    """Top-``k`` regions for one ``(D,)`` L2-normalised float32 query vector."""
    k = check_k(k)
    if scope not in _SCOPE_KIND:
        raise QueryError(f"scope must be one of {sorted(_SCOPE_KIND)}, got {scope!r}")
    if vectors.ntotal == 0:
        return []
    kind = _SCOPE_KIND[scope]
    allowed = store.region_ids(kind) if kind is not None else None
    if allowed is not None and len(allowed) == 0:
        return []
    sims, ids = vectors.search(query.reshape(1, -1), k, allowed_ids=allowed)
    pairs = [(int(i), float(s)) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0]
    rows = store.region_rows([i for i, _ in pairs])
    return [hit_from_row(rows[i], s) for i, s in pairs if i in rows]
