"""The HTTP door for videos: track search, GET /tracks/{id}, frame overlays, the video file with
range requests, video regions' pictures, and the service package's import graph."""

from __future__ import annotations

import ast
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from segindex import rle as rle_codec
from segindex.service import ServiceSettings, create_app
from segindex.testing.clips import write_clip
from tests.search.test_video_queries import FPS, N, video_index, walk


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("media")
    write_clip(root / "a.mkv", N, fps=FPS, draw=walk)
    index = video_index(tmp_path_factory.mktemp("idx"), root)
    with TestClient(create_app(index, ServiceSettings()), raise_server_exceptions=True) as c:
        yield index, c, root
    index.close()


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def red_track(client: TestClient) -> dict[str, Any]:
    r = client.post("/search", json={"text": "red", "scope": "tracks", "k": 1})
    assert r.status_code == 200, r.text
    return r.json()["hits"][0]  # type: ignore[no-any-return]


def test_search_tracks_over_http(served: Any) -> None:
    _, client, root = served
    hit = red_track(client)
    assert hit["kind"] == "track" and hit["label"] == "red"
    assert hit["video_path"] == str(root / "a.mkv") and hit["n_frames"] == N
    assert hit["start_s"] == 0.0 and hit["end_s"] == pytest.approx(1.9)
    assert hit["best_frame"]["frame_index"] == 0 and hit["best_frame"]["time_s"] == 0.0
    urls = hit["urls"]
    assert urls["track"] == f"/tracks/{hit['track_id']}"
    assert urls["video"] == f"/videos/{hit['image_id']}"
    assert urls["overlay"] == f"/tracks/{hit['track_id']}/frames/0/overlay.png"
    assert client.get(urls["thumb"]).status_code == 200  # best frame's region, decoded frame
    body = {"text": "red", "scope": "tracks", "k": 10,
            "filters": {"min_duration_s": 1.0, "time_from_s": 0.5, "time_to_s": 0.6}}  # fmt: skip
    got = client.post("/search", json=body).json()["hits"]
    assert {h["label"] for h in got} == {"red", "blue", "gray"}
    more = client.post(
        "/search", json={"similar_to_track": hit["track_id"], "scope": "tracks", "k": 10}
    ).json()["hits"]
    assert len(more) == 2 and hit["track_id"] not in {h["track_id"] for h in more}
    terms = {"terms": [{"track_id": hit["track_id"]}], "scope": "tracks", "k": 1,
             "exclude_query_regions": False}  # fmt: skip
    same = client.post("/search", json=terms).json()["hits"]
    assert same[0]["track_id"] == hit["track_id"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "red", "scope": "videos"}, 422, "scope"),
        ({"text": "red", "filters": {"time_from_s": 2, "time_to_s": 1}}, 400, "is after"),
        ({"text": "red", "filters": {"min_duration_s": -1}}, 400, "min_duration_s"),
        ({"similar_to_track": 999, "scope": "tracks"}, 404, "no track with id 999"),
    ],
)
def test_bad_track_searches(served: Any, body: dict[str, Any], status: int, message: str) -> None:
    r = served[1].post("/search", json=body)
    assert r.status_code == status and message in r.json()["error"]


def test_get_track_lists_its_frames(served: Any) -> None:
    _, client, root = served
    hit = red_track(client)
    r = client.get(f"/tracks/{hit['track_id']}")
    assert r.status_code == 200
    track = r.json()
    assert track["track_id"] == hit["track_id"] and track["label"] == "red"
    assert track["video"] == {
        "id": hit["image_id"],
        "path": str(root / "a.mkv"),
        "width": 64,
        "height": 48,
        "fps": pytest.approx(FPS),
        "duration_s": pytest.approx(2.0, abs=0.11),
        "url": f"/videos/{hit['image_id']}",
        "media_type": "video/x-matroska",
    }
    frames = track["frames"]
    assert [f["frame_index"] for f in frames] == list(range(N))
    assert [f["time_s"] for f in frames] == pytest.approx([i / FPS for i in range(N)])
    for i in (0, 7, 19):
        assert frames[i]["bbox"] == [4 + 2 * i, 4, 16 + 2 * i, 16]
        mask = rle_codec.decode(frames[i]["rle"])
        assert mask.sum() == 144 and mask[4:16, 4 + 2 * i : 16 + 2 * i].all()
        assert frames[i]["urls"]["overlay"] == f"/tracks/{hit['track_id']}/frames/{i}/overlay.png"
    assert client.get("/tracks/999").status_code == 404
    assert client.get("/tracks/0").status_code == 422


