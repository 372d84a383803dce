"""Tracking measured through the real ingest, apart from segmentation: generated clips indexed
with their ground-truth masks (the ``youtube_vis`` given-masks segmenter), each tracker by
name, the tracks exported as YouTube-VIS and scored against the ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from segindex import Index
from segindex.config import BackendSpec, VideoOptions
from segindex.errors import ConfigError
from segindex.eval.tracking import align_to_gt, evaluate_tracking
from segindex.formats.youtube_vis import load_youtube_vis

pytest.importorskip("av")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def clip_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.eval.makeset_video import make_video_set

    out = tmp_path_factory.mktemp("clips")
    make_video_set(out, n=5, seed=3)
    return out


def ingest(clip_set: Path, where: Path, tracker: str) -> Index:
    idx = Index.create(
        where,
        segmenter="youtube_vis",
        segmenter_options={
            "annotations": str(clip_set / "youtube_vis.json"),
            "videos_root": str(clip_set),
        },  # fmt: skip
        embedder="fake",
        video=VideoOptions(fps=5, dedup_threshold=0, tracker=BackendSpec(tracker)),
    )
    report = idx.ingest(clip_set / "videos")
    assert not report.failed, report.failed
    return idx


def test_ingest_with_given_masks_iou_beats_none(clip_set: Path, tmp_path: Path) -> None:
    gt = load_youtube_vis(clip_set / "youtube_vis.json")
    scores = {}
    for tracker in ("iou", "none"):
        with ingest(clip_set, tmp_path / f"{tracker}.segindex", tracker) as idx:
            exported = idx.export_youtube_vis()
        pred, sampled_gt = align_to_gt(load_youtube_vis(exported), gt, clip_set)
        # fps 5 of 10 fps clips: every other frame, the same frames for prediction and gt
        assert [v.frame_indices for v in sampled_gt.videos] == [
            v.frame_indices[::2] for v in gt.videos
        ]
        scores[tracker] = evaluate_tracking(pred, sampled_gt)["summary"]
    iou, none = scores["iou"], scores["none"]
    # exact masks in every sampled frame (but slivers below the crop policy's minimum area):
    # detection is the same and near perfect, only association differs
    assert iou["DetA"] == pytest.approx(none["DetA"]) and iou["DetA"] > 0.98
    assert iou["ID switches"] < none["ID switches"]
    assert iou["IDF1"] > 0.9 > none["IDF1"]
    assert iou["J&F"] > none["J&F"]


def test_cli_export_then_eval_tracking(clip_set: Path, tmp_path: Path) -> None:
    from segindex.cli import main

    ingest(clip_set, tmp_path / "x.segindex", "iou").close()
    runner = CliRunner()
    exported = tmp_path / "tracks.json"
    res = runner.invoke(main, ["export", "--index", str(tmp_path / "x.segindex"), "--format",
                               "youtube-vis", "-o", str(exported)])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["eval", "tracking", "--pred", str(exported), "--gt",
                               str(clip_set / "youtube_vis.json"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["prediction"]["IDF1"] > 0.9


def test_given_video_masks_refuses_unknown_frames(clip_set: Path) -> None:
    from segindex.segment import SEGMENTERS

    seg = SEGMENTERS.build(
        "youtube_vis", annotations=str(clip_set / "youtube_vis.json"), videos_root=str(clip_set)
    )
    image = np.zeros((120, 160, 3), np.uint8)
    video = str(clip_set / "videos" / "000000.mkv")
    regions = seg.segment([image], paths=[f"{video}#frame=0"])[0]
    gt = load_youtube_vis(clip_set / "youtube_vis.json")
    assert len(regions) == sum(t.segmentations[0] is not None for t in gt.tracks_of(1))
    with pytest.raises(LookupError, match="not annotated"):
        seg.segment([image], paths=[f"{video}#frame=999"])
    with pytest.raises(LookupError, match="not a video frame"):
        seg.segment([image], paths=[video])
    with pytest.raises(LookupError, match="no video"):
        seg.segment([image], paths=["/elsewhere/other.mkv#frame=0"])
    with pytest.raises(ConfigError, match="not found"):
        SEGMENTERS.build("youtube_vis", annotations=str(clip_set / "missing.json"))
