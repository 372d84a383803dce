"""The scene query algebra: typed, frozen, validated terms combined with ``&``, ``|`` and ``~``.

An :class:`Object` is one part of a scene (a text, a new image, a region of a new image or an
indexed region), named by its text or by ``name=``. Relations name two parts:
``Object("dog") & Object("bicycle") & LeftOf("dog", "bicycle")``. :func:`check_scene` checks a
whole expression (every name a relation uses is defined by an Object of the same conjunction,
no name defined twice differently, at least one positive part); the executor and the parser call
it, so building ``LeftOf(...) & Object(...)`` in any order works.

Positive nodes (they say which images can match, and score them): an Object; an And with at
least one positive child; an Or whose children are all positive; a Count that needs at least one
region. Not, and a Count that allows zero regions, only remove images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from segindex.errors import ConfigError, QueryError
from segindex.search.query import Filters, ImageInput, RegionPrompt
from segindex.validate import choice, fraction, number, optional_integer, optional_number

T = TypeVar("T")

__all__ = [
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
    "Then",
    "check_scene",
    "is_positive",
    "objects_of",
]


def _q(check: Callable[..., T], *args: Any, **kw: Any) -> T:
    """A segindex.validate check whose ConfigError becomes a QueryError (a bad query)."""
    try:
        return check(*args, **kw)
    except ConfigError as e:
        raise QueryError(str(e)) from None


class Expr:
    """Base of every scene term: ``a & b`` (And), ``a | b`` (Or), ``~a`` (Not)."""

    __slots__ = ()

    def __and__(self, other: Expr) -> And:
        return And((self, _expr(other)))

    def __or__(self, other: Expr) -> Or:
        return Or((self, _expr(other)))

    def __invert__(self) -> Not:
        return Not(self)


def _expr(value: object) -> Expr:
    if not isinstance(value, Expr):
        raise QueryError(
            f"a scene term must be an Object, relation, count or combination, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class Object(Expr):
    """One part of a scene: exactly one of ``text``, ``image`` (a new image), ``region`` (a
    :class:`RegionPrompt` on a new image) or ``region_id`` (an indexed region).

    name:            what relations call the part; defaults to the text (required otherwise)
    min_similarity:  cosine similarity a region needs to count as this part (``None``: the
                     executor's default, ``executor.DEFAULT_MIN_SIMILARITY``)
    filters:         :class:`~segindex.search.query.Filters` on the part's regions
    """

    text: str | None = None
    image: ImageInput | None = field(default=None, kw_only=True, compare=False)
    region: RegionPrompt | None = field(default=None, kw_only=True, compare=False)
    region_id: int | None = field(default=None, kw_only=True)
    name: str | None = field(default=None, kw_only=True)
    min_similarity: float | None = field(default=None, kw_only=True)
    filters: Filters | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        given = [
            n for n in ("text", "image", "region", "region_id") if getattr(self, n) is not None
        ]
        if len(given) != 1:
            raise QueryError(
                "an Object needs exactly one of text, image, region or region_id, "
                f"got {given or 'none'}"
            )
        if self.text is not None:
            if not isinstance(self.text, str) or not self.text.strip():
                raise QueryError(f"an Object's text must be a non-empty string, got {self.text!r}")
            object.__setattr__(self, "text", " ".join(self.text.split()))
        if self.region is not None and not isinstance(self.region, RegionPrompt):
            raise QueryError(f"region must be a RegionPrompt, got {type(self.region).__name__}")
        if self.region_id is not None:
            object.__setattr__(
                self, "region_id", _q(optional_integer, "region_id", self.region_id, lo=1)
            )
        name = self.name if self.name is not None else self.text
        if name is None:
            raise QueryError(
                f"an Object given by {given[0]} needs name= (relations refer to it by name)"
            )
        if not isinstance(name, str) or not name.strip():
            raise QueryError(f"an Object's name must be a non-empty string, got {name!r}")
        object.__setattr__(self, "name", " ".join(name.split()))
        sim = _q(optional_number, "min_similarity", self.min_similarity, lo=-1, hi=1)
        object.__setattr__(self, "min_similarity", sim)
        if self.filters is not None and not isinstance(self.filters, Filters):
            raise QueryError(f"filters must be a Filters, got {type(self.filters).__name__}")

    @property
    def part(self) -> str:
        """The part's name (never ``None`` after construction)."""
        assert self.name is not None
        return self.name


def _parts(name: str, parts: object) -> tuple[Expr, ...]:
    if isinstance(parts, Expr) or isinstance(parts, str):
        raise QueryError(f"{name} takes a list of terms, got {parts!r}")
    if not isinstance(parts, Iterable):
        raise QueryError(f"{name} takes a list of terms, got {parts!r}")
    out = tuple(_expr(p) for p in parts)
    if not out:
        raise QueryError(f"{name} needs at least one term")
    return out


@dataclass(frozen=True)
class And(Expr):
    """All of ``parts`` hold in one image (video); nested Ands are flattened."""

    parts: tuple[Expr, ...]

    def __post_init__(self) -> None:
        flat: list[Expr] = []
        for p in _parts("And", self.parts):
            flat.extend(p.parts if isinstance(p, And) else (p,))
        object.__setattr__(self, "parts", tuple(flat))


@dataclass(frozen=True)
class Or(Expr):
    """At least one of ``parts`` holds; nested Ors are flattened."""

    parts: tuple[Expr, ...]

    def __post_init__(self) -> None:
        flat: list[Expr] = []
        for p in _parts("Or", self.parts):
            flat.extend(p.parts if isinstance(p, Or) else (p,))
        object.__setattr__(self, "parts", tuple(flat))


@dataclass(frozen=True)
class Not(Expr):
    """``part`` does not hold in the image (removes images, adds no score)."""

    part: Expr

    def __post_init__(self) -> None:
        _expr(self.part)


@dataclass(frozen=True)
class Count(Expr):
    """How many distinct regions match ``term`` (similarity above its threshold, filters):
    ``at_least``, ``at_most`` and/or ``exactly`` (which excludes the other two)."""

    term: Object
    at_least: int | None = field(default=None, kw_only=True)
    at_most: int | None = field(default=None, kw_only=True)
    exactly: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.term, Object):
            raise QueryError(f"Count counts an Object, got {self.term!r}")
        for n in ("at_least", "at_most", "exactly"):
            object.__setattr__(self, n, _q(optional_integer, n, getattr(self, n), lo=0))
        if self.exactly is not None:
            if self.at_least is not None or self.at_most is not None:
                raise QueryError("Count takes exactly= alone, or at_least=/at_most=")
        elif self.at_least is None and self.at_most is None:
            raise QueryError("Count needs at_least=, at_most= or exactly=")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise QueryError(f"Count at_least {self.at_least} is above at_most {self.at_most}")

    @property
    def bounds(self) -> tuple[int, float]:
        """``(lo, hi)``: the count must lie in ``[lo, hi]``."""
        if self.exactly is not None:
            return self.exactly, self.exactly
        return self.at_least or 0, math.inf if self.at_most is None else self.at_most


