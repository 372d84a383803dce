"""The scene query text syntax (CLI and HTTP), parsed with a lark LALR(1) grammar.

Keywords are case-insensitive; objects are bare words (several words make one phrase: ``red
umbrella``) or "quoted phrases", with an optional similarity threshold ``dog~0.25``::

    dog LEFT OF bicycle          a RIGHT OF b     a ABOVE b     a BELOW b
    cup INSIDE table             a OVERLAPS b     a NEAR b      a LARGER THAN b
    COUNT(person) >= 3           COUNT(person) = 2     COUNT(person) <= 1   (also >, <)
    NOT car      x AND y      x OR y      ( ... )      (NOT binds tighter than AND, AND than OR)
    person WITH dog              both present (videos: overlapping in time)
    person WITH dog DURING 2s    ... overlapping in time by at least 2 seconds
    dog THEN car WITHIN 10s      car's track starts after dog's, within 10 s (WITHIN optional)

A chain ``a REL b REL c`` relates neighbours (a-b, b-c) and needs all its objects:
``person WITH dog DURING 2s THEN car WITHIN 10s`` is
``Object("person") & Object("dog") & Object("car") & During("person", "dog", min_overlap_s=2)
& Then("dog", "car", within_s=10)``. Bad syntax is a :class:`~segindex.errors.QueryError` with
the 0-based character ``position`` and what was expected there.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from lark import Lark, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken, VisitError

from segindex.errors import QueryError
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

__all__ = ["KEYWORDS", "looks_like_scene", "parse_scene"]

#: the keywords, as written in upper case (``looks_like_scene`` looks for these)
KEYWORDS = (
    "AND", "OR", "NOT", "LEFT OF", "RIGHT OF", "ABOVE", "BELOW", "INSIDE", "OVERLAPS", "NEAR",
    "LARGER THAN", "COUNT(", "WITH", "DURING", "THEN",
)  # fmt: skip

_RESERVED = (
    r"and|or|not|left\s+of|right\s+of|above|below|inside|overlaps|near|larger\s+than|with|"
    r"during|then|within|count"
)

GRAMMAR = rf"""
?start: or_expr
?or_expr: and_expr | or_expr _OR and_expr -> or_
?and_expr: not_expr | and_expr _AND not_expr -> and_
?not_expr: _NOT not_expr -> not_ | atom
?atom: chain | "(" or_expr ")" | count
count: _COUNT "(" obj ")" CMP INT
chain: obj (link obj modifier?)*
link: LEFT_OF | RIGHT_OF | ABOVE | BELOW | INSIDE | OVERLAPS | NEAR | LARGER_THAN | WITH | THEN
modifier: DURING DURATION | WITHIN DURATION
obj: phrase ("~" NUMBER)?
phrase: WORD+ | STRING

