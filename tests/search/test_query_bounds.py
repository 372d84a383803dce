"""Numeric query fields at their extremes: integers far beyond int64, floats up to +-1e308, inf
and NaN. Through the Python API a query answers or raises ``QueryError``; through HTTP it answers
200 or 4xx, never 500; on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segindex import Index
from segindex.errors import QueryError
from segindex.search.query import SQL_INT_LIMIT, Filters, RegionPrompt
from segindex.service import ServiceSettings, create_app
from segindex.testing.fakes import draw_scene, register_fakes
from tests.pg import fresh_schema

huge_ints = st.one_of(
    st.integers(-(10**30), 10**30),
    st.integers(2**62, 2**64),
    st.sampled_from([2**63 - 1, 2**63, 2**64, 10**26, 10**20, 100165772774501762325282816]),
)
big_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e300, math.inf, -math.inf, math.nan]),
)
numbers = st.one_of(st.none(), huge_ints, big_floats)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def index(request, tmp_path_factory) -> Iterator[Index]:  # type: ignore[no-untyped-def]
    register_fakes()
    root = tmp_path_factory.mktemp(f"bounds-{request.param}")
    photos = root / "photos"
    photos.mkdir()
    from PIL import Image

    Image.fromarray(draw_scene([("red", (10, 10, 50, 40)), ("blue", (60, 50, 120, 90))])).save(
        photos / "a.png"
    )
    Image.fromarray(draw_scene([("green", (5, 5, 45, 60))])).save(photos / "b.png")
    if request.param == "postgresql":
        with fresh_schema() as url:
            idx = Index.create(root / "i.segindex", segmenter="fake", embedder="fake", db_url=url)
            idx.ingest(photos)
            yield idx
            idx.close()
    else:
        idx = Index.create(root / "i.segindex", segmenter="fake", embedder="fake")
        idx.ingest(photos)
        yield idx
        idx.close()


def _answer_or_query_error(call) -> None:  # type: ignore[no-untyped-def]
    try:
        hits = call()
    except QueryError:
        return
    assert isinstance(hits, list)


def test_issue_examples_answer(index: Index) -> None:
    # the reported 500: an area bound beyond int64 means "no bound" / "nothing that large"
    assert index.search("red", filters=Filters(max_area=10**26))
    assert index.search("red", filters=Filters(min_area=10**20)) == []
    assert Filters(max_area=100165772774501762325282816).max_area == SQL_INT_LIMIT
    with pytest.raises(QueryError, match="region_id"):
        index.search(similar_to=10**30)
    with pytest.raises(QueryError, match="k must be"):
        index.search("red", k=10**30)
    # weights at the top of the float range are ratios, not overflows
    hits = index.search(terms=[("red", 1e308), ("blue", 1e308)])
    assert hits and all(math.isfinite(h.similarity) for h in hits)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    min_area=numbers,
    max_area=numbers,
    min_score=numbers,
    k=numbers,
    offset=numbers,
    weight=numbers,
    min_sim=numbers,
    similar=numbers,
)
def test_python_api_answers_or_query_error(
    index: Index, min_area, max_area, min_score, k, offset, weight, min_sim, similar
) -> None:
    def run():  # type: ignore[no-untyped-def]
        filters = Filters(min_area=min_area, max_area=max_area, min_score=min_score)
        kw = {"filters": filters, "min_similarity": min_sim}
        if k is not None:
            kw["k"] = k
        if offset is not None:
            kw["offset"] = offset
        if similar is not None:
            return index.search(similar_to=similar, **kw)
        if weight is not None:
            return index.search(terms=[("red", weight), ("blue", 1.0)], **kw)
        return index.search("red", **kw)

    _answer_or_query_error(run)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    box=st.lists(st.one_of(huge_ints, big_floats), min_size=4, max_size=4),
    point=st.lists(st.one_of(huge_ints, big_floats), min_size=2, max_size=2),
)
def test_region_coordinates_answer_or_query_error(index: Index, box, point) -> None:
    image = draw_scene([("red", (10, 10, 50, 40))])
    _answer_or_query_error(lambda: index.search(region=RegionPrompt(image, box=box)))
    _answer_or_query_error(lambda: index.search(region=RegionPrompt(image, points=[point])))


json_numbers = st.one_of(st.none(), huge_ints, big_floats.filter(math.isfinite))


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    min_area=json_numbers,
    max_area=json_numbers,
    min_score=json_numbers,
    k=json_numbers,
    offset=json_numbers,
    weight=json_numbers,
    min_sim=json_numbers,
    neg_w=json_numbers,
    similar=json_numbers,
)
def test_http_search_never_500(
    index: Index, min_area, max_area, min_score, k, offset, weight, min_sim, neg_w, similar
) -> None:
    client = _client(index)
    body: dict = {"filters": {"min_area": min_area, "max_area": max_area, "min_score": min_score}}
    if similar is not None:
        body["similar_to"] = similar
    elif weight is not None:
        body["terms"] = [{"text": "red", "weight": weight}, {"text": "blue"}]
    else:
        body["text"] = "red"
    for name, value in (
        ("k", k),
        ("offset", offset),
        ("min_similarity", min_sim),
        ("negative_weight", neg_w),
    ):
        if value is not None:
            body[name] = value
    r = client.post("/search", json=body)
    assert r.status_code in (200, 400, 404, 422), (body, r.status_code, r.text)


@pytest.mark.parametrize("raw", ["Infinity", "-Infinity", "NaN", "1e400", "-1e400"])
def test_http_non_finite_json_numbers_are_4xx(index: Index, raw: str) -> None:
    client = _client(index)
    for field in ('"min_score"', '"max_area"', '"min_area"'):
        text = f'{{"text": "red", "filters": {{{field}: {raw}}}}}'
        r = client.post("/search", content=text, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422), (text, r.status_code, r.text)
    r = client.post(
        "/search",
        content=f'{{"text": "red", "min_similarity": {raw}, "k": 5}}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (400, 422), r.text


_clients: dict[int, TestClient] = {}


def _client(index: Index) -> TestClient:
    if id(index) not in _clients:
        _clients[id(index)] = TestClient(
            create_app(index, ServiceSettings()), raise_server_exceptions=False
        )
    return _clients[id(index)]