def _name(value: object, role: str) -> str | Object:
    if isinstance(value, Object):
        return value
    if not isinstance(value, str) or not value.strip():
        raise QueryError(
            f"a relation's {role} must be a part name (a string) or an Object, got {value!r}"
        )
    return " ".join(value.split())


@dataclass(frozen=True)
class Relation(Expr):
    """A relation between two named parts ``a`` and ``b`` (strings naming Objects of the same
    conjunction; an Object given here defines that part too). A hard constraint: an image
    matches only when some choice of distinct regions for the parts satisfies it."""

    a: str | Object
    b: str | Object

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _name(self.a, "first part"))
        object.__setattr__(self, "b", _name(self.b, "second part"))
        if self.a_name == self.b_name:
            raise QueryError(f"a relation needs two different parts, got {self.a_name!r} twice")

    @property
    def a_name(self) -> str:
        return self.a.part if isinstance(self.a, Object) else self.a

    @property
    def b_name(self) -> str:
        return self.b.part if isinstance(self.b, Object) else self.b


@dataclass(frozen=True)
class _Directional(Relation):
    """By mask centroid; ``margin`` is a fraction of the image width (height) the centroids must
    be apart by."""

    margin: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "margin", _q(fraction, "margin", self.margin))


@dataclass(frozen=True)
class LeftOf(_Directional):
    """Centroid of ``a`` left of the centroid of ``b`` by more than ``margin * width``."""


@dataclass(frozen=True)
class RightOf(_Directional):
    """Centroid of ``a`` right of the centroid of ``b`` by more than ``margin * width``."""


@dataclass(frozen=True)
class Above(_Directional):
    """Centroid of ``a`` above the centroid of ``b`` by more than ``margin * height``."""


@dataclass(frozen=True)
class Below(_Directional):
    """Centroid of ``a`` below the centroid of ``b`` by more than ``margin * height``."""


@dataclass(frozen=True)
class Inside(Relation):
    """``|a ∩ b| / |a| >= min_fraction`` (masks)."""

    min_fraction: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        v = _q(number, "min_fraction", self.min_fraction, lo=0, hi=1, lo_open=True)
        object.__setattr__(self, "min_fraction", v)


@dataclass(frozen=True)
class Overlaps(Relation):
    """Masks overlap: IoU (``mode="iou"``) or intersection over the smaller mask
    (``mode="smaller"``) ``>= min_iou``."""

    min_iou: float = 0.1
    mode: Literal["iou", "smaller"] = "iou"

    def __post_init__(self) -> None:
        super().__post_init__()
        v = _q(number, "min_iou", self.min_iou, lo=0, hi=1, lo_open=True)
        object.__setattr__(self, "min_iou", v)
        object.__setattr__(self, "mode", _q(choice, "mode", self.mode, ("iou", "smaller")))