_OR: /or\b/i
_AND: /and\b/i
_NOT: /not\b/i
_COUNT: /count\b/i
LEFT_OF: /left\s+of\b/i
RIGHT_OF: /right\s+of\b/i
ABOVE: /above\b/i
BELOW: /below\b/i
INSIDE: /inside\b/i
OVERLAPS: /overlaps\b/i
NEAR: /near\b/i
LARGER_THAN: /larger\s+than\b/i
WITH: /with\b/i
THEN: /then\b/i
DURING: /during\b/i
WITHIN: /within\b/i
CMP: ">=" | "<=" | "==" | "=" | ">" | "<"
INT: /\d+/
NUMBER: /-?(\d+(\.\d*)?|\.\d+)/
DURATION: /(\d+(\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?)?\b/i
STRING: /"[^"]*"/
WORD: /(?!(?:{_RESERVED})\b)[^\s()"~<>=]+/i
%ignore /\s+/
"""

_RELATIONS: dict[str, type[Relation]] = {
    "LEFT_OF": LeftOf,
    "RIGHT_OF": RightOf,
    "ABOVE": Above,
    "BELOW": Below,
    "INSIDE": Inside,
    "OVERLAPS": Overlaps,
    "NEAR": Near,
    "LARGER_THAN": LargerThan,
    "WITH": During,
    "THEN": Then,
}

#: terminal names as a message writes them
_SHOWN = {
    "LPAR": "'('", "RPAR": "')'", "TILDE": "'~'", "WORD": "an object word",
    "STRING": 'a "quoted phrase"', "INT": "a whole number", "NUMBER": "a number",
    "DURATION": "a duration like 2s", "CMP": "a comparison (>=, <=, =, >, <)",
    "$END": "the end of the query",
}  # fmt: skip


@functools.cache
def _parser() -> Any:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def looks_like_scene(text: str) -> bool:
    """Whether ``text`` uses a scene keyword in upper case (``dog LEFT OF bicycle``,
    ``COUNT(person) >= 3``); plain texts (``red umbrella``) go to the ordinary search."""
    if not isinstance(text, str):
        return False
    words = r"AND|OR|NOT|LEFT\s+OF|RIGHT\s+OF|ABOVE|BELOW|INSIDE|OVERLAPS|NEAR|LARGER\s+THAN|"
    words += r"WITH|DURING|THEN"
    unquoted = re.sub(r'"[^"]*"', " ", text)
    return bool(re.search(rf"\b(?:{words})\b|\bCOUNT\s*\(", unquoted))


def parse_scene(text: str) -> Expr:
    """The :class:`~segindex.search.scenes.algebra.Expr` a scene query text stands for (syntax
    in the module doc), checked with :func:`~segindex.search.scenes.algebra.check_scene`."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("a scene query must be a non-empty text", position=0)
    try:
        tree = _parser().parse(text)
    except UnexpectedEOF as e:
        raise QueryError(
            f"the query ends early; expected {_expected(e.expected)}", len(text)
        ) from None
    except UnexpectedToken as e:
        pos = len(text) if e.token.type == "$END" else e.token.start_pos
        got = "the end of the query" if e.token.type == "$END" else repr(str(e.token))
        raise QueryError(
            f"unexpected {got}; expected {_expected(e.accepts or e.expected)}", pos
        ) from None
    except UnexpectedCharacters as e:
        pos = e.pos_in_stream or 0
        raise QueryError(
            f"unexpected character {text[pos]!r}; expected {_expected(e.allowed)}", pos
        ) from None
    try:
        expr = _Build().transform(tree)
    except VisitError as e:
        err = e.orig_exc
        if isinstance(err, QueryError):
            pos = err.position if err.position is not None else 0
            raise QueryError(str(err).removesuffix(f" (at character {pos})"), pos) from None
        raise
    try:
        return check_scene(expr)
    except QueryError as e:
        raise QueryError(str(e), 0) from None


def _expected(names: Any) -> str:
    shown = sorted({_SHOWN.get(n, n.lstrip("_").replace("_", " ")) for n in names or ()})
    return " or ".join(shown) if shown else "something else"


def _seconds(token: Any) -> float:
    found = re.match(r"\d+(\.\d*)?|\.\d+", str(token))
    assert found is not None  # the DURATION token starts with a number
    return float(found.group())


class _Build(Transformer[Any, Any]):
    """Parse tree -> Expr; a semantic error (e.g. a relation of a part to itself) carries the
    position of the chain it is in."""

    def or_(self, items: list[Expr]) -> Expr:
        return Or(tuple(items))

    def and_(self, items: list[Expr]) -> Expr:
        return And(tuple(items))

    def not_(self, items: list[Expr]) -> Expr:
        return Not(items[0])

    def phrase(self, items: list[Any]) -> str:
        if len(items) == 1 and items[0].type == "STRING":
            return str(items[0])[1:-1]
        return " ".join(str(t) for t in items)

    def obj(self, items: list[Any]) -> tuple[Object, int]:
        sim = None if len(items) == 1 else float(items[1])
        try:
            return Object(items[0], min_similarity=sim), 0
        except QueryError as e:
            raise QueryError(str(e), items[-1].start_pos if sim is not None else None) from None

    def link(self, items: list[Any]) -> Any:
        return items[0]

    def modifier(self, items: list[Any]) -> Any:
        return items[0], _seconds(items[1])

    def count(self, items: list[Any]) -> Count:
        (obj, _), cmp, n = items[0], str(items[1]), int(items[2])
        if cmp in ("=", "=="):
            return Count(obj, exactly=n)
        if cmp in (">=", ">"):
            return Count(obj, at_least=n + (cmp == ">"))
        if cmp == "<" and n == 0:
            raise QueryError("COUNT(...) < 0 can never hold", items[1].start_pos)
        return Count(obj, at_most=n - (cmp == "<"))

    def chain(self, items: list[Any]) -> Expr:
        objects = [items[0][0]]
        relations: list[Relation] = []
        i = 1
        while i < len(items):
            link, (obj, _) = items[i], items[i + 1]
            i += 2
            mod = None
            if i < len(items) and isinstance(items[i], tuple) and len(items[i]) == 2:
                if not isinstance(items[i][0], Object):
                    mod = items[i]
                    i += 1
            relations.append(self._relation(link, objects[-1], obj, mod))
            objects.append(obj)
        if not relations:
            return objects[0]
        seen: dict[str, Object] = {}
        for o in objects:
            seen.setdefault(o.part, o)
        return And((*seen.values(), *relations))

    @staticmethod
    def _relation(link: Any, a: Object, b: Object, mod: Any) -> Relation:
        kind = _RELATIONS[link.type]
        if mod is not None:
            word, seconds = mod
            if (word.type, link.type) not in (("DURING", "WITH"), ("WITHIN", "THEN")):
                raise QueryError(
                    f"{str(word).upper()} goes after WITH ... (DURING) or THEN ... (WITHIN), "
                    f"not after {str(link).upper()}",
                    word.start_pos,
                )
        try:
            if kind is During:
                return During(a.part, b.part, min_overlap_s=mod[1] if mod else 0.0)
            if kind is Then:
                return Then(a.part, b.part, within_s=mod[1] if mod else float("inf"))
            return kind(a.part, b.part)
        except QueryError as e:
            raise QueryError(str(e), link.start_pos) from None
