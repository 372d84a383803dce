"""Where queries are answered.

query       what a search asks for: :class:`Query` of weighted :class:`Term`s, :class:`Filters`,
            :class:`RegionPrompt`, and :func:`make_query` (the keyword form of the three doors)
prompts     a region prompt on a new image becomes a mask (:func:`resolve_region`)
conditions  filters become the SQL condition the store selects region ids with
rank        query vector -> FAISS with the allowed ids -> rows -> a page of :class:`Hit`s
tracks      video tracks as :class:`TrackHit`s with their time span and sampled frames
hits        :class:`Hit` and :class:`SearchPage`, what a search returns
searcher    :class:`Searcher`: each kind of query embedded and answered over a store and its
            vector mirror (what ``Index`` delegates its searches to)
"""

from __future__ import annotations

from segindex.search.hits import Hit, SearchPage, hit_from_row
from segindex.search.prompts import resolve_region
from segindex.search.query import (
    SCOPES,
    Filters,
    ImageInput,
    Query,
    QueryRegion,
    RegionPrompt,
    Scope,
    Term,
    make_query,
)
from segindex.search.rank import rank, search_vectors, search_vectors_batch
from segindex.search.searcher import Searcher
from segindex.search.tracks import TrackHit, format_time, read_frames

__all__ = [
    "SCOPES",
    "Filters",
    "Hit",
    "ImageInput",
    "Query",
    "QueryRegion",
    "RegionPrompt",
    "Scope",
    "SearchPage",
    "Searcher",
    "Term",
    "TrackHit",
    "format_time",
    "hit_from_row",
    "make_query",
    "rank",
    "read_frames",
    "resolve_region",
    "search_vectors",
    "search_vectors_batch",
]
