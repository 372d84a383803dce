"""``segindex search`` with scene queries ('red LEFT OF blue', 'COUNT(red) >= 1 AND NOT blue'),
end to end in-process with the fake backends (one region per palette colour, so each colour
word finds exactly the regions of that colour and the answers are known from the drawings).

Plain texts keep going to the single-region search; bad syntax is a usage error (exit 2) with
the character position and a caret under it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segindex.cli import main
from segindex.testing.fakes import PALETTE, draw_scene

# name -> shapes (colour, XYXY box) on a gray 96x128 canvas; each colour is one fake region
SCENES: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = {
    "left.png": [("red", (10, 30, 40, 60)), ("blue", (80, 30, 110, 60))],
    "right.png": [("blue", (10, 30, 40, 60)), ("red", (80, 30, 110, 60))],
    "above.png": [("red", (40, 5, 80, 30)), ("blue", (40, 60, 80, 90))],
    "below.png": [("blue", (40, 5, 80, 30)), ("red", (40, 60, 80, 90))],
    "noblue.png": [("red", (10, 10, 40, 40)), ("green", (70, 50, 110, 90))],
    "blueonly.png": [("blue", (20, 20, 60, 60))],
}


def centroids(name: str) -> dict[str, tuple[float, float]]:
    """Ground truth: colour -> (x, y) centroid of its pixels in the drawn scene."""
    img = draw_scene(SCENES[name])
    out = {}
    for colour, rgb in PALETTE.items():
        ys, xs = np.nonzero((img == np.array(rgb, dtype=np.uint8)).all(-1))
        if len(xs):
            out[colour] = (float(xs.mean()), float(ys.mean()))
    return out


def truth(rule: Any) -> set[str]:
    """The scenes whose ground-truth centroids satisfy ``rule(centroids)``."""
    return {name for name in SCENES if rule(centroids(name))}


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.fakes import register_fakes

    register_fakes()
    root = tmp_path_factory.mktemp("scenes")
    photos = root / "photos"
    photos.mkdir()
    for name, shapes in SCENES.items():
        Image.fromarray(draw_scene(shapes)).save(photos / name)
    index = root / "s.segindex"
    code, out, err = run(
        "ingest", str(photos), "--index", str(index), "--segmenter", "fake", "--embedder", "fake"
    )
    assert code == 0, out + err
    return index


def scene_json(index: Path, query: str, *extra: str) -> list[dict[str, Any]]:
    code, out, err = run("search", query, "--index", str(index), "--json", *extra)
    assert code == 0, err
    hits: list[dict[str, Any]] = json.loads(out)
    return hits


def names(hits: list[dict[str, Any]]) -> set[str]:
    return {Path(h["image_path"]).name for h in hits}


@pytest.mark.parametrize(
    ("query", "rule"),
    [
        ("red LEFT OF blue", lambda c: "red" in c and "blue" in c and c["red"][0] < c["blue"][0]),
        ("blue LEFT OF red", lambda c: "red" in c and "blue" in c and c["blue"][0] < c["red"][0]),
        ("red RIGHT OF blue", lambda c: "red" in c and "blue" in c and c["red"][0] > c["blue"][0]),
        ("red ABOVE blue", lambda c: "red" in c and "blue" in c and c["red"][1] < c["blue"][1]),
        ("COUNT(red) >= 1 AND NOT blue", lambda c: "red" in c and "blue" not in c),
        ("blue AND NOT red", lambda c: "blue" in c and "red" not in c),
        ("green OR blue", lambda c: "green" in c or "blue" in c),
        ("COUNT(red) = 0 AND blue", lambda c: "red" not in c and "blue" in c),
    ],
)
def test_scene_query_returns_the_images_whose_truth_satisfies_it(
    index: Path, query: str, rule: Any
) -> None:
    expected = truth(rule)
    assert expected  # every case has an answer
    assert names(scene_json(index, query, "-k", "20")) == expected


def test_json_hits_name_their_parts_with_regions_and_masks(index: Path) -> None:
    from segindex import rle as rle_codec

    (hit,) = scene_json(index, "red LEFT OF blue")
    assert Path(hit["image_path"]).name == "left.png" and hit["kind"] == "image"
    assert isinstance(hit["score"], float) and hit.get("start_s") is None
    assert set(hit["parts"]) == {"red", "blue"}
    img = draw_scene(SCENES["left.png"])
    for colour, box in SCENES["left.png"]:
        (part,) = hit["parts"][colour]
        assert part["label"] == colour and part["bbox"] == list(box)
        truth_mask = (img == np.array(PALETTE[colour], dtype=np.uint8)).all(-1)
        assert np.array_equal(rle_codec.decode(part["rle"]), truth_mask)


def test_plain_output_lists_rank_score_path_and_parts(index: Path) -> None:
    hits = scene_json(index, "red LEFT OF blue")
    ids = {name: hits[0]["parts"][name][0]["region_id"] for name in ("red", "blue")}
    code, out, err = run("search", "red LEFT OF blue", "--index", str(index))
    assert code == 0, err
    assert re.search(r"^#1 +score \d+\.\d{3} +\S*left\.png$", out, re.M), out
    assert f"red: region {ids['red']} red [10,30,40,60]" in out
    assert f"blue: region {ids['blue']} blue [80,30,110,60]" in out
    assert "right.png" not in out


def test_k_limits_the_hits(index: Path) -> None:
    everything = scene_json(index, "green OR blue OR red", "-k", "20")
    assert len(everything) == len(SCENES)
    scores = [h["score"] for h in everything]
    assert scores == sorted(scores, reverse=True)
    assert scene_json(index, "green OR blue OR red", "-k", "2") == everything[:2]


def caret_position(err: str, query: str) -> int:
    """The column of the ``^`` under the query line (0-based within the query text)."""
    lines = err.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip() == query)
    text_start = lines[row].index(query)
    return lines[row + 1].index("^") - text_start


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("red LEFT OF", 11),  # ran out: the position is the end of the text
        ("red LEFT OF AND blue", 12),  # a keyword where an object was expected
        ("COUNT(red >= 2", 10),  # the missing ')'
        ("red AND (blue OR green", 22),
    ],
)
def test_bad_syntax_is_a_usage_error_with_a_caret(index: Path, query: str, position: int) -> None:
    code, out, err = run("search", query, "--index", str(index))
    assert code == 2, out + err
    assert f"at character {position}" in err, err
    assert caret_position(err, query) == position, err
    assert "Traceback" not in err


def test_bad_syntax_is_reported_before_the_index_is_opened(tmp_path: Path) -> None:
    code, _, err = run("search", "red LEFT OF", "--index", str(tmp_path / "missing"))
    assert code == 2 and "at character 11" in err


def test_plain_text_still_goes_to_the_region_search(index: Path) -> None:
    for text in ("red", "red left of blue"):  # lower case: not the scene syntax
        code, out, err = run("search", text, "--index", str(index), "-k", "3", "--json")
        assert code == 0, err
        hits = json.loads(out)
        assert [h["label"] for h in hits] == ["red", "red", "red"]
        assert {"region_id", "similarity", "rle"} <= set(hits[0]) and "parts" not in hits[0]
    code, out, _ = run("search", "red", "--index", str(index), "-k", "1")
    assert code == 0 and "similarity" in out


def test_options_that_do_not_apply_are_refused(index: Path) -> None:
    code, _, err = run("search", "red LEFT OF blue", "--index", str(index), "--label", "red")
    assert code == 2 and "--label" in err
    code, _, err = run("search", "red LEFT OF blue", "--index", str(index), "--scope", "tracks")
    assert code == 2 and "images or videos" in err
    code, _, err = run("search", "red", "--index", str(index), "--scope", "videos")
    assert code == 2 and "scene" in err
    code, _, err = run("search", "red THEN blue", "--index", str(index))  # times need videos
    assert code == 2 and "videos" in err and "Traceback" not in err


def test_scope_videos_gives_time_spans(tmp_path: Path) -> None:
    """park/b.mkv has a green square throughout and a yellow one in 0.5-0.9 s only; walk/a.mkv
    a red and a blue square throughout (tests/search/test_video_queries.py)."""
    from segindex.testing.clips import write_clip
    from tests.search.test_video_queries import FPS, N, park, video_index, walk

    root = tmp_path / "media"
    (root / "walk").mkdir(parents=True)
    (root / "park").mkdir()
    write_clip(root / "walk" / "a.mkv", N, fps=FPS, draw=walk)
    write_clip(root / "park" / "b.mkv", N, fps=FPS, draw=park)
    video_index(tmp_path, root).close()
    where = str(tmp_path / "v.segindex")

    (hit,) = scene_json(where_path := Path(where), "green WITH yellow", "--scope", "videos")
    assert hit["kind"] == "video" and hit["image_path"] == str(root / "park" / "b.mkv")
    assert hit["start_s"] <= 0.5 + 1e-6 and hit["end_s"] >= 0.9 - 1e-6
    assert {p["label"] for p in hit["parts"]["yellow"]} == {"yellow"}
    assert names(scene_json(where_path, "red WITH blue", "--scope", "videos")) == {"a.mkv"}
    code, out, err = run("search", "green WITH yellow", "--index", where, "--scope", "videos")
    assert code == 0, err
    assert re.search(r"^#1 +score \S+ +\S*b\.mkv +0:0\d\.\d-0:0\d\.\d$", out, re.M), out
    assert "yellow: track " in out or "yellow: region " in out
