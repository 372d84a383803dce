"""Video evaluation end to end: the seeded clip set (``make-set --video``), tracking metrics of
predicted tracks, and the tracker comparison on ground-truth masks (``iou`` beats ``none``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from segindex.errors import ConfigError
from segindex.eval.tracking import GivenMasksOptions, compare_trackers, evaluate_tracking
from segindex.formats.youtube_vis import VisDataset, load_youtube_vis

pytest.importorskip("av")
pytest.importorskip("skimage")

N = 5  # one clip per scenario


@pytest.fixture(scope="module")
def clip_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.eval.makeset_video import make_video_set

    out = tmp_path_factory.mktemp("clips")
    make_video_set(out, n=N, seed=3)
    return out


@pytest.fixture(scope="module")
def gt(clip_set: Path) -> VisDataset:
    return load_youtube_vis(clip_set / "youtube_vis.json")


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_clips(clip_set: Path, tmp_path: Path) -> None:
    from segindex.eval.makeset_video import make_video_set

    make_video_set(tmp_path / "again", n=N, seed=3)
    assert files(tmp_path / "again") == files(clip_set)
    make_video_set(tmp_path / "other", n=1, seed=4)
    assert (tmp_path / "other/videos/000000.mkv").read_bytes() != (
        clip_set / "videos/000000.mkv"
    ).read_bytes()


def test_clips_decode_to_the_annotated_frames(clip_set: Path, gt: VisDataset) -> None:
    from segindex.eval.makeset_video import read_clip

    info = gt.info
    assert info["scenarios"] == dict.fromkeys(info["scenarios"], 1)
    for v in gt.videos:
        decoded = list(read_clip(clip_set / v.file_name))
        assert [i for i, _, _ in decoded] == v.frame_indices
        assert [round(t, 6) for _, t, _ in decoded] == v.times_s
        assert 20 <= v.length <= 40 and decoded[0][2].shape == (v.height, v.width, 3)


def present(track: object) -> list[bool]:
    return [s is not None for s in track.segmentations]  # type: ignore[attr-defined]


def test_scenarios_have_their_ground_truth(clip_set: Path, gt: VisDataset) -> None:
    from segindex.eval.makeset_video import read_clip
    from segindex.eval.tracking import colour_vectors
    from segindex.regions import Regions

    by_scenario = dict(zip(gt.info["video_scenarios"], gt.videos, strict=True))
    # occlusion: the object behind is visible, hidden (absent) for a while, visible again
    back = gt.tracks_of(by_scenario["occlusion"].id)[0]
    p = present(back)
    first_gap = p.index(False)
    assert p[0] and not all(p) and any(p[first_gap:])
    # enter_leave: one object absent in the first frame and the last, present between
    flags = [present(t) for t in gt.tracks_of(by_scenario["enter_leave"].id)]
    assert any(not f[0] and not f[-1] and any(f) for f in flags)
    assert any(f[0] and not f[-1] for f in flags)  # the other one leaves
    # look-alikes: the same category and (in the first frame, both fully visible) the same look
    v = by_scenario["lookalike_cross"]
    a, b = gt.tracks_of(v.id)
    assert a.category_id == b.category_id
    _, _, frame = next(iter(read_clip(clip_set / v.file_name)))
    vec = colour_vectors(frame, Regions.from_masks(np.stack([a.mask(0), b.mask(0)])))
    assert float(vec[0] @ vec[1]) > 0.99


def test_ground_truth_scores_perfectly(gt: VisDataset) -> None:
    r = evaluate_tracking(gt, gt)
    s = r["summary"]
    assert (s["J"], s["F"], s["J&F"], s["HOTA"], s["IDF1"], s["MOTA"]) == pytest.approx((1,) * 6)
    assert s["ID switches"] == 0
    assert len(r["per_object"]) == len(gt.tracks)


def test_iou_tracker_beats_no_tracking(clip_set: Path, gt: VisDataset) -> None:
    r = compare_trackers(gt, clip_set, ["iou", "none"], GivenMasksOptions(drop=0.1, seed=0))
    iou, none = r["trackers"]["iou"]["summary"], r["trackers"]["none"]["summary"]
    assert iou["ID switches"] < none["ID switches"]
    assert iou["IDF1"] > none["IDF1"] and iou["IDF1"] > 0.8
    assert iou["J&F"] is not None and iou["J&F"] > none["J&F"]
    assert iou["HOTA"] > none["HOTA"]
    # sampling every 3rd frame: fewer frames, the iou tracker still links them
    r3 = compare_trackers(gt, clip_set, ["iou"], GivenMasksOptions(every=3))
    assert r3["counts"]["frames"] < r["counts"]["frames"]
    assert r3["trackers"]["iou"]["summary"]["IDF1"] > 0.8


def test_compare_refuses_bad_options(clip_set: Path, gt: VisDataset) -> None:
    with pytest.raises(ConfigError, match="drop"):
        compare_trackers(gt, clip_set, ["iou"], GivenMasksOptions(drop=1.0))
    with pytest.raises(ConfigError, match="not found"):
        compare_trackers(gt, clip_set / "nowhere", ["iou"])


def test_cli_make_set_and_tracking(clip_set: Path, tmp_path: Path) -> None:
    from segindex.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["eval", "make-set", str(tmp_path / "one"), "--video", "--n", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote 1 clips" in res.output and (tmp_path / "one/youtube_vis.json").is_file()
    gt_file = str(clip_set / "youtube_vis.json")
    out = tmp_path / "report"
    res = runner.invoke(
        main,
        ["eval", "tracking", "--gt", gt_file, "--clips", str(clip_set), "-o", str(out), "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["iou"]["IDF1"] > summary["none"]["IDF1"]
    report = (out / "report.md").read_text()
    assert "| iou |" in report and "per object (DAVIS)" in report
    res = runner.invoke(main, ["eval", "tracking", "--gt", gt_file, "--pred", gt_file])
    assert res.exit_code == 0, res.output
    assert "HOTA" in res.output and "1.0000" in res.output
    res = runner.invoke(main, ["eval", "tracking", "--gt", gt_file])
    assert res.exit_code != 0 and "exactly one of --pred" in res.output
