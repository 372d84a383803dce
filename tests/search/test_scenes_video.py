"""Scene search over videos: parts are tracks; WITH/DURING on time overlap, THEN ... WITHIN on
start order, spatial relations on a shared sampled frame, the hit's time span.

Two lossless clips, 20 frames at 10 fps (fake segmenter: one region, so one track, per colour):

* ``a.mkv``: red all along (0.0-1.9 s); blue frames 5-14 (0.5-1.4 s) at the left; green frames
  12-19 (1.2-1.9 s) at the right.
* ``b.mkv``: red all along; blue frames 0-4 (0.0-0.4 s) at the left; green frames 15-19
  (1.5-1.9 s) at the right: blue and green never share a frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segindex import During, Index, LeftOf, Object, Then
from segindex.config import VideoOptions
from segindex.errors import QueryError
from segindex.search import TrackHit
from segindex.testing.clips import write_clip
from segindex.testing.fakes import draw_scene, register_fakes

FPS, N = 10, 20


def frame(blue: range, green: range):  # type: ignore[no-untyped-def]
    def draw(i: int) -> np.ndarray:
        shapes = [("red", (24, 4, 36, 14))]
        if i in blue:
            shapes.append(("blue", (4, 24, 16, 36)))
        if i in green:
            shapes.append(("green", (46, 24, 58, 36)))
        return draw_scene(shapes, size=(48, 64), background="gray")

    return draw


@pytest.fixture(scope="module")
def idx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    register_fakes()
    root = tmp_path_factory.mktemp("clips")
    write_clip(root / "a.mkv", N, fps=FPS, draw=frame(range(5, 15), range(12, 20)))
    write_clip(root / "b.mkv", N, fps=FPS, draw=frame(range(0, 5), range(15, 20)))
    index = Index.create(
        tmp_path_factory.mktemp("idx") / "v.segindex",
        segmenter="fake",
        embedder="fake",
        video=VideoOptions(fps=FPS, dedup_threshold=0.0),
    )
    assert index.ingest([root]).failed == 0
    yield index
    index.close()


def names(hits: list[Any]) -> list[str]:
    return [Path(h.image_path).name for h in hits]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("red WITH blue", {"a.mkv", "b.mkv"}),
        ("red WITH blue DURING 0.5s", {"a.mkv"}),
        ("blue WITH green", {"a.mkv"}),
        ("blue THEN green", {"a.mkv", "b.mkv"}),
        ("blue THEN green WITHIN 1s", {"a.mkv"}),
        ("green THEN blue", set()),
        ("red WITH blue DURING 0.5s THEN green WITHIN 1s", {"a.mkv"}),
        ("blue LEFT OF green", {"a.mkv"}),  # b's blue and green share no frame
        ("blue LEFT OF red", {"a.mkv", "b.mkv"}),
        ("red LEFT OF blue", set()),
        ("COUNT(green) = 1 AND NOT yellow", {"a.mkv", "b.mkv"}),
    ],
)
def test_video_scenes(idx, text, expected):
    hits = idx.search_scenes(text, k=10, scope="videos")
    assert set(names(hits)) == expected
    assert all(h.kind == "video" for h in hits)


def test_video_hit_span_and_parts(idx):
    q = Object("red") & Object("blue") & During("red", "blue", min_overlap_s=0.5)
    q = q & Then("blue", Object("green"), within_s=1)
    (hit,) = idx.search_scenes(q, scope="videos")
    assert names([hit]) == ["a.mkv"]
    assert set(hit.parts) == {"red", "blue", "green"}
    tracks = {n: p[0] for n, p in hit.parts.items()}
    assert all(isinstance(t, TrackHit) for t in tracks.values())
    assert tracks["blue"].start_s == pytest.approx(0.5) and tracks[
        "green"
    ].start_s == pytest.approx(1.2)
    assert hit.start_s == pytest.approx(0.0) and hit.end_s == pytest.approx(1.9)
    data = hit.to_dict()
    assert data["kind"] == "video" and data["parts"]["green"][0]["start_s"] == pytest.approx(1.2)
    assert idx.search_scenes(
        Object("blue") & Object("green") & LeftOf("blue", "green"), scope="videos"
    )


def test_images_scope_skips_video_frames(idx):
    assert idx.search_scenes("red", scope="images") == []
    with pytest.raises(QueryError, match="videos"):
        idx.search_scenes("blue THEN green")
