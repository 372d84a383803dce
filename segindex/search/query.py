"""What a search asks for: typed, validated query objects shared by the three doors.

A :class:`Query` is a weighted sum of :class:`Term` vectors (text, image, a region of a new image,
an indexed region or an indexed video track), plus :class:`Filters` applied inside the vector
search, a similarity threshold, grouping by image (or video) and a page (``offset``, ``k``).
Negative texts are terms with a negative weight. :func:`~segindex.search.prompts.resolve_region`
turns a :class:`RegionPrompt` into the mask whose crop is embedded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from segindex.embed.base import DEFAULT_TEMPLATES
from segindex.errors import QueryError
from segindex.signatures import keywords_of

Scope = Literal["regions", "images", "tracks", "all"]
#: scope -> region kind searched: segmenter masks (of images and of sampled video frames),
#: whole images (and whole sampled frames), video tracks (one vector per tracked object), all
SCOPES: dict[str, str | None] = {
    "regions": "segment",
    "images": "image",
    "tracks": "track",
    "all": None,
}
ImageInput = str | Path | bytes | np.ndarray | Image.Image
RegionMethod = Literal["mask", "prompt", "box", "segment"]

#: the largest integer any SQL store compares exactly (int64, with headroom); larger pixel areas
#: cannot exist, so area bounds above it are clamped to it (same meaning, no overflow)
SQL_INT_LIMIT = 2**62
#: most hits one query may ask for (k), and deepest page offset: beyond them a search allocates
#: more than it can return; page with ``offset`` instead
MAX_K = 100_000
MAX_OFFSET = 10_000_000
#: pixel coordinates of boxes and points are clamped to this magnitude before they become
#: float32 (they are clipped to the image anyway; 1e308 would otherwise turn into inf)
MAX_COORD = 1e9


def _opt_number(name: str, value: float | None, lo: float = -math.inf) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise QueryError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number) or number < lo:
        raise QueryError(f"{name} must be a finite number >= {lo}, got {value!r}")
    return number


def _coords(name: str, value: object) -> np.ndarray:
    """``value`` as a float64 array of pixel coordinates, or a QueryError (ragged lists, strings,
    integers too large for a float)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise QueryError(f"{name} must be numbers (pixel coordinates), got {value!r}") from e


