"""Track queries: scope "tracks"/"all", TrackHit fields, best frame, lazy frames, similar_to a
track, the video filters (duration, time range, path prefix) and grouping by video.

Two tiny lossless clips with known content (fake segmenter/embedder: one region per palette
colour, vectors from mean colours), ingested once for the module:

* ``walk/a.mkv``: 20 frames at 10 fps; a red square moving right whose shade drifts a little every
  frame (same palette colour, so one track, but a distinct vector per frame) and a static blue
  square on grey. Tracks: red 0.0-1.9 s, blue 0.0-1.9 s, grey 0.0-1.9 s.
* ``park/b.mkv``: 20 frames at 10 fps; a static green square, a yellow square only in frames
  5-9 (0.5-0.9 s). Tracks: green 0.0-1.9, yellow 0.5-0.9, grey 0.0-1.9.
* ``photo.png``: an image with a red square (no track, no time).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segindex.errors import NotFoundError, QueryError
from segindex.search import Filters, Query, Term, TrackHit, format_time, read_frames
from segindex.testing.clips import write_clip
from segindex.testing.fakes import PALETTE, draw_scene, register_fakes

N = 20
FPS = 10


def red_shade(i: int) -> tuple[int, int, int]:
    return (220 - 2 * i, 30 + 2 * i, 30)


def walk(i: int) -> np.ndarray:
    """Frame ``i`` of a.mkv: a drifting-shade red square at x = 4 + 2i, a static blue one."""
    im = draw_scene([("blue", (48, 34, 58, 44))], size=(48, 64), background="gray")
    x = 4 + 2 * i
    im[4:16, x : x + 12] = red_shade(i)
    return im


def park(i: int) -> np.ndarray:
    shapes = [("green", (40, 30, 54, 44))]
    if 5 <= i <= 9:
        shapes.append(("yellow", (6, 6, 18, 18)))
    return draw_scene(shapes, size=(48, 64), background="gray")


def video_index(where: Path, root: Path) -> Any:
    """A fake-backed index at ``where`` sampling every frame (FPS, no near-duplicate skipping),
    with everything under ``root`` ingested."""
    from segindex import Index
    from segindex.config import VideoOptions

    register_fakes()
    Image.fromarray(draw_scene([("red", (10, 10, 50, 40))])).save(root / "photo.png")
    index = Index.create(
        where / "v.segindex",
        segmenter="fake",
        embedder="fake",
        video=VideoOptions(fps=FPS, dedup_threshold=0.0),
    )
    report = index.ingest([root])
    assert report.failed == 0
    return index


@pytest.fixture(scope="module")
def idx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("media")
    (root / "walk").mkdir()
    (root / "park").mkdir()
    write_clip(root / "walk" / "a.mkv", N, fps=FPS, draw=walk)
    write_clip(root / "park" / "b.mkv", N, fps=FPS, draw=park)
    index = video_index(tmp_path_factory.mktemp("idx"), root)
    assert index.store.counts()["images_indexed"] == 3
    yield index
    index.close()


def tracks_of(hits: list[Any]) -> list[tuple[str, str, float, float]]:
    return [(Path(h.video_path).name, h.label, h.start_s, h.end_s) for h in hits]


def test_scope_tracks_returns_track_hits_with_spans(idx: Any) -> None:
    hits = idx.search("red", scope="tracks", k=10)
    assert all(isinstance(h, TrackHit) for h in hits)
    assert len(hits) == 6  # red, blue, grey of a; green, yellow, grey of b
    top = hits[0]
    assert (Path(top.video_path).name, top.label) == ("a.mkv", "red")
    assert top.kind == "track" and top.video_id == top.image_id
    assert top.start_s == pytest.approx(0.0) and top.end_s == pytest.approx(1.9)
    assert top.duration_s == pytest.approx(1.9) and top.n_frames == N
    assert top.similarity > 0.9 > hits[1].similarity
    found = sorted(
        (Path(h.video_path).name, h.label, round(h.start_s, 3), round(h.end_s, 3)) for h in hits
    )
    assert ("b.mkv", "yellow", 0.5, 0.9) in found
    assert ("a.mkv", "blue", 0.0, 1.9) in found


def test_frames_are_the_sampled_frames_in_time_order_with_masks(idx: Any) -> None:
    top = idx.search("red", scope="tracks", k=1)[0]
    frames = top.frames()
    assert [f.frame_index for f in frames] == list(range(N))
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in range(N)])
    for i, f in enumerate(frames):
        assert f.track_id == top.track_id and f.kind == "segment" and f.label == "red"
        assert f.bbox == (4 + 2 * i, 4, 16 + 2 * i, 16)
        mask = f.mask()
        assert mask.shape == (48, 64) and mask.dtype == np.bool_
        assert mask.sum() == 144 and mask[4:16, 4 + 2 * i : 16 + 2 * i].all()
        assert -1 <= f.similarity <= 1.0001  # similarity to the query, per frame
    assert top.frames() is frames  # read once


def test_best_frame_is_the_frame_closest_to_the_query(idx: Any) -> None:
    frames = idx.search("red", scope="tracks", k=1)[0].frames()
    vecs = idx.store.region_vectors([f.region_id for f in frames])
    assert len({vecs[f.region_id].tobytes() for f in frames}) == N  # distinct frame vectors
    for pick in (3, 15):  # query by one frame: its own track, best frame = that frame
        hits = idx.search(similar_to=frames[pick].region_id, scope="tracks", k=1,
                          exclude_query_regions=False)  # fmt: skip
        best = hits[0].best_frame
        assert best is not None and best.region_id == frames[pick].region_id
        assert best.frame_index == pick and best.similarity == pytest.approx(1.0, abs=1e-5)
    by_text = idx.search("red", scope="tracks", k=1)[0]
    sims = [f.similarity for f in by_text.frames()]
    assert by_text.best_frame is not None
    assert by_text.best_frame.similarity == pytest.approx(max(sims))
    assert by_text.best_frame.frame_index == int(np.argmax(sims))
    assert by_text.best_frame.frame_index == 0  # the purest red is the first frame


def test_similar_to_track_and_region_leave_the_query_track_out(idx: Any) -> None:
    red = idx.search("red", scope="tracks", k=1)[0]
    others = idx.search(similar_to_track=red.track_id, scope="tracks", k=10)
    assert red.track_id not in {h.track_id for h in others} and len(others) == 5
    same = idx.search(similar_to_track=red.track_id, scope="tracks", k=1,
                      exclude_query_regions=False)  # fmt: skip
    assert same[0].track_id == red.track_id and same[0].similarity == pytest.approx(1.0, abs=1e-5)
    frame = red.frames()[4].region_id
    assert red.track_id not in {h.track_id for h in idx.search(similar_to=frame, scope="tracks")}
    # a track as a weighted term, and in the regions scope: the red photo region is found
    q = Query(terms=(Term(track_id=red.track_id),), scope="regions", k=50)
    regions = idx.query(q).hits
    assert any(h.image_path.endswith("photo.png") for h in regions)
    assert all(h.track_id != red.track_id for h in regions)  # nor its own frames


def test_unknown_track_is_not_found(idx: Any) -> None:
    with pytest.raises(NotFoundError, match="no track with id 999"):
        idx.search(similar_to_track=999, scope="tracks")
    with pytest.raises(NotFoundError, match="no track with id 999"):
        idx.track(999)
    with pytest.raises(QueryError, match="track_id must be an integer"):
        Term(track_id="3")  # type: ignore[arg-type]


def test_track_by_id_has_its_most_typical_frame(idx: Any) -> None:
    red = idx.search("red", scope="tracks", k=1)[0]
    t = idx.track(red.track_id)
    assert isinstance(t, TrackHit) and math.isnan(t.similarity)
    assert (t.label, t.n_frames, t.start_s, t.end_s) == ("red", N, red.start_s, red.end_s)
    assert t.best_frame is not None and t.best_frame.time_s is not None
    assert len(t.frames()) == N and all(math.isnan(f.similarity) for f in t.frames())
    d = t.to_dict(frames=True)
    assert d["track_id"] == red.track_id and d["video_path"] == red.video_path
    assert d["start_s"] == 0.0 and d["end_s"] == pytest.approx(1.9) and len(d["frames"]) == N
    assert d["frames"][3]["frame_index"] == 3 and d["frames"][3]["time_s"] == pytest.approx(0.3)


def test_scope_all_mixes_image_regions_frames_and_tracks(idx: Any) -> None:
    hits = idx.search("red", scope="all", k=40)
    kinds = {h.kind for h in hits}
    assert {"segment", "track"} <= kinds
    assert all(isinstance(h, TrackHit) == (h.kind == "track") for h in hits)
    photo = [h for h in hits if h.image_path.endswith("photo.png")]
    assert photo and photo[0].time_s is None and photo[0].track_id is None
    frame_hits = [h for h in hits if h.kind == "segment" and h.time_s is not None]
    assert frame_hits and all(h.track_id is not None for h in frame_hits)


A = {"red", "blue", "gray"}  # the tracks of a.mkv, all 0.0-1.9 s
B = {"green", "gray"}  # the long tracks of b.mkv (yellow: 0.5-0.9 s)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(min_duration_s=1.0), {"a.mkv": A, "b.mkv": B}),
        (Filters(min_duration_s=0.4), {"a.mkv": A, "b.mkv": B | {"yellow"}}),
        (Filters(min_duration_s=2.0), {}),
        (Filters(time_from_s=0.95), {"a.mkv": A, "b.mkv": B}),
        (Filters(time_from_s=0.6, time_to_s=0.7), {"a.mkv": A, "b.mkv": B | {"yellow"}}),
        (Filters(time_to_s=0.4), {"a.mkv": A, "b.mkv": B}),
        (Filters(path_prefix="PARK"), {}),
        (Filters(labels=("yellow", "red")), {"a.mkv": {"red"}, "b.mkv": {"yellow"}}),
        (Filters(min_duration_s=0.1, time_from_s=0.9, labels=("yellow",)), {"b.mkv": {"yellow"}}),
    ],
)  # fmt: skip
def test_track_filters(idx: Any, filters: Filters, expected: dict[str, set[str]]) -> None:
    hits = idx.search("red", scope="tracks", k=20, filters=filters)
    got: dict[str, set[str]] = {}
    for h in hits:
        got.setdefault(Path(h.video_path).name, set()).add(h.label)
    assert got == expected


def test_video_path_prefix(idx: Any) -> None:
    root = Path(idx.search("red", scope="tracks", k=1)[0].video_path).parent.parent
    hits = idx.search("red", scope="tracks", k=20, filters=Filters(path_prefix=str(root / "park")))
    assert {Path(h.video_path).name for h in hits} == {"b.mkv"} and len(hits) == 3


def test_time_range_on_frame_regions_and_images(idx: Any) -> None:
    f = Filters(time_from_s=0.45, time_to_s=0.75, labels=("red",))
    hits = idx.search("red", scope="regions", k=50, filters=f)
    assert sorted(h.frame_index for h in hits) == [5, 6, 7]  # the photo has no time
    assert not idx.search("red", scope="images", k=50, filters=Filters(min_duration_s=0.0))
    assert idx.search("red", scope="regions", k=50, filters=Filters(min_duration_s=1.5))


def test_group_by_video_counts_matching_tracks(idx: Any) -> None:
    hits = idx.search("red", scope="tracks", k=10, group_by_image=True)
    assert [Path(h.video_path).name for h in hits] == ["a.mkv", "b.mkv"]
    assert [h.image_matches for h in hits] == [3, 3]
    long = idx.search("red", scope="tracks", k=10, group_by_image=True,
                      filters=Filters(min_duration_s=1.0))  # fmt: skip
    assert [h.image_matches for h in long] == [3, 2]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"min_duration_s": -1}, "min_duration_s must be a finite number >= 0"),
        ({"time_from_s": "1"}, "time_from_s must be a number"),
        ({"time_to_s": math.inf}, "time_to_s must be a finite number"),
        ({"time_from_s": 3, "time_to_s": 2}, "time_from_s 3.0 is after time_to_s 2.0"),
    ],
)
def test_bad_video_filters(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        Filters(**kw)


def test_bad_scope_names_tracks() -> None:
    with pytest.raises(QueryError, match="tracks"):
        Query(terms=(Term(text="x"),), scope="videos")  # type: ignore[arg-type]


def test_image_only_index_has_no_tracks(make_index: Any, photos: Path) -> None:
    index = make_index()
    index.ingest([photos])
    assert index.search("red", scope="tracks") == []
    assert index.search("red", scope="tracks", filters=Filters(min_duration_s=1)) == []
    assert index.search("red", scope="regions")[0].time_s is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00.0"), (5.25, "0:05.2"), (75.25, "1:15.2"), (59.96, "1:00.0"),
     (3725.0, "1:02:05.0"), (None, "-"), (math.nan, "-")],
)  # fmt: skip
def test_format_time(seconds: float | None, text: str) -> None:
    assert format_time(seconds) == text


def test_read_frames_decodes_the_stored_frames(idx: Any) -> None:
    top = idx.search("red", scope="tracks", k=1)[0]
    frames = top.frames()
    picked = [frames[7], frames[2], frames[19]]
    pixels = read_frames(top.video_path, [f.time_s for f in picked])
    for f, im in zip(picked, pixels, strict=True):
        assert im.shape == (48, 64, 3) and im.dtype == np.uint8
        np.testing.assert_array_equal(im, walk(f.frame_index))  # FFV1 is lossless
    assert read_frames(top.video_path, []) == []
    with pytest.raises(Exception, match="no frame at 9.000s"):
        read_frames(top.video_path, [9.0])


def test_palette_red_is_what_the_fake_segmenter_sees() -> None:
    # the drifting shades stay nearest to palette red, so the red square is one track
    from segindex.testing.fakes import quantise

    shades = np.array([[red_shade(i) for i in range(N)]], dtype=np.uint8)
    assert (quantise(shades) == list(PALETTE).index("red")).all()


# -- the CLI door ----------------------------------------------------------------------------


def cli(*args: str) -> Any:
    from click.testing import CliRunner

    from segindex.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_search_tracks_prints_times(idx: Any) -> None:
    r = cli("search", "red", "--index", str(idx.path), "--scope", "tracks", "-k", "2")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "a.mkv" in ln]
    assert "from" in r.output and "frames" in r.output and "track" in r.output
    assert "0:00.0" in lines[0] and "0:01.9" in lines[0] and " 20 " in lines[0]
    r = cli("search", "red", "--index", str(idx.path), "--scope", "tracks", "--json",
            "--min-duration", "0:01", "--from", "0.5", "--to", "0:00.7")  # fmt: skip
    assert r.exit_code == 0, r.output
    import json

    hits = json.loads(r.output)
    assert {h["label"] for h in hits} == {"red", "blue", "gray", "green"}
    assert all(h["end_s"] - h["start_s"] >= 1.0 and h["best_frame"]["time_s"] is not None
               for h in hits)  # fmt: skip
    track = hits[0]["track_id"]
    r = cli("search", "--similar-to-track", str(track), "--index", str(idx.path),
            "--scope", "tracks", "--json", "--group-by-video")  # fmt: skip
    got = json.loads(r.output)
    assert r.exit_code == 0 and len(got) == 2 and track not in {h["track_id"] for h in got}
    r = cli("search", "red", "--index", str(idx.path), "--scope", "all", "-k", "30")
    assert r.exit_code == 0 and "time" in r.output and "0:00.0-0:01.9" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "1:xx"], "expected seconds, m:ss or h:mm:ss"),
        (["--from", "3", "--to", "2"], "time_from_s 3.0 is after time_to_s 2.0"),
        (["--similar-to-track", "999"], "no track with id 999"),
    ],
)
def test_cli_search_bad_video_options(idx: Any, args: list[str], message: str) -> None:
    text = [] if "--similar-to-track" in args else ["red"]
    r = cli("search", *text, "--index", str(idx.path), "--scope", "tracks", *args)
    assert r.exit_code != 0 and message in r.output


def test_cli_info_counts_videos_and_tracks(idx: Any) -> None:
    r = cli("info", "--index", str(idx.path))
    assert r.exit_code == 0, r.output
    assert "images:      1 indexed" in r.output
    assert "videos:      2 indexed, 40 sampled frames" in r.output
    assert "tracks:      6" in r.output


def test_export_youtube_vis(idx: Any, tmp_path: Path) -> None:
    from segindex import rle as rle_codec
    from segindex.formats.youtube_vis import load_youtube_vis

    out = tmp_path / "tracks.json"
    r = cli("export", "--index", str(idx.path), "--format", "youtube-vis", "-o", str(out))
    assert r.exit_code == 0 and "wrote 6 tracks of 2 videos" in r.output
    data = load_youtube_vis(out)  # read back by the YouTube-VIS reader
    assert sorted(Path(v.file_name or "").name for v in data.videos) == ["a.mkv", "b.mkv"]
    names = data.category_names()
    a = next(v for v in data.videos if (v.file_name or "").endswith("a.mkv"))
    assert a.length == N and a.frame_indices == list(range(N))
    assert a.times_s == pytest.approx([i / FPS for i in range(N)])
    red = next(t for t in data.tracks_of(a.id) if names[t.category_id] == "red")
    for f in range(N):
        m = red.mask(f)
        assert m is not None and m.sum() == 144 and m[4:16, 4 + 2 * f : 16 + 2 * f].all()
    b = next(v for v in data.videos if v.id != a.id)
    yellow = next(t for t in data.tracks_of(b.id) if names[t.category_id] == "yellow")
    present = [s is not None for s in yellow.segmentations]
    assert present == [5 <= f <= 9 for f in range(N)]
    assert yellow.score == pytest.approx(0.9)
    assert rle_codec.area(yellow.segmentations[6]) == 144  # type: ignore[arg-type]
    assert idx.export_youtube_vis()["annotations"][0]["segmentations"]


def test_track_without_query_has_its_typical_frame_as_best(idx: Any) -> None:
    red = idx.search("red", scope="tracks", k=1)[0]
    t = idx.track(red.track_id)
    frames = {f.region_id: f for f in t.frames()}
    vecs = idx.store.region_vectors([*frames, t.region_id])
    typical = max(frames, key=lambda r: float(vecs[r] @ vecs[t.region_id]))
    assert t.best_frame is not None and t.best_frame.region_id == typical
    assert t.best_frame.kind == "segment" and math.isnan(t.best_frame.similarity)
    assert (t.best_frame.frame_index, t.best_frame.bbox) == (t.frame_index, t.bbox)
