"""The scene algebra and its text syntax: texts -> the exact Expr, bad texts -> the position."""

from __future__ import annotations

import math

import pytest

from segindex.errors import QueryError
from segindex.search import Filters
from segindex.search.scenes import (
    Above,
    And,
    Below,
    Count,
    During,
    Inside,
    LargerThan,
    LeftOf,
    Near,
    Not,
    Object,
    Or,
    Overlaps,
    RightOf,
    Then,
    check_scene,
    looks_like_scene,
    parse_scene,
)

Ob = Object

CASES = [
    ("dog", Ob("dog")),
    ("red umbrella", Ob("red umbrella")),
    ("dog LEFT OF bicycle", And((Ob("dog"), Ob("bicycle"), LeftOf("dog", "bicycle")))),
    ("dog left   of bicycle", And((Ob("dog"), Ob("bicycle"), LeftOf("dog", "bicycle")))),
    ("a RIGHT OF b", And((Ob("a"), Ob("b"), RightOf("a", "b")))),
    ("a ABOVE b", And((Ob("a"), Ob("b"), Above("a", "b")))),
    ("a BELOW b", And((Ob("a"), Ob("b"), Below("a", "b")))),
    ("cup INSIDE table", And((Ob("cup"), Ob("table"), Inside("cup", "table")))),
    ("a OVERLAPS b", And((Ob("a"), Ob("b"), Overlaps("a", "b")))),
    ("a NEAR b", And((Ob("a"), Ob("b"), Near("a", "b")))),
    ("a LARGER THAN b", And((Ob("a"), Ob("b"), LargerThan("a", "b")))),
    ("COUNT(person) >= 3", Count(Ob("person"), at_least=3)),
    ("COUNT(person) > 2", Count(Ob("person"), at_least=3)),
    ("COUNT( person ) = 2", Count(Ob("person"), exactly=2)),
    ("COUNT(person) <= 1 AND dog", And((Count(Ob("person"), at_most=1), Ob("dog")))),
    ("COUNT(person) < 2 AND dog", And((Count(Ob("person"), at_most=1), Ob("dog")))),
    ("COUNT(person) >= 3 AND NOT car", And((Count(Ob("person"), at_least=3), Not(Ob("car"))))),
    ("x AND y", And((Ob("x"), Ob("y")))),
    ("x OR y OR z", Or((Ob("x"), Ob("y"), Ob("z")))),
    ("x OR y AND z", Or((Ob("x"), And((Ob("y"), Ob("z")))))),
    ("(x OR y) AND z", And((Or((Ob("x"), Ob("y"))), Ob("z")))),
    ("x AND NOT NOT y", And((Ob("x"), Not(Not(Ob("y")))))),
    ('"left of" NEAR "and"', And((Ob("left of"), Ob("and"), Near("left of", "and")))),
    ("dog~0.25 AND cat", And((Ob("dog", min_similarity=0.25), Ob("cat")))),
    ("leftover AND android", And((Ob("leftover"), Ob("android")))),
    ("person WITH dog", And((Ob("person"), Ob("dog"), During("person", "dog")))),
    (
        "person WITH dog DURING 2s THEN car WITHIN 10s",
        And(
            (
                Ob("person"),
                Ob("dog"),
                Ob("car"),
                During("person", "dog", min_overlap_s=2),
                Then("dog", "car", within_s=10),
            )
        ),
    ),
    ("a THEN b", And((Ob("a"), Ob("b"), Then("a", "b", within_s=math.inf)))),
    ("a WITH b DURING 1.5 seconds", And((Ob("a"), Ob("b"), During("a", "b", min_overlap_s=1.5)))),
    ("a LEFT OF b LEFT OF a", And((Ob("a"), Ob("b"), LeftOf("a", "b"), LeftOf("b", "a")))),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parse(text, expected):
    assert parse_scene(text) == expected


BAD = [
    ("dog LEFT OF", 11, "object word"),
    ("dog AND AND cat", 8, "expected"),
    ("COUNT(x) >= y", 12, "whole number"),
    ("COUNT(x) >= 3)", 13, "')'"),
    ("(dog AND cat", 12, "')'"),
    ("dog LEFT OF dog", 4, "two different parts"),
    ("a LEFT OF b DURING 2s", 12, "DURING"),
    ("a WITH b WITHIN 2s", 9, "WITHIN"),
    ("COUNT(x) < 0", 9, "never"),
    ("NOT car", 0, "at least one object"),
    ("COUNT(x) <= 2", 0, "at least one object"),
    ("dog~x", 4, "number"),
    ("dog~2", 4, "min_similarity"),
    ("  ", 0, "non-empty"),
    ('"unclosed', 0, "unexpected"),
]


@pytest.mark.parametrize(("text", "position", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_syntax_says_where(text, position, words):
    with pytest.raises(QueryError) as err:
        parse_scene(text)
    assert err.value.position == position
    assert words in str(err.value)
    assert f"at character {position}" in str(err.value)


def test_looks_like_scene():
    assert looks_like_scene("dog LEFT OF bicycle")
    assert looks_like_scene("COUNT(person) >= 3")
    assert looks_like_scene("person WITH dog")
    assert not looks_like_scene("red umbrella")
    assert not looks_like_scene("dog left of bicycle")  # lower case: an ordinary text search
    assert not looks_like_scene('"AND"')


def test_algebra_operators_and_checks():
    e = Ob("dog") & Ob("bicycle") & LeftOf("dog", "bicycle")
    assert e == And((Ob("dog"), Ob("bicycle"), LeftOf("dog", "bicycle")))
    assert Ob("a") | Ob("b") == Or((Ob("a"), Ob("b")))
    assert ~Ob("a") == Not(Ob("a"))
    assert check_scene(LeftOf("dog", "bicycle") & Ob("dog") & Ob("bicycle")) is not None
    with pytest.raises(QueryError, match="names part 'cat'"):
        check_scene(Ob("dog") & LeftOf("dog", "cat"))
    with pytest.raises(QueryError, match="names part"):  # parts of another conjunction
        check_scene((Ob("dog") & Ob("cat")) | (Ob("x") & LeftOf("dog", "cat")))
    with pytest.raises(QueryError, match="two different parts"):
        check_scene(Ob("x", min_similarity=0.1) & Ob("x") & Ob("y"))
    assert check_scene(Ob("dog") & Ob("cat") & (LeftOf("dog", "cat") | RightOf("dog", "cat")))
    assert Then("dog", Ob("car")).b_name == "car"
    check_scene(Ob("dog") & Then("dog", Ob("car"), within_s=10))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: Ob(), "exactly one"),
        (lambda: Ob("a", region_id=3), "exactly one"),
        (lambda: Ob(image="x.jpg"), "name="),
        (lambda: Ob("  "), "non-empty"),
        (lambda: Ob("a", min_similarity=2), "min_similarity"),
        (lambda: Ob("a", filters={"labels": ["x"]}), "Filters"),
        (lambda: Count(Ob("a")), "at_least"),
        (lambda: Count(Ob("a"), exactly=1, at_least=1), "exactly"),
        (lambda: Count(Ob("a"), at_least=3, at_most=2), "above"),
        (lambda: Count(Ob("a"), at_least=-1), "at_least"),
        (lambda: LeftOf("a", "a"), "two different"),
        (lambda: LeftOf("a", 3), "part name"),
        (lambda: LeftOf("a", "b", margin=1.5), "margin"),
        (lambda: Inside("a", "b", min_fraction=0), "min_fraction"),
        (lambda: Overlaps("a", "b", mode="union"), "mode"),
        (lambda: Near("a", "b", max_gap=-1), "max_gap"),
        (lambda: LargerThan("a", "b", ratio=0), "ratio"),
        (lambda: During("a", "b", min_overlap_s=math.nan), "min_overlap_s"),
        (lambda: Then("a", "b", within_s=-1), "within_s"),
        (lambda: And(()), "at least one"),
        (lambda: Ob("a") & "b", "scene term"),
    ],
)
def test_bad_terms(make, words):
    with pytest.raises(QueryError, match=words):
        make()


def test_object_forms():
    f = Filters(labels=("dog",))
    o = Ob(image="q.jpg", name="cup", filters=f, min_similarity=0.3)
    assert o.part == "cup" and o.filters == f
    assert Ob(region_id=5, name="r").part == "r"
    assert Ob("  big   dog ").part == "big dog"