def test_frame_overlay_tints_the_mask_and_draws_the_box(served: Any) -> None:
    client = served[1]
    hit = red_track(client)
    r = client.get(f"/tracks/{hit['track_id']}/frames/7/overlay.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = png(r.content)
    frame = walk(7)
    assert picture.shape == frame.shape
    x0, x1 = 4 + 14, 16 + 14  # the red square of frame 7: x 18..30, y 4..16
    inside = picture[7:13, x0 + 3 : x1 - 3].astype(int)
    assert np.abs(inside - frame[7:13, x0 + 3 : x1 - 3]).max() > 20  # tinted
    np.testing.assert_array_equal(picture[30:34, 2:10], frame[30:34, 2:10])  # untouched
    small = png(client.get(f"/tracks/{hit['track_id']}/frames/7/overlay.png?size=32").content)
    assert max(small.shape[:2]) == 32
    missing = client.get(f"/tracks/{hit['track_id']}/frames/500/overlay.png")
    assert missing.status_code == 404 and "no sampled frame 500" in missing.json()["error"]


def test_video_file_is_served_with_ranges(served: Any) -> None:
    index, client, root = served
    hit = red_track(client)
    data = (root / "a.mkv").read_bytes()
    whole = client.get(f"/videos/{hit['image_id']}")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/videos/{hit['image_id']}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    photo = index.store.image_id_for_path(str(root / "photo.png"))
    assert client.get(f"/videos/{photo}").status_code == 404  # an image is not a video
    assert client.get("/videos/999").status_code == 404


def test_frame_regions_have_pictures_and_video_urls(served: Any) -> None:
    client = served[1]
    body = {"text": "red", "scope": "regions", "k": 3,
            "filters": {"time_from_s": 0.5, "time_to_s": 0.5, "labels": ["red"]}}  # fmt: skip
    hits = client.post("/search", json=body).json()["hits"]
    assert [h["frame_index"] for h in hits] == [5] and hits[0]["time_s"] == 0.5
    urls = hits[0]["urls"]
    assert urls["video"] == urls["image"] == f"/videos/{hits[0]['image_id']}"
    assert urls["overlay"].endswith("/frames/5/overlay.png")
    crop = png(client.get(urls["crop"]).content)
    assert crop.shape == (12, 12, 3)
    np.testing.assert_array_equal(crop, walk(5)[4:16, 14:26])  # cut from the decoded frame
    assert client.get(urls["thumb"]).status_code == 200
    assert client.get(urls["overlay"]).status_code == 200


def test_stats_count_videos_and_tracks(served: Any) -> None:
    stats = served[1].get("/stats").json()
    assert stats["videos"] == {"videos": 1, "videos_partial": 0, "tracks": 3, "frames": N}
    paths = served[1].get("/openapi.json").json()["paths"]
    assert {"/tracks/{track_id}", "/videos/{video_id}"} <= set(paths)
    assert "/tracks/{track_id}/frames/{frame_index}/overlay.png" in paths
    page = served[1].get("/").text
    assert 'id="track-video"' in page and 'value="tracks"' in page and "/static/video.js" in page
    script = served[1].get("/static/video.js")
    assert script.status_code == 200 and "https://" not in script.text


def test_service_package_has_no_import_circle() -> None:
    """Every import between the service's modules, lazy ones inside functions included, forms
    no cycle (app -> routes -> uploads -> app was one)."""
    folder = Path(__file__).resolve().parents[2] / "segindex" / "service"
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        name = f"segindex.service.{path.stem}"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m.startswith("segindex.service.")}
    graph.pop("segindex.service.__init__", None)

    def visit(node: str, stack: list[str]) -> None:
        assert node not in stack, " -> ".join([*stack[stack.index(node) :], node])
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*stack, node])

    for start in sorted(graph):
        visit(start, [])
