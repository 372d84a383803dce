"""Request bodies of the HTTP API (pydantic), turned into the library's typed query objects."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from segindex.embed.base import DEFAULT_TEMPLATES
from segindex.errors import QueryError
from segindex.search import Filters, Query, RegionPrompt, Term, make_query

Id = Annotated[int, Field(ge=1, le=2**62)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FiltersIn(_Strict):
    """Region metadata filters, applied inside the search."""

    labels: list[str] = Field(default_factory=list, description="keep only these labels")
    exclude_labels: list[str] = Field(default_factory=list, description="drop these labels")
    min_score: float | None = Field(None, description="segmenter confidence >= this")
    min_area: int | None = Field(None, ge=0, description="mask area >= this many pixels")
    max_area: int | None = Field(None, ge=0, description="mask area <= this many pixels")
    path_prefix: str | None = Field(
        None, description="image (or video) path starts with this (literal)"
    )
    thing: bool | None = Field(None, description="true: things only; false: stuff only")
    min_duration_s: float | None = Field(
        None, description="video tracks (and their frames) lasting at least this many seconds"
    )
    time_from_s: float | None = Field(
        None, description="video tracks overlapping, or frames at or after, this time"
    )
    time_to_s: float | None = Field(
        None, description="video tracks overlapping, or frames at or before, this time"
    )

    def to_filters(self) -> Filters:
        return Filters(
            labels=tuple(self.labels),
            exclude_labels=tuple(self.exclude_labels),
            min_score=self.min_score,
            min_area=self.min_area,
            max_area=self.max_area,
            path_prefix=self.path_prefix,
            thing=self.thing,
            min_duration_s=self.min_duration_s,
            time_from_s=self.time_from_s,
            time_to_s=self.time_to_s,
        )


class RleIn(_Strict):
    size: Annotated[
        list[Annotated[int, Field(ge=1, le=100_000)]], Field(min_length=2, max_length=2)
    ]
    counts: str


class RegionIn(_Strict):
    """A region of the uploaded image: a box, points, or a mask (COCO RLE)."""

    box: Annotated[list[float], Field(min_length=4, max_length=4)] | None = Field(
        None, description="x0, y0, x1, y1 in pixels of the uploaded image (x1/y1 exclusive)"
    )
    points: list[Annotated[list[float], Field(min_length=2, max_length=2)]] | None = Field(
        None, max_length=64, description="[[x, y], ...] pixels"
    )
    point_labels: list[int] | None = Field(None, description="1 foreground, 0 background")
    mask: RleIn | None = Field(None, description="compressed COCO RLE at the image's size")


class TermIn(_Strict):
    """One weighted term: a text, an indexed region or an indexed video track."""

    text: str | None = None
    region_id: Id | None = None
    track_id: Id | None = None
    weight: float = 1.0


class SearchIn(_Strict):
    """A search. With a multipart upload, send this as the ``query`` form field (JSON) next to
    the ``image`` file: without ``region`` the whole image is the query, with it the region."""

    text: str | None = Field(None, description="search by text")
    similar_to: Id | None = Field(None, description="search by an indexed region id")
    similar_to_track: Id | None = Field(None, description="search by an indexed track id")
    terms: list[TermIn] | None = Field(None, max_length=16, description="weighted terms")
    region: RegionIn | None = Field(None, description="a region of the uploaded image")
    negative: list[str] | str = Field(default_factory=list, description="texts to subtract")
    negative_weight: float = Field(0.5, ge=0, le=10)
    k: int = Field(10, ge=1)
    offset: int = Field(0, ge=0, le=1_000_000)
    scope: Literal["regions", "images", "tracks", "all"] = "regions"
    filters: FiltersIn = Field(default_factory=FiltersIn)
    min_similarity: float | None = Field(None, ge=-1, le=1)
    group_by_image: bool = False
    exclude_query_regions: bool = True
    templates: bool = Field(True, description="wrap texts in CLIP prompt templates")

    def to_query(self, image: bytes | None, max_pixels: int) -> Query:
        """The library query; ``image`` is the uploaded file's bytes, if any."""
        region = None
        if self.region is not None:
            if image is None:
                raise QueryError("a region query needs an uploaded image (multipart 'image')")
            region = RegionPrompt(
                image,
                box=self.region.box,
                points=self.region.points,
                point_labels=self.region.point_labels,
                mask=_decode_mask(self.region.mask, max_pixels) if self.region.mask else None,
            )
            image = None
        terms = None
        if self.terms is not None:
            terms = [
                Term(text=t.text, region_id=t.region_id, track_id=t.track_id, weight=t.weight)
                for t in self.terms
            ]
        return make_query(
            self.text,
            image=image,
            region=region,
            similar_to=self.similar_to,
            similar_to_track=self.similar_to_track,
            terms=terms,
            negative=self.negative or None,
            negative_weight=self.negative_weight,
            k=self.k,
            offset=self.offset,
            scope=self.scope,
            filters=self.filters.to_filters(),
            min_similarity=self.min_similarity,
            group_by_image=self.group_by_image,
            exclude_query_regions=self.exclude_query_regions,
            templates=DEFAULT_TEMPLATES if self.templates else None,
        )


