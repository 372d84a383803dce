"""YouTube-VIS read/write: round trip, results lists, polygons and uncompressed RLE, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segindex import rle
from segindex.errors import ConfigError
from segindex.formats.youtube_vis import (
    VisDataset,
    VisTrack,
    VisVideo,
    frame_regions,
    load_youtube_vis,
    save_youtube_vis,
    to_dict,
    to_results,
    tracks_from_ids,
)


def box_mask(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (20, 30)) -> np.ndarray:
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def dataset() -> VisDataset:
    names = ["a/0.png", "a/1.png", "a/2.png"]
    video = VisVideo(
        7, 30, 20, names, "videos/a.mkv", frame_indices=[0, 5, 10], times_s=[0, 0.5, 1]
    )
    tracks = [
        VisTrack(
            1, 7, 3, [rle.encode(box_mask(0, 0, 4, 5)), None, rle.encode(box_mask(2, 2, 6, 6))]
        ),
        VisTrack(2, 7, 4, [None, rle.encode(box_mask(10, 10, 20, 12)), None], score=0.5),
    ]
    cats = [{"id": 3, "name": "coin", "supercategory": "object"},
            {"id": 4, "name": "ball", "supercategory": "object"}]  # fmt: skip
    return VisDataset([video], cats, tracks, {"seed": 1})


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    ds = dataset()
    path = save_youtube_vis(ds, tmp_path / "gt.json")
    data = json.loads(path.read_text())
    a = data["annotations"][0]
    assert a["areas"] == [20, None, 16] and a["bboxes"][0] == [0.0, 0.0, 4.0, 5.0]
    assert data["videos"][0]["length"] == 3
    back = load_youtube_vis(path)
    assert to_dict(back) == to_dict(ds)
    assert back.tracks[1].score == 0.5 and back.video(7).times_s == [0.0, 0.5, 1.0]
    np.testing.assert_array_equal(back.tracks[0].mask(2), box_mask(2, 2, 6, 6))
    assert back.tracks[0].mask(1) is None
    tracks, masks = frame_regions(back, 7, 1)
    assert [t.id for t in tracks] == [2] and masks.shape == (1, 20, 30)
    assert frame_regions(back, 7, 0)[1].shape == (1, 20, 30)


def test_results_list_refers_to_the_dataset() -> None:
    ds = dataset()
    results = to_results(ds)
    assert results[0]["score"] == 1.0 and "id" not in results[0]
    back = load_youtube_vis(results, like=ds)
    assert [t.id for t in back.tracks] == [1, 2]
    assert back.videos == ds.videos
    with pytest.raises(ConfigError, match="results list"):
        load_youtube_vis(results)


def test_polygons_and_uncompressed_rle_are_converted() -> None:
    m = box_mask(3, 4, 9, 8)
    raw = {"size": [20, 30], "counts": _uncompressed(m)}
    poly = [[3, 4, 9, 4, 9, 8, 3, 8]]
    data = {
        "videos": [{"id": 1, "width": 30, "height": 20, "length": 2}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": 4, "video_id": 1, "category_id": 1, "segmentations": [raw, poly]}],
    }
    ds = load_youtube_vis(data)
    np.testing.assert_array_equal(ds.tracks[0].mask(0), m)
    assert ds.tracks[0].mask(1).sum() > 0 and ds.videos[0].file_names == ["1/00000", "1/00001"]


def _uncompressed(m: np.ndarray) -> list[int]:
    flat = m.T.ravel().astype(int)  # column-major
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    return [*counts, run]


def test_tracks_from_ids() -> None:
    masks = [
        np.stack([box_mask(0, 0, 2, 2), box_mask(5, 5, 7, 7)]),
        np.stack([box_mask(1, 1, 3, 3)]),
    ]
    ids = [np.array([4, 9]), np.array([9])]
    tracks = tracks_from_ids(3, 2, ids, masks, {4: 1, 9: 2}, first_id=10)
    assert [(t.id, t.category_id) for t in tracks] == [(10, 1), (11, 2)]
    assert tracks[0].segmentations[1] is None
    np.testing.assert_array_equal(tracks[1].mask(1), box_mask(1, 1, 3, 3))


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("videos"), "no 'videos' list"),
        (lambda d: d["annotations"][0]["segmentations"].pop(), "has 2 segmentations"),
        (lambda d: d["annotations"][0].update(video_id=99), "video_id"),
        (lambda d: d["annotations"][0].update(category_id=99), "unknown category_id 99"),
        (lambda d: d["annotations"][0]["segmentations"][0].update(size=[5, 5]), r"\[5, 5\] mask"),
        (lambda d: d["videos"][0].update(times_s=[0.0]), "1 times_s for 3 frames"),
    ],
)
def test_malformed_files_are_refused(mutate: object, match: str) -> None:
    data = to_dict(dataset())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=match):
        load_youtube_vis(data)


def test_missing_or_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_youtube_vis(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        load_youtube_vis(tmp_path / "bad.json")