def _labels(name: str, value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise QueryError(f"{name} must be a list of label names, got {value!r}")
    out = tuple(v.strip() for v in value)
    if any(not v for v in out):
        raise QueryError(f"{name} must be non-empty label names, got {list(value)!r}")
    return out


@dataclass(frozen=True)
class Filters:
    """Conditions on region metadata, applied inside the search (FAISS ID selector).

    labels:          keep only these labels (any of them); empty keeps all
    exclude_labels:  drop these labels
    min_score:       segmenter confidence >= this
    min_area/max_area: mask area in pixels, inclusive
    path_prefix:     the image's (or video's) path starts with this string (literal, no wildcards)
    thing:           True: countable things only; False: amorphous stuff only; None: both

    Video filters (regions not from a video never pass them):

    min_duration_s:  the track lasts at least this many seconds (``end_s - start_s``); applies to
                     tracks and to the frame regions of a track
    time_from_s/time_to_s: the time range, inclusive, either end open: a track passes when its
                     span overlaps it, a frame region (or whole frame) when its time lies in it
    """

    labels: tuple[str, ...] = ()
    exclude_labels: tuple[str, ...] = ()
    min_score: float | None = None
    min_area: int | None = None
    max_area: int | None = None
    path_prefix: str | None = None
    thing: bool | None = None
    min_duration_s: float | None = None
    time_from_s: float | None = None
    time_to_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_duration_s", "time_from_s", "time_to_s"):
            object.__setattr__(self, name, _opt_number(name, getattr(self, name), lo=0.0))
        if (
            self.time_from_s is not None
            and self.time_to_s is not None
            and self.time_from_s > self.time_to_s
        ):
            raise QueryError(f"time_from_s {self.time_from_s} is after time_to_s {self.time_to_s}")
        object.__setattr__(self, "labels", _labels("labels", self.labels))
        object.__setattr__(self, "exclude_labels", _labels("exclude_labels", self.exclude_labels))
        object.__setattr__(self, "min_score", _opt_number("min_score", self.min_score))
        for name in ("min_area", "max_area"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                raise QueryError(f"{name} must be an integer number of pixels, got {v!r}")
            if v is not None and v < 0:
                raise QueryError(f"{name} must be >= 0, got {v}")
            if v is not None:
                object.__setattr__(self, name, min(int(v), SQL_INT_LIMIT))
        if (
            self.min_area is not None
            and self.max_area is not None
            and self.min_area > self.max_area
        ):
            raise QueryError(f"min_area {self.min_area} is larger than max_area {self.max_area}")
        if self.path_prefix is not None and not isinstance(self.path_prefix, str):
            raise QueryError(f"path_prefix must be a string, got {self.path_prefix!r}")
        if self.thing is not None and not isinstance(self.thing, bool):
            raise QueryError(f"thing must be true, false or null, got {self.thing!r}")

    @property
    def active(self) -> bool:
        return self != Filters()

    @property
    def video_active(self) -> bool:
        """Whether a video filter (duration, time range) is set."""
        return any(v is not None for v in (self.min_duration_s, self.time_from_s, self.time_to_s))

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "exclude_labels": list(self.exclude_labels),
            "min_score": self.min_score,
            "min_area": self.min_area,
            "max_area": self.max_area,
            "path_prefix": self.path_prefix,
            "thing": self.thing,
            "min_duration_s": self.min_duration_s,
            "time_from_s": self.time_from_s,
            "time_to_s": self.time_to_s,
        }


@dataclass(frozen=True, eq=False)
class RegionPrompt:
    """A region of a new (not indexed) image, to search by.

    image:        path, encoded bytes, PIL image or ``HxWx3`` uint8 RGB array
    box:          ``(4,)`` XYXY pixels (x1/y1 exclusive), clipped to the image
    points:       ``(P, 2)`` XY pixels; ``point_labels`` ``(P,)`` int, 1 foreground / 0
                  background (default: all foreground)
    mask:         ``HxW`` bool at the image's resolution; used as is when given
    """

    image: ImageInput
    box: Sequence[float] | np.ndarray | None = None
    points: Sequence[Sequence[float]] | np.ndarray | None = None
    point_labels: Sequence[int] | np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.box is None and self.points is None and self.mask is None:
            raise QueryError("a region query needs a box, points or a mask on the image")
        if self.box is not None:
            box = _coords("box", self.box).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                raise QueryError(f"box must be 4 finite numbers x0,y0,x1,y1, got {self.box!r}")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise QueryError(f"box must have x1 > x0 and y1 > y0, got {box.tolist()}")
            box = np.clip(box, -MAX_COORD, MAX_COORD)
            if box[2] <= box[0] or box[3] <= box[1]:
                raise QueryError(f"box {box.tolist()} lies outside any image")
            object.__setattr__(self, "box", box.astype(np.float32))
        if self.points is not None:
            pts = _coords("points", self.points)
            if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0 or not np.isfinite(pts).all():
                raise QueryError(f"points must be a non-empty list of [x, y], got {self.points!r}")
            pts = np.clip(pts, -MAX_COORD, MAX_COORD)
            labels = (
                np.ones(len(pts), np.int64)
                if self.point_labels is None
                else np.asarray(self.point_labels).reshape(-1)
            )
            if labels.shape != (len(pts),) or not np.isin(labels, (0, 1)).all():
                raise QueryError(
                    f"point_labels must be {len(pts)} values of 1 (foreground) or 0 "
                    f"(background), got {self.point_labels!r}"
                )
            if not (labels == 1).any():
                raise QueryError("points need at least one foreground point (label 1)")
            object.__setattr__(self, "points", pts.astype(np.float32))
            object.__setattr__(self, "point_labels", labels.astype(np.int64))
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.ndim != 2 or m.dtype != np.bool_:
                raise QueryError(f"mask must be HxW bool, got shape {m.shape} dtype {m.dtype}")
            if not m.any():
                raise QueryError("mask is empty")


@dataclass(frozen=True)
class QueryRegion:
    """The region a :class:`RegionPrompt` resolved to.

    mask:    ``HxW`` bool at the query image's resolution
    box:     ``(4,)`` float32 XYXY pixels, tight box of ``mask``
    method:  ``mask`` (given), ``prompt`` (promptable segmenter), ``box`` (the box itself) or
             ``segment`` (the automatic segment under the points)
    """

    mask: np.ndarray
    box: np.ndarray
    method: RegionMethod


@dataclass(frozen=True, eq=False)
class Term:
    """One weighted part of a query: exactly one of

    text:       a text, embedded with the index's prompt templates
    image:      a whole new image (path, bytes, PIL or ``HxWx3`` uint8 RGB)
    region:     a region of a new image
    region_id:  an indexed region (its stored vector)
    track_id:   an indexed video track (its stored track vector)
    vector:     an already embedded ``(D,)`` L2-normalised float32 vector
    """

    text: str | None = None
    image: ImageInput | None = None
    region: RegionPrompt | None = None
    region_id: int | None = None
    vector: np.ndarray | None = None
    weight: float = 1.0
    track_id: int | None = None

    def __post_init__(self) -> None:
        names = ("text", "image", "region", "region_id", "track_id", "vector")
        given = [n for n in names if getattr(self, n) is not None]
        if len(given) != 1:
            raise QueryError(
                f"give exactly one of text, image, region, region_id, track_id or vector per "
                f"query term, got {given or 'none'}"
            )
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise QueryError("text query must be a non-empty string")
        for name in ("region_id", "track_id"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                raise QueryError(f"{name} must be an integer, got {v!r}")
            if v is not None and not 1 <= v <= SQL_INT_LIMIT:
                raise QueryError(f"{name} must be between 1 and 2**62, got {v!r}")
        w = _opt_number("weight", self.weight)
        if w == 0:
            raise QueryError("a term's weight must not be 0")
        object.__setattr__(self, "weight", w)


@dataclass(frozen=True, eq=False)
class Query:
    """A full search request. ``terms`` are summed with their weights and L2-normalised.

    templates: wrap text terms ("a photo of a {}.") and average; ``None`` embeds them verbatim.

    exclude_query_regions: hits never include the indexed regions used as terms (so "more like
    this region" does not return the region itself), nor the tracks used as terms, nor the
    track a query region belongs to.

    group_by_image: the best hit per image; for video hits, per video.
    """

    terms: tuple[Term, ...]
    k: int = 10
    offset: int = 0
    scope: Scope = "regions"
    filters: Filters = field(default_factory=Filters)
    min_similarity: float | None = None
    group_by_image: bool = False
    exclude_query_regions: bool = True
    templates: tuple[str, ...] | None = DEFAULT_TEMPLATES

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))
        if self.templates is not None:
            object.__setattr__(self, "templates", tuple(self.templates))
        if not self.terms:
            raise QueryError("a query needs at least one term")
        if not any(t.weight > 0 for t in self.terms):
            raise QueryError("a query needs at least one positive term (negatives only subtract)")
        for name in ("k", "offset"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise QueryError(f"{name} must be an integer, got {v!r}")
        if not 1 <= self.k <= MAX_K:
            raise QueryError(f"k must be a positive integer up to {MAX_K}, got {self.k!r}")
        if not 0 <= self.offset <= MAX_OFFSET:
            raise QueryError(
                f"offset must be an integer from 0 to {MAX_OFFSET}, got {self.offset!r}"
            )
        if self.scope not in SCOPES:
            raise QueryError(f"scope must be one of {sorted(SCOPES)}, got {self.scope!r}")
        if not isinstance(self.filters, Filters):
            raise QueryError(f"filters must be a Filters, got {type(self.filters).__name__}")
        sim = _opt_number("min_similarity", self.min_similarity)
        if sim is not None and not -1.0 <= sim <= 1.0:
            raise QueryError(f"min_similarity must be in [-1, 1], got {sim}")
        object.__setattr__(self, "min_similarity", sim)

    @property
    def kind(self) -> str | None:
        return SCOPES[self.scope]

    @property
    def region_ids(self) -> list[int]:
        return [int(t.region_id) for t in self.terms if t.region_id is not None]

    @property
    def track_ids(self) -> list[int]:
        return [int(t.track_id) for t in self.terms if t.track_id is not None]


def make_query(
    text: str | None = None,
    *,
    image: ImageInput | None = None,
    region: RegionPrompt | None = None,
    similar_to: int | None = None,
    similar_to_track: int | None = None,
    terms: Sequence[Term | tuple[str, float]] | None = None,
    negative: str | Sequence[str] | None = None,
    negative_weight: float = 0.5,
    k: int = 10,
    offset: int = 0,
    scope: Scope = "regions",
    filters: Filters | None = None,
    min_similarity: float | None = None,
    group_by_image: bool = False,
    exclude_query_regions: bool = True,
    templates: Sequence[str] | None = DEFAULT_TEMPLATES,
) -> Query:
    """A :class:`Query` from the keyword form: the parameters of ``Index.search`` (which takes
    exactly these, :func:`query_keywords`), the CLI and the HTTP service.

    Search by exactly one of: ``text``; ``image`` (a whole new image); ``region`` (a
    :class:`RegionPrompt`: a box, points or a mask on a new image); ``similar_to`` (an indexed
    region id; the region itself is left out unless ``exclude_query_regions=False``);
    ``similar_to_track`` (an indexed video track id, left out likewise); ``terms`` (``Term``
    objects or ``(text, weight)`` pairs; a negative weight subtracts). ``negative`` texts are
    subtracted (``negative_weight`` each) before normalising.

    k, offset: the page, hits ``offset`` to ``offset + k``. filters: :class:`Filters` applied
    inside the vector search, so ``k`` hits come back whenever at least ``k`` regions match.
    min_similarity: drop weaker hits. group_by_image: the best region per image (the best track
    per video), with ``Hit.image_matches``. scope: ``regions`` (segmenter masks, of images and of
    sampled video frames), ``images`` (whole images and frames), ``tracks`` (video tracks, as
    :class:`~segindex.search.tracks.TrackHit`) or ``all`` (tracks among them are ``TrackHit``s
    too). templates: wrap texts ("a photo of a {}.") and average; ``None`` embeds them verbatim.
    """
    given = {
        "text": text,
        "image": image,
        "region": region,
        "similar_to": similar_to,
        "similar_to_track": similar_to_track,
        "terms": terms,
    }
    named = [n for n, v in given.items() if v is not None]
    if len(named) != 1:
        raise QueryError(
            "give exactly one of a text, an image, a region of an image, a region id "
            f"(similar_to), a track id (similar_to_track) or weighted terms to search by; got "
            f"{named or 'none'}"
        )
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise QueryError("text query must be a non-empty string")
        parts = [Term(text=text.strip())]
    elif image is not None:
        parts = [Term(image=image)]
    elif region is not None:
        if not isinstance(region, RegionPrompt):
            raise QueryError(f"region must be a RegionPrompt, got {type(region).__name__}")
        parts = [Term(region=region)]
    elif similar_to is not None:
        parts = [Term(region_id=similar_to)]
    elif similar_to_track is not None:
        parts = [Term(track_id=similar_to_track)]
    else:
        parts = []
        for t in terms or ():
            if isinstance(t, Term):
                parts.append(t)
            elif isinstance(t, (tuple, list)) and len(t) == 2 and isinstance(t[0], str):
                parts.append(Term(text=t[0], weight=t[1]))
            else:
                raise QueryError(f"terms must be Term objects or (text, weight) pairs, got {t!r}")
    w = _opt_number("negative_weight", negative_weight, lo=0.0)
    negatives = _labels("negative", negative)
    if w:
        parts.extend(Term(text=neg, weight=-w) for neg in negatives)
    return Query(
        terms=tuple(parts),
        k=k,
        offset=offset,
        scope=scope,
        filters=filters if filters is not None else Filters(),
        min_similarity=min_similarity,
        group_by_image=group_by_image,
        exclude_query_regions=exclude_query_regions,
        templates=None if templates is None else tuple(templates),
    )


#: decorates ``run(self, query)`` into a method taking :func:`make_query`'s parameters
query_keywords = keywords_of(make_query)