@dataclass(frozen=True)
class Near(Relation):
    """Gap between the boxes (0 when they touch or overlap) ``<= max_gap`` times the mean of the
    two box diagonals."""

    max_gap: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "max_gap", _q(number, "max_gap", self.max_gap, lo=0))


@dataclass(frozen=True)
class LargerThan(Relation):
    """``area(a) > ratio * area(b)`` (mask areas)."""

    ratio: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        v = _q(number, "ratio", self.ratio, lo=0, lo_open=True)
        object.__setattr__(self, "ratio", v)


@dataclass(frozen=True)
class During(Relation):
    """Videos: the tracks of ``a`` and ``b`` overlap in time by at least ``min_overlap_s``."""

    min_overlap_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(
            self, "min_overlap_s", _q(number, "min_overlap_s", self.min_overlap_s, lo=0)
        )


@dataclass(frozen=True)
class Then(Relation):
    """Videos: the track of ``b`` starts after the track of ``a`` starts, within ``within_s``
    seconds."""

    within_s: float = math.inf

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.within_s
        if not (isinstance(w, (int, float)) and not isinstance(w, bool) and w == math.inf):
            w = _q(number, "within_s", w, lo=0)
        object.__setattr__(self, "within_s", float(w))


SPATIAL = (LeftOf, RightOf, Above, Below, Inside, Overlaps, Near, LargerThan)
TEMPORAL = (During, Then)


def is_positive(e: Expr) -> bool:
    """Whether ``e`` says which images can match (and scores them), see the module doc."""
    if isinstance(e, Object):
        return True
    if isinstance(e, And):
        return any(is_positive(p) for p in e.parts)
    if isinstance(e, Or):
        return all(is_positive(p) for p in e.parts)
    if isinstance(e, Count):
        return e.bounds[0] >= 1
    return False


def objects_of(e: Expr) -> list[Object]:
    """Every Object in ``e`` (counted ones and those inside relations included), in order."""
    if isinstance(e, Object):
        return [e]
    if isinstance(e, (And, Or)):
        return [o for p in e.parts for o in objects_of(p)]
    if isinstance(e, Not):
        return objects_of(e.part)
    if isinstance(e, Count):
        return [e.term]
    if isinstance(e, Relation):
        return [x for x in (e.a, e.b) if isinstance(x, Object)]
    return []


def conjunct_parts(e: And) -> dict[str, Object]:
    """The parts a conjunction defines: its Object children and the Objects given inside its
    relations (relations under Or/Not of relations only refer to them)."""
    out: dict[str, Object] = {}
    for p in e.parts:
        objs = [p] if isinstance(p, Object) else []
        if isinstance(p, Relation):
            objs = [x for x in (p.a, p.b) if isinstance(x, Object)]
        for o in objs:
            if out.get(o.part, o) != o:
                raise QueryError(f"two different parts are named {o.part!r}; give one a name=")
            out[o.part] = o
    return out


def relational(e: Expr) -> bool:
    """Whether ``e`` is made of relations only (a constraint on its conjunction's parts)."""
    if isinstance(e, Relation):
        return True
    if isinstance(e, (And, Or)):
        return all(relational(p) for p in e.parts)
    return isinstance(e, Not) and relational(e.part)


def check_scene(e: Expr) -> Expr:
    """``e`` if it is a valid whole query, else a QueryError: it must be positive (name the
    objects to look for), and each relation must name parts defined in its conjunction."""
    e = _expr(e)
    if not is_positive(e):
        raise QueryError(
            "a scene query needs at least one object to look for (NOT, relations and counts "
            "that allow zero only narrow it down)"
        )
    _check(e, {})
    return e


def _check(e: Expr, scope: dict[str, Object]) -> None:
    if isinstance(e, Object) or isinstance(e, Count):
        return
    if isinstance(e, Relation):
        for n in (e.a_name, e.b_name):
            if n not in scope:
                known = ", ".join(sorted(scope)) or "none"
                raise QueryError(
                    f"relation {type(e).__name__} names part {n!r}, but no object of its "
                    f"conjunction is named so (parts: {known})"
                )
        return
    if isinstance(e, And):
        own = conjunct_parts(e)
        for n, o in own.items():
            if scope.get(n, o) != o:
                raise QueryError(f"two different parts are named {n!r}; give one a name=")
        inner = {**scope, **own}
        for p in e.parts:  # other subqueries (Or, Not, nested scenes) stand on their own
            _check(p, inner if relational(p) else {})
        return
    if isinstance(e, Or):
        for p in e.parts:
            _check(p, scope)
        return
    if isinstance(e, Not):
        _check(e.part, scope)
