"""Every endpoint of the HTTP service through FastAPI's test client, error cases included."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from segindex import rle as rle_codec
from segindex.errors import ConfigError
from segindex.service import ServiceSettings, create_app
from segindex.testing.fakes import PALETTE, draw_scene
from tests.conftest import scene_truth

KEY = "s3cret"


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def idx(make_index, photos: Path):  # type: ignore[no-untyped-def]
    index = make_index()
    index.ingest(photos)
    return index


@pytest.fixture
def client(idx) -> TestClient:  # type: ignore[no-untyped-def]
    settings = ServiceSettings(api_key=KEY, max_upload_bytes=200_000, max_upload_pixels=300 * 300)
    with TestClient(create_app(idx, settings), raise_server_exceptions=True) as c:
        yield c


def rel(photos: Path, hit: dict) -> str:
    return Path(hit["image_path"]).relative_to(photos).as_posix()


QUERY_IMAGE = draw_scene([("green", (10, 10, 50, 50)), ("yellow", (60, 10, 100, 50))])


def search_upload(client: TestClient, image: bytes, query: dict | str | None = None):  # type: ignore[no-untyped-def]
    data = (
        {} if query is None else {"query": query if isinstance(query, str) else json.dumps(query)}
    )
    return client.post("/search", files={"image": ("q.png", image, "image/png")}, data=data)


# -- search ---------------------------------------------------------------------------------


def test_text_search_json(client, photos) -> None:
    r = client.post("/search", json={"text": "red", "k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [h["label"] for h in body["hits"]] == ["red", "red"]
    assert {rel(photos, h) for h in body["hits"]} == {"a.png", "b.png"}
    hit = body["hits"][0]
    assert hit["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(rle_codec.decode(hit["rle"]), scene_truth(rel(photos, hit))["red"])
    assert hit["urls"]["thumb"] == f"/regions/{hit['region_id']}/thumb.png"
    assert body["has_more"] and body["next_offset"] == 2 and body["offset"] == 0


def test_search_with_filters_threshold_group_and_pages(client, photos) -> None:
    r = client.post(
        "/search",
        json={"text": "red", "k": 3, "filters": {"labels": ["gray"], "min_score": 0.5}},
    )
    assert [h["label"] for h in r.json()["hits"]] == ["gray"] * 3
    r = client.post(
        "/search", json={"text": "gray", "filters": {"path_prefix": str(photos / "sub")}}
    )
    assert {rel(photos, h) for h in r.json()["hits"]} == {"sub/c.png", "sub/deeper/d.bmp"}
    r = client.post("/search", json={"text": "red", "filters": {"thing": False, "max_area": 8000}})
    assert [(rel(photos, h), h["label"]) for h in r.json()["hits"]] == [
        ("sub/deeper/d.bmp", "gray")
    ]
    r = client.post("/search", json={"text": "red", "min_similarity": 0.5, "k": 50})
    assert len(r.json()["hits"]) == 2 and not r.json()["has_more"]
    r = client.post("/search", json={"text": "blue", "group_by_image": True, "k": 10})
    hits = r.json()["hits"]
    assert len({h["image_id"] for h in hits}) == len(hits) == 4
    assert all(h["image_matches"] >= 2 for h in hits)
    full = client.post("/search", json={"text": "gray", "k": 50}).json()["hits"]
    paged = []
    offset = 0
    while offset is not None:
        page = client.post("/search", json={"text": "gray", "k": 4, "offset": offset}).json()
        paged += page["hits"]
        offset = page["next_offset"]
    assert [h["region_id"] for h in paged] == [h["region_id"] for h in full]


def test_negative_terms_and_similar_to(client, photos) -> None:
    plain = client.post("/search", json={"text": "red", "k": 3}).json()["hits"]
    assert plain[2]["label"] == "orange"
    neg = client.post("/search", json={"text": "red", "negative": "orange", "k": 20}).json()
    assert neg["hits"][-1]["label"] == "orange"
    terms = client.post(
        "/search", json={"terms": [{"text": "red"}, {"text": "blue", "weight": 0.3}], "k": 4}
    ).json()["hits"]
    assert [h["label"] for h in terms] == ["red", "red", "blue", "blue"]
    rid = plain[0]["region_id"]
    similar = client.post("/search", json={"similar_to": rid, "k": 2}).json()["hits"]
    assert rid not in [h["region_id"] for h in similar] and similar[0]["label"] == "red"
    both = client.post("/search", json={"similar_to": rid, "exclude_query_regions": False}).json()
    assert both["hits"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_search_by_uploaded_image_and_by_box(client, photos) -> None:
    whole = search_upload(client, png_bytes(draw_scene([], background="yellow")), {"k": 1})
    assert whole.status_code == 200, whole.text
    assert whole.json()["hits"][0]["label"] == "yellow"
    assert search_upload(client, png_bytes(draw_scene([], background="yellow"))).status_code == 200
    boxed = search_upload(client, png_bytes(QUERY_IMAGE), {"region": {"box": [10, 10, 50, 50]}})
    body = boxed.json()
    assert body["hits"][0]["label"] == "green" and rel(photos, body["hits"][0]) == "b.png"
    (region,) = body["query_regions"]
    assert region["method"] == "box" and region["bbox"] == [10, 10, 50, 50]
    assert rle_codec.decode(region["rle"]).sum() == 1600
    points = search_upload(client, png_bytes(QUERY_IMAGE), {"region": {"points": [[70, 20]]}})
    assert points.json()["hits"][0]["label"] == "yellow"
    assert points.json()["query_regions"][0]["method"] == "segment"
    mask = np.zeros(QUERY_IMAGE.shape[:2], bool)
    mask[15:40, 15:40] = True
    masked = search_upload(
        client, png_bytes(QUERY_IMAGE), {"region": {"mask": rle_codec.encode(mask)}}
    )
    assert masked.json()["hits"][0]["label"] == "green"
    jpeg = search_upload(
        client, png_bytes(QUERY_IMAGE, "JPEG"), {"region": {"box": [60, 10, 100, 50]}}
    )
    assert jpeg.json()["hits"][0]["label"] == "yellow"


@pytest.mark.parametrize(
    "body,status,match",
    [
        ({}, 400, "exactly one"),
        ({"text": "red", "similar_to": 1}, 400, "exactly one"),
        ({"text": "  "}, 400, "non-empty"),
        ({"text": "red", "k": 0}, 422, "k"),
        ({"text": "red", "k": 201}, 400, "at most 200"),
        ({"text": "red", "k": "many"}, 422, "k"),
        ({"text": "red", "offset": -1}, 422, "offset"),
        ({"text": "red", "scope": "galaxies"}, 422, "scope"),
        ({"text": "red", "min_similarity": 3}, 422, "min_similarity"),
        ({"text": "red", "filters": {"min_area": 9, "max_area": 2}}, 400, "larger"),
        ({"text": "red", "filters": {"colour": "red"}}, 422, "colour"),
        ({"text": "red", "unknown": 1}, 422, "unknown"),
        ({"text": "red", "negative": [""]}, 400, "negative"),
        ({"terms": [{"text": "red", "weight": 0}]}, 400, "weight"),
        ({"terms": [{"text": "red", "weight": -1}]}, 400, "positive"),
        ({"terms": [{"text": "red"}, {"text": "red", "weight": -1}]}, 400, "cancel"),
        ({"similar_to": 999999}, 404, "no region"),
        ({"similar_to": 0}, 422, "similar_to"),
        ({"similar_to": 2**70}, 422, "similar_to"),
        ({"text": "red", "region": {"box": [0, 0, 5, 5]}}, 400, "uploaded image"),
        ([1, 2], 422, "body"),
        ("red", 422, "body"),
    ],
)
def test_search_errors_are_clear(client, body, status, match) -> None:
    r = client.post("/search", json=body)
    assert r.status_code == status, r.text
    assert match in r.json()["error"]
    assert r.json()["status"] == status


def test_search_bad_bodies(client) -> None:
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/search", content=b"text=red", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "application/json" in r.json()["error"]
    r = client.post("/search", data={"query": "{}"}, files={"other": ("x", b"1")})
    assert r.status_code == 400 and "'image'" in r.json()["error"]
    r = search_upload(client, b"\x89PNG\r\n garbage")
    assert r.status_code == 400 and "cannot decode" in r.json()["error"]
    r = search_upload(client, b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = search_upload(client, png_bytes(QUERY_IMAGE), "{broken")
    assert r.status_code == 400
    for region, match in [
        ({"box": [50, 50, 10, 10]}, "x1 > x0"),
        ({"box": [500, 500, 600, 600]}, "outside"),
        ({"box": [1, 2, 3]}, "box"),
        ({"points": [[1, 2]], "point_labels": [0]}, "foreground"),
        ({"mask": {"size": [4, 4], "counts": "garbage!!"}}, "RLE"),
        ({"mask": {"size": [4, 4], "counts": "0"}}, "RLE"),
        ({"mask": {"size": [96, 128], "counts": "\u00ff"}}, "RLE"),
        ({"mask": {"size": [10000, 10000], "counts": "0"}}, "pixel limit"),
        ({"mask": rle_codec.encode(np.ones((4, 4), bool))}, "like the image"),
    ]:
        r = search_upload(client, png_bytes(QUERY_IMAGE), {"region": region})
        assert r.status_code in (400, 422), (region, r.text)
        assert match in r.json()["error"], (region, r.json())


def test_upload_limits_give_413(client) -> None:
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    assert len(big) > 200_000
    r = search_upload(client, big)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    many_pixels = png_bytes(np.zeros((400, 400, 3), np.uint8))  # small file, 160k pixels
    assert len(many_pixels) < 200_000
    r = search_upload(client, many_pixels)
    assert r.status_code == 413 and "pixels" in r.json()["error"]
    r = client.post("/images", headers={"X-API-Key": KEY}, files={"image": ("x.png", many_pixels)})
    assert r.status_code == 413


# -- regions and images ---------------------------------------------------------------------


def test_region_endpoints(client, photos, idx) -> None:
    hit = client.post("/search", json={"text": "blue", "k": 1}).json()["hits"][0]
    rid = hit["region_id"]
    r = client.get(f"/regions/{rid}")
    assert r.status_code == 200
    region = r.json()
    assert region["label"] == "blue" and region["similarity"] is None
    truth = scene_truth(rel(photos, region))["blue"]
    assert np.array_equal(rle_codec.decode(region["rle"]), truth)
    mask = np.asarray(Image.open(io.BytesIO(client.get(f"/regions/{rid}/mask.png").content)))
    assert mask.shape == truth.shape and np.array_equal(mask > 0, truth)
    crop = client.get(f"/regions/{rid}/crop.png")
    assert crop.headers["content-type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(crop.content)))
    x0, y0, x1, y1 = (int(v) for v in region["bbox"])
    assert rgba.shape == (y1 - y0, x1 - x0, 4)
    assert (rgba[..., 3] == 255).all() and (rgba[..., :3] == PALETTE["blue"]).all()
    thumb = Image.open(io.BytesIO(client.get(f"/regions/{rid}/thumb.png?size=32").content))
    assert max(thumb.size) == 32
    for path in ("", "/mask.png", "/crop.png", "/thumb.png"):
        r = client.get(f"/regions/999999{path}")
        assert r.status_code == 404 and "no region" in r.json()["error"]
    assert client.get("/regions/abc").status_code == 422
    assert client.get("/regions/-1").status_code == 422
    assert client.get(f"/regions/{2**70}").status_code == 422
    assert client.get(f"/regions/{rid}/thumb.png?size=9999").status_code == 422


def test_image_endpoints(client, photos, idx) -> None:
    a = next(r for r in idx.store.indexed_images() if r.path.endswith("a.png"))
    r = client.get(f"/images/{a.id}")
    assert r.status_code == 200 and r.content == (photos / "a.png").read_bytes()
    overlay = Image.open(io.BytesIO(client.get(f"/images/{a.id}/overlay.png").content))
    assert overlay.size == (128, 96)
    regions = client.get(f"/images/{a.id}/regions").json()
    assert sorted(x["label"] for x in regions["regions"]) == ["blue", "gray", "image", "red"]
    assert (regions["width"], regions["height"]) == (128, 96)
    for path in ("", "/overlay.png", "/regions"):
        assert client.get(f"/images/424242{path}").status_code == 404
    assert client.get("/images/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
    assert client.get("/images/1.5").status_code == 422


def test_image_file_gone_is_404(client, photos, idx) -> None:
    a = next(r for r in idx.store.indexed_images() if r.path.endswith("a.png"))
    (photos / "a.png").unlink()
    assert client.get(f"/images/{a.id}").status_code == 404
    assert client.get(f"/images/{a.id}/overlay.png").status_code == 404


def test_upload_ingest_and_delete_with_api_key(client, idx) -> None:
    data = png_bytes(draw_scene([("cyan", (0, 0, 40, 40))]))
    files = {"image": ("new.png", data, "image/png")}
    assert client.post("/images", files=files).status_code == 401
    assert client.post("/images", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    r = client.post("/images", files=files, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 201, r.text
    image = r.json()
    assert sorted(x["label"] for x in image["regions"]) == ["cyan", "gray", "image"]
    assert Path(image["path"]).parent == idx.path / "uploads"
    again = client.post("/images", files=files, headers={"X-API-Key": KEY}).json()
    assert again["id"] == image["id"]
    hit = client.post("/search", json={"text": "cyan", "k": 1}).json()["hits"][0]
    assert hit["image_id"] == image["id"] and hit["label"] == "cyan"
    assert client.get(f"/images/{image['id']}").content == data
    bad = client.post("/images", files={"image": ("x.png", b"nope")}, headers={"X-API-Key": KEY})
    assert bad.status_code == 400 and "cannot decode" in bad.json()["error"]
    missing = client.post("/images", headers={"X-API-Key": KEY})
    assert missing.status_code == 422
    # delete
    assert client.delete(f"/images/{image['id']}").status_code == 401
    r = client.delete(f"/images/{image['id']}", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json() == {"deleted": image["id"], "regions_removed": 3}
    assert client.get(f"/images/{image['id']}").status_code == 404
    assert client.get(f"/regions/{hit['region_id']}").status_code == 404
    hits = client.post("/search", json={"text": "cyan", "k": 50}).json()["hits"]
    assert all(h["image_id"] != image["id"] for h in hits)
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    r = client.delete(f"/images/{image['id']}", headers={"X-API-Key": KEY})
    assert r.status_code == 404


def test_no_api_key_means_open_writes_and_no_cors_by_default(idx) -> None:
    with TestClient(create_app(idx)) as c:
        data = png_bytes(draw_scene([("magenta", (0, 0, 40, 40))]))
        assert c.post("/images", files={"image": ("m.png", data)}).status_code == 201
        r = c.get("/health", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    settings = ServiceSettings(cors_origins=("http://app.example",))
    with TestClient(create_app(idx, settings)) as c:
        r = c.get("/health", headers={"Origin": "http://app.example"})
        assert r.headers["access-control-allow-origin"] == "http://app.example"


def test_stats_health_page_and_docs(client, idx) -> None:
    stats = client.get("/stats").json()
    assert stats["counts"]["images_indexed"] == 4 and stats["vectors"] == 15
    assert {"label": "gray", "regions": 3} in stats["labels"]
    assert client.get("/health").json() == {"status": "ok", "images": 4}
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: everything is local
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "https://" not in r.text
    schema = client.get("/openapi.json").json()
    assert "SearchIn" in schema["components"]["schemas"]
    assert {"/search", "/regions/{region_id}", "/images", "/stats"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert client.get("/nowhere").json()["status"] == 404


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError):
        ServiceSettings(max_k=0)
    with pytest.raises(ConfigError):
        ServiceSettings(api_key="  ")
