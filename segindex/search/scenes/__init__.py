"""Compositional object queries ("a dog left of a bicycle", "at least three people", "a person
and a dog in the same shot, then a car"): scenes made of region searches.

algebra   the typed terms (:class:`Object`, relations, :class:`Count`, ``&`` ``|`` ``~``) and
          :func:`check_scene`
parse     the text syntax of the CLI and HTTP (:func:`parse_scene`, :func:`looks_like_scene`)
hits      :class:`SceneHit`, what a scene search returns
executor  :func:`search_scenes`: candidates per part from the vector index, grouped by image (or
          video), relations on boxes then masks, scored and ranked
"""

from __future__ import annotations

from segindex.search.scenes.algebra import (
    Above,
    And,
    Below,
    Count,
    During,
    Expr,
    Inside,
    LargerThan,
    LeftOf,
    Near,
    Not,
    Object,
    Or,
    Overlaps,
    Relation,
    RightOf,
    Then,
    check_scene,
)
from segindex.search.scenes.executor import DEFAULT_MIN_SIMILARITY, search_scenes
from segindex.search.scenes.hits import SceneHit
from segindex.search.scenes.parse import looks_like_scene, parse_scene

__all__ = [
    "DEFAULT_MIN_SIMILARITY",
    "Above",
    "And",
    "Below",
    "Count",
    "During",
    "Expr",
    "Inside",
    "LargerThan",
    "LeftOf",
    "Near",
    "Not",
    "Object",
    "Or",
    "Overlaps",
    "Relation",
    "RightOf",
    "SceneHit",
    "Then",
    "check_scene",
    "looks_like_scene",
    "parse_scene",
    "search_scenes",
]