def _decode_mask(rle: RleIn, max_pixels: int) -> np.ndarray:
    """Decode a client's RLE after checking it fully (pycocotools trusts its input)."""
    from segindex import rle as rle_codec

    h, w = rle.size
    if h * w > max_pixels:
        raise QueryError(f"mask size {h}x{w} is larger than the pixel limit {max_pixels:,}")
    counts = _rle_counts(rle.counts)
    if any(c < 0 for c in counts) or sum(counts) != h * w:
        raise QueryError(f"mask RLE does not describe exactly {h}x{w} pixels")
    return rle_codec.decode({"size": [h, w], "counts": rle.counts})


def _rle_counts(s: str) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, checked)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s) or k > 12:
                raise QueryError("mask RLE counts string is truncated or malformed")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise QueryError(f"mask RLE counts has an invalid character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


# -- scene queries (POST /search/scenes) ------------------------------------------------------


class ScenesIn(_Strict):
    """A scene query in the text syntax of docs/scenes.md, e.g. ``"dog LEFT OF bicycle"`` or
    ``"COUNT(person) >= 3 AND NOT car"``."""

    query: str = Field(
        ...,
        min_length=1,
        max_length=4000,
        description="the scene query text",
        examples=["red LEFT OF blue"],
    )
    k: int = Field(20, ge=1, description="number of hits (images or video spans)")
    scope: Literal["images", "videos"] = Field(
        "images", description="images, or video spans (parts are then tracks)"
    )


class _Open(BaseModel):
    """A documented response object that passes on any further field it is given."""

    model_config = ConfigDict(extra="allow")


class ScenePartOut(_Open):
    """A region (or, for videos, a track) that satisfied a named part, as in ``POST /search``'s
    hits: with its COCO RLE mask and the URLs of its pictures."""

    region_id: int
    image_id: int
    image_path: str
    kind: str
    label: str
    score: float
    bbox: list[float] = Field(description="x0, y0, x1, y1 pixels (x1/y1 exclusive)")
    rle: dict[str, object] = Field(description="COCO compressed RLE of the mask")
    similarity: float | None = None
    track_id: int | None = None
    urls: dict[str, str] = Field(default_factory=dict)


class SceneHitOut(_Open):
    """An image (or a video time span) and the regions or tracks that satisfied each named part
    of the query."""

    image_id: int
    image_path: str
    score: float | None = Field(description="the scene's score, higher is better")
    kind: Literal["image", "video"]
    parts: dict[str, list[ScenePartOut]] = Field(description="part name -> its regions/tracks")
    start_s: float | None = Field(None, description="videos: start of the span (seconds)")
    end_s: float | None = Field(None, description="videos: end of the span (seconds)")
    urls: dict[str, str] = Field(default_factory=dict)


class ScenesOut(BaseModel):
    hits: list[SceneHitOut]
    took_ms: float | None = None


class SceneQueryErrorOut(BaseModel):
    """A scene query that does not parse (or names a part it does not define)."""

    error: str
    status: int = 422
    detail: str = Field(description="what was expected and what came")
    position: int | None = Field(
        None, description="0-based character offset of the query text where it went wrong"
    )
