"""Filters to SQL: the WHERE clause over the store's region rows for a region kind and
:class:`~segindex.search.query.Filters`, handed to the store as a
:class:`~segindex.store.query_reads.RegionWhere` (the store knows SQL, not query types).

``path_prefix`` reads the images table (joined on ``image_id``); the video filters read the
tracks table (outer-joined on ``track_id``): a region without a track or a time never passes them.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, or_

from segindex.search.query import Filters
from segindex.store.query_reads import RegionWhere
from segindex.store.schema import images, regions, tracks

__all__ = ["region_where", "video_conditions"]


def region_where(kind: str | None, filters: Filters | None) -> RegionWhere | None:
    """The condition on region rows of ``kind`` (``None``: any) passing ``filters``; ``None``
    when nothing restricts (every region is allowed)."""
    conds: list[ColumnElement[bool]] = []
    if kind is not None:
        conds.append(regions.c.kind == kind)
    f = filters
    if f is not None:
        if f.labels:
            conds.append(regions.c.label.in_(list(f.labels)))
        if f.exclude_labels:
            conds.append(regions.c.label.not_in(list(f.exclude_labels)))
        if f.min_score is not None:
            conds.append(regions.c.score >= f.min_score)
        if f.min_area is not None:
            conds.append(regions.c.area >= int(f.min_area))
        if f.max_area is not None:
            conds.append(regions.c.area <= int(f.max_area))
        if f.thing is not None:
            conds.append(regions.c.is_thing == bool(f.thing))
        if f.path_prefix is not None:
            conds.append(images.c.path.startswith(f.path_prefix, autoescape=True))
        if f.video_active:
            conds.append(video_conditions(f))
    if not conds:
        return None
    return RegionWhere(
        key=(kind, f if f is not None and f.active else None),
        clause=and_(*conds),
        images=f is not None and f.path_prefix is not None,
        tracks=f is not None and f.video_active,
    )


def video_conditions(filters: Filters) -> ColumnElement[bool]:
    """WHERE clause of the video filters (duration, time range) over ``regions`` outer-joined
    with ``tracks`` on ``track_id`` (a region without a track or a time never passes)."""
    conds: list[ColumnElement[bool]] = []
    if filters.min_duration_s is not None:
        conds.append(tracks.c.end_s - tracks.c.start_s >= filters.min_duration_s - 1e-9)
    lo, hi = filters.time_from_s, filters.time_to_s
    if lo is not None or hi is not None:
        span: list[ColumnElement[bool]] = []  # a track overlaps [lo, hi]
        at: list[ColumnElement[bool]] = [regions.c.time_s.is_not(None)]  # a frame lies in it
        if lo is not None:
            span.append(tracks.c.end_s >= lo)
            at.append(regions.c.time_s >= lo)
        if hi is not None:
            span.append(tracks.c.start_s <= hi)
            at.append(regions.c.time_s <= hi)
        conds.append(
            or_(
                and_(regions.c.kind == "track", *span),
                and_(regions.c.kind != "track", *at),
            )
        )
    return and_(*conds)
