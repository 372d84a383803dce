"""``POST /search/scenes`` through FastAPI's test client with the fake backends: answers that
match the drawn ground truth, part masks and URLs, the OpenAPI schema, and bad query texts as
422 with the character position (never a 500)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from segindex import rle as rle_codec
from segindex.service import ServiceSettings, create_app
from segindex.testing.fakes import PALETTE, draw_scene
from tests.cli.test_scenes_cli import SCENES, truth


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from segindex import Index
    from segindex.testing.fakes import register_fakes

    register_fakes()
    root = tmp_path_factory.mktemp("scenes")
    for name, shapes in SCENES.items():
        Image.fromarray(draw_scene(shapes)).save(root / name)
    idx = Index.create(root / "s.segindex", segmenter="fake", embedder="fake")
    idx.ingest([root])
    settings = ServiceSettings(api_key="k", max_k=50)
    with TestClient(create_app(idx, settings), raise_server_exceptions=False) as c:
        yield c
    idx.close()


def scenes(client: TestClient, query: str, **body: Any) -> list[dict[str, Any]]:
    r = client.post("/search/scenes", json={"query": query, **body})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits


def names(hits: list[dict[str, Any]]) -> set[str]:
    return {Path(h["image_path"]).name for h in hits}


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("red LEFT OF blue", lambda c: "red" in c and "blue" in c and c["red"][0] < c["blue"][0]),
        ("red BELOW blue", lambda c: "red" in c and "blue" in c and c["red"][1] > c["blue"][1]),
        ("COUNT(red) >= 1 AND NOT blue", lambda c: "red" in c and "blue" not in c),
        ("(green OR blue) AND NOT (red LEFT OF blue)",
         lambda c: ("green" in c or "blue" in c)
         and not ("red" in c and "blue" in c and c["red"][0] < c["blue"][0])),
    ],
)  # fmt: skip
def test_scene_search_matches_the_ground_truth(client: TestClient, query: str, rule: Any) -> None:
    expected = truth(rule)
    assert expected
    assert names(scenes(client, query, k=20)) == expected


def test_hits_carry_parts_masks_and_urls(client: TestClient) -> None:
    (hit,) = scenes(client, "red LEFT OF blue")
    assert hit["kind"] == "image" and Path(hit["image_path"]).name == "left.png"
    assert hit["urls"]["image"] == f"/images/{hit['image_id']}"
    assert set(hit["parts"]) == {"red", "blue"}
    img = draw_scene(SCENES["left.png"])
    for colour, box in SCENES["left.png"]:
        (part,) = hit["parts"][colour]
        assert part["label"] == colour and part["bbox"] == list(box)
        mask = (img == np.array(PALETTE[colour], dtype=np.uint8)).all(-1)
        assert np.array_equal(rle_codec.decode(part["rle"]), mask)
        assert part["urls"]["mask"] == f"/regions/{part['region_id']}/mask.png"
        assert client.get(part["urls"]["mask"]).status_code == 200
    assert client.get(hit["urls"]["image"]).status_code == 200


def test_k_and_scope(client: TestClient) -> None:
    assert len(scenes(client, "green OR blue OR red", k=2)) == 2
    assert len(scenes(client, "green OR blue OR red", k=50)) == len(SCENES)
    assert scenes(client, "red LEFT OF blue", scope="videos") == []  # no videos indexed
    r = client.post("/search/scenes", json={"query": "red AND blue", "k": 51})
    assert r.status_code == 400 and "at most 50" in r.json()["error"]
    r = client.post("/search/scenes", json={"query": "red THEN blue"})  # times need videos
    assert r.status_code == 400 and "videos" in r.json()["error"]


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("red LEFT OF", 11),
        ("red LEFT OF AND blue", 12),
        ("COUNT(red >= 2", 10),
        ("red AND (blue OR green", 22),
    ],
)
def test_bad_syntax_is_422_with_the_position(client: TestClient, query: str, position: int) -> None:
    r = client.post("/search/scenes", json={"query": query})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["position"] == position and body["status"] == 422
    assert isinstance(body["detail"], str) and f"at character {position}" in body["detail"]


@pytest.mark.parametrize(
    "query",
    ["(((", ")", "AND", "NOT", "COUNT(", "COUNT(red) >= x", "red~", "red~abc AND blue",
     "red LEFT", "\x00 AND \x01", "é ABOVE ü (", "red LARGER blue", "THEN WITHIN 10s",
     "red AND " * 200, "(" * 500 + "red" + ")" * 499, '"unclosed AND blue',
     "red~2 AND blue", "COUNT(red) >= 99999999999999999999 AND blue"],
)  # fmt: skip
def test_hostile_texts_are_never_a_500(client: TestClient, query: str) -> None:
    r = client.post("/search/scenes", json={"query": query})
    assert r.status_code in (200, 400, 422), r.text
    if r.status_code == 422:
        assert "position" in r.json() or "invalid request" in r.json()["error"]


def test_request_validation_is_422(client: TestClient) -> None:
    for body in ({}, {"query": ""}, {"query": "red AND blue", "scope": "tracks"},
                 {"query": "red AND blue", "k": 0}, {"query": "red", "extra": 1}):  # fmt: skip
        r = client.post("/search/scenes", json=body)
        assert r.status_code == 422, (body, r.text)


def test_plain_search_is_unchanged(client: TestClient) -> None:
    r = client.post("/search", json={"text": "red", "k": 3})
    assert r.status_code == 200 and [h["label"] for h in r.json()["hits"]] == ["red"] * 3


def test_openapi_has_typed_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/search/scenes"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/ScenesIn")
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/ScenesOut")
    bad = op["responses"]["422"]["content"]["application/json"]["schema"]
    assert bad["$ref"].endswith("/SceneQueryErrorOut")
    components = schema["components"]["schemas"]
    assert {"ScenesIn", "ScenesOut", "SceneHitOut", "ScenePartOut"} <= set(components)
    assert components["ScenesIn"]["properties"]["scope"]["enum"] == ["images", "videos"]
    assert "SearchIn" in components  # POST /search's own schema is still added
