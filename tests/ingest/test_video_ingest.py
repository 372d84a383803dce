"""Videos through ``Index.ingest`` with the fake backends: one image row per video, frame regions
with their index and time, tracks as region rows (in FAISS) and ``segindex_tracks`` rows,
chunked commits that keep tracks whole, re-ingest / change / move, failures, delete, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from segindex import Index
from segindex.config import BackendSpec, RuntimeOptions, VideoOptions
from segindex.testing.clips import moving_squares, write_clip
from segindex.testing.fakes import FakeSegmenter, draw_scene

SHARED_VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "videos" / "bedroom.mp4"

# 20 frames at 10 fps sampled at 5 fps: frames 0, 2, ..., 18; red moves right, blue stays
VIDEO = VideoOptions(fps=5, dedup_threshold=0)
SAMPLES = [(i, i / 10) for i in range(0, 20, 2)]


def rows(idx: Index, sql: str, **params: Any) -> list[Any]:
    with idx.store.engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def tracks_by_label(idx: Index) -> dict[str, Any]:
    return {
        t.label: t
        for t in rows(idx, "select * from segindex_tracks order by id")  # one track per colour
    }


def assert_consistent(idx: Index) -> None:
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert idx.check().clean
    for t in rows(idx, "select * from segindex_tracks"):  # each track's row is current
        (row,) = rows(idx, "select * from segindex_regions where id = :i", i=t.region_id)
        assert row.kind == "track" and row.track_id == t.id
    stale = rows(
        idx,
        "select r.id from segindex_regions r left join segindex_tracks t on t.region_id = r.id "
        "where r.kind = 'track' and t.id is null",
    )
    assert stale == []


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    root = tmp_path / "clips"
    root.mkdir()
    write_clip(root / "squares.mkv", 20, fps=10)
    from PIL import Image

    Image.fromarray(draw_scene([("green", (10, 10, 60, 50))])).save(root / "photo.png")
    return root


@pytest.mark.parametrize("chunk", [30, 3])
def test_video_becomes_frames_and_tracks(make_index, clips: Path, chunk: int) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(video=VideoOptions(fps=5, dedup_threshold=0, chunk=chunk))
    seen: list[Any] = []
    report = idx.ingest(clips, progress=seen.append)
    assert (report.indexed, report.videos, report.frames, report.failed) == (2, 1, 10, 0)
    assert report.stage_seconds["track"] > 0 and seen[-1].frames == 10
    (video,) = rows(idx, "select * from segindex_images where media = 'video'")
    assert (video.status, video.width, video.height, video.rotation, video.fps) == (
        "indexed",
        64,
        48,
        0,
        10.0,
    )
    assert video.duration_s == pytest.approx(2.0, abs=0.11)
    photo = rows(idx, "select * from segindex_images where media = 'image'")
    assert len(photo) == 1 and photo[0].status == "indexed"
    # every sample: red, blue, gray segments + the whole frame, with its index and time
    frames = rows(
        idx,
        "select frame_index, time_s, kind, label, track_id from segindex_regions "
        "where image_id = :v and kind != 'track' order by frame_index, id",
        v=video.id,
    )
    assert sorted({(f.frame_index, round(f.time_s, 6)) for f in frames}) == SAMPLES
    assert len(frames) == 4 * len(SAMPLES)
    assert all((f.track_id is None) == (f.kind == "image") for f in frames)
    # one track per object, whole across chunks
    tracks = tracks_by_label(idx)
    assert sorted(tracks) == ["blue", "gray", "red"]
    for label, t in tracks.items():
        assert (t.n_frames, t.start_s, t.end_s) == (10, 0.0, pytest.approx(1.8))
        members = {f.track_id for f in frames if f.label == label}
        assert members == {t.id}
        own = rows(
            idx,
            "select id from segindex_regions where track_id = :t and kind = 'segment'",
            t=t.id,
        )
        frame_vecs = idx.store.region_vectors([f.id for f in own])
        mean = np.stack(list(frame_vecs.values())).mean(0)
        stored = idx.store.region_vectors([t.region_id])[t.region_id]
        # the mean of the float32 frame vectors, stored as float16: equal to ~1e-3
        assert np.allclose(stored, mean / np.linalg.norm(mean), atol=2e-3)
        (track_row,) = rows(idx, "select * from segindex_regions where id = :i", i=t.region_id)
        assert (track_row.label, track_row.kind, track_row.image_id) == (label, "track", video.id)
        assert track_row.frame_index in {i for i, _ in SAMPLES}
    assert_consistent(idx)
    # track rows are searchable like any region: "red" finds the red track among the best
    hits = idx.search("red", k=50, scope="all")
    assert tracks["red"].region_id in {h.region_id for h in hits}


def test_chunks_replace_track_rows_under_new_ids(make_index, clips: Path) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(video=VideoOptions(fps=5, dedup_threshold=0, chunk=3))
    added: list[np.ndarray] = []
    removed: list[np.ndarray] = []
    mirror = idx.mirror.apply

    def spy(result: Any) -> None:
        added.append(result.added_ids)
        removed.append(result.removed_ids)
        mirror(result)

    idx.mirror.apply = spy  # type: ignore[method-assign]
    idx.ingest(clips)
    all_added = np.concatenate(added)
    assert len(np.unique(all_added)) == len(all_added)  # ids never reused
    all_removed = np.concatenate(removed)
    # 4 chunks (3+3+3+1 samples), each re-summarising the 3 tracks: 3 * 3 rows replaced
    assert len(all_removed) == 9 and set(all_removed) <= set(all_added)
    assert len(rows(idx, "select id from segindex_regions where kind = 'track'")) == 3
    assert_consistent(idx)


def test_reingest_is_a_noop_changed_is_replaced_moved_is_relinked(make_index, clips: Path) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(video=VIDEO)
    idx.ingest(clips)
    ids = idx.store.region_ids()
    again = idx.ingest(clips)
    assert (again.skipped, again.indexed, again.frames) == (2, 0, 0)
    assert np.array_equal(idx.store.region_ids(), ids)
    # changed: the old frames, tracks and vectors go, new ones come
    old_tracks = {t.id for t in rows(idx, "select id from segindex_tracks")}
    write_clip(clips / "squares.mkv", 10, fps=10)
    changed = idx.ingest(clips)
    assert (changed.indexed, changed.videos, changed.frames) == (1, 1, 5)
    assert not set(idx.store.region_ids()) & set(ids[ids > max(ids[:3])])  # old video rows gone
    new_tracks = tracks_by_label(idx)
    assert not old_tracks & {t.id for t in new_tracks.values()}
    assert all(t.n_frames == 5 for t in new_tracks.values())
    assert_consistent(idx)
    # moved: re-linked by sha256, no model run, same rows
    before = idx.store.region_ids()
    shutil.move(clips / "squares.mkv", clips / "renamed.mkv")
    moved = idx.ingest(clips)
    assert (moved.relinked, moved.frames) == (1, 0)
    assert np.array_equal(idx.store.region_ids(), before)
    paths = [Path(r.path).name for r in rows(idx, "select path from segindex_images")]
    assert sorted(paths) == ["photo.png", "renamed.mkv"]


def test_corrupt_videos_are_failed_and_the_run_goes_on(make_index, clips: Path) -> None:  # type: ignore[no-untyped-def]
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 4)
    whole = write_clip(clips.parent / "whole.mp4", 20, codec="mpeg4").read_bytes()
    (clips / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    idx = make_index(video=VIDEO)
    report = idx.ingest(clips)
    assert (report.indexed, report.videos, report.failed) == (2, 1, 2)
    reasons = dict(report.failures)
    assert set(map(lambda p: Path(p).name, reasons)) == {"broken.mp4", "cut.mp4"}
    assert all("cannot decode video" in r for r in reasons.values())
    failed = rows(
        idx, "select path, status, media, error from segindex_images where status = 'failed'"
    )
    assert {(Path(f.path).name, f.media) for f in failed} == {
        ("broken.mp4", "video"),
        ("cut.mp4", "video"),
    }
    assert_consistent(idx)


class FailingAfter(FakeSegmenter):
    """Segments ``ok`` batches, then raises: a video that fails after chunks were committed."""

    name = "failing_after"

    def __init__(self, ok: int = 2, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.ok = ok

    def _segment_batch(self, images: list[np.ndarray]) -> list[Any]:
        if self.calls >= self.ok:
            raise RuntimeError("model fell over")
        return super()._segment_batch(images)


def test_a_video_failing_midway_drops_its_partial_rows(tmp_path: Path, clips: Path) -> None:
    from segindex.segment import SEGMENTERS

    SEGMENTERS.register("failing_after", FailingAfter, replace=True)
    runtime = RuntimeOptions(segment_batch=2)
    with Index.create(
        tmp_path / "f.segindex",
        segmenter="failing_after",
        segmenter_options={"ok": 3},  # 1 for the photo, then two chunks of the video
        embedder="fake",
        runtime=runtime,
        video=VideoOptions(fps=5, dedup_threshold=0, chunk=2),
    ) as idx:
        report = idx.ingest(clips)
        assert report.failed == 1 and "model fell over" in report.failures[0][1]
        (video,) = rows(idx, "select * from segindex_images where media = 'video'")
        assert video.status == "failed" and "frame" in video.error
        for table in ("segindex_tracks", "segindex_video_progress"):
            assert rows(idx, f"select * from {table}") == []
        assert rows(idx, "select id from segindex_regions where image_id = :v", v=video.id) == []
        assert_consistent(idx)


def test_deleting_a_video_removes_its_frames_tracks_and_vectors(make_index, clips: Path) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(video=VIDEO)
    idx.ingest(clips)
    (video,) = rows(idx, "select id from segindex_images where media = 'video'")
    idx.delete_images([video.id])
    assert rows(idx, "select * from segindex_tracks") == []
    kinds = {r.kind for r in rows(idx, "select kind from segindex_regions")}
    assert kinds == {"segment", "image"}  # the photo's
    assert_consistent(idx)


def test_tracker_none_makes_every_region_its_own_track(make_index, clips: Path) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(video=VideoOptions(fps=5, dedup_threshold=0, tracker=BackendSpec("none")))
    idx.ingest(clips)
    assert len(rows(idx, "select id from segindex_tracks")) == 3 * len(SAMPLES)
    assert_consistent(idx)


def test_cli_ingest_video_options_are_stored_and_frames_per_second_shown(
    tmp_path: Path, clips: Path
) -> None:
    from segindex.cli import main

    index = tmp_path / "cli.segindex"
    args = [
        "ingest",
        str(clips),
        "--index",
        str(index),
        "--segmenter",
        "fake",
        "--embedder",
        "fake",
    ]
    r = CliRunner().invoke(
        main,
        [*args, "--video-fps", "2.5", "--video-dedup", "0", "--max-video-frames", "3",
         "--tracker", "iou", "--tracker-option", "max_missed=2"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "indexed 1 images and 1 videos (3 frames," in r.output and "frames/s" in r.output
    with Index.open(index) as idx:
        assert idx.settings.video == VideoOptions(
            fps=2.5, dedup_threshold=0, max_frames=3, tracker=BackendSpec("iou", {"max_missed": 2})
        )
    r = CliRunner().invoke(main, [*args, "--keyframes-only", "--max-video-frames", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["skipped"] == 2
    with Index.open(index) as idx:
        v = idx.settings.video
        assert (v.keyframes_only, v.max_frames, v.fps, v.tracker.options) == (
            True,
            None,
            2.5,
            {"max_missed": 2},
        )
    r = CliRunner().invoke(main, [*args, "--tracker", "no-such-tracker"])
    assert r.exit_code != 0 and "unknown tracker 'no-such-tracker'" in r.output
    r = CliRunner().invoke(main, [*args, "--tracker-option", "no_such_option=1"])
    assert r.exit_code != 0 and "no_such_option" in r.output


@pytest.mark.skipif(not SHARED_VIDEO.exists(), reason="shared/videos/bedroom.mp4 absent")
def test_a_real_shared_video_ingests_with_fakes(make_index) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(video=VideoOptions(fps=1, max_frames=3, chunk=2))
    report = idx.ingest(SHARED_VIDEO)
    assert (report.indexed, report.failed, report.frames) == (1, 0, 3)
    (video,) = rows(idx, "select * from segindex_images")
    assert video.media == "video" and video.duration_s > 5 and video.width * video.height > 0
    times = sorted({r.time_s for r in rows(idx, "select time_s from segindex_regions")})
    assert (
        len(times) == 3
        and times[0] < 1.0
        and all(b - a >= 0.99 for a, b in zip(times[:-1], times[1:], strict=True))
    )
    assert rows(idx, "select id from segindex_tracks") != []
    assert_consistent(idx)


def test_moving_squares_is_what_the_tests_assume() -> None:
    assert (moving_squares(0)[4:16, 2:14] == (220, 30, 30)).all()


def test_a_tracker_choking_on_a_video_fails_that_video_only(make_index, clips: Path) -> None:  # type: ignore[no-untyped-def]
    from segindex.track import TRACKERS
    from segindex.track.none import NoTracker

    class Exploding(NoTracker):
        name = "exploding"

        def _update(self, *args: Any) -> np.ndarray:
            raise ValueError("lost track of everything")

    TRACKERS.register("exploding", Exploding, replace=True)
    try:
        idx = make_index(video=VideoOptions(fps=5, tracker=BackendSpec("exploding")))
        report = idx.ingest(clips)
    finally:
        TRACKERS.unregister("exploding")
    assert (report.indexed, report.failed) == (1, 1)  # the photo, then the video failed
    assert "ValueError: lost track of everything" in report.failures[0][1]
    assert rows(idx, "select * from segindex_tracks") == []
    assert_consistent(idx)


@pytest.mark.parametrize("chunk", [30, 1])
def test_near_duplicates_keep_the_tracks_time_spans(make_index, tmp_path: Path, chunk: int) -> None:  # type: ignore[no-untyped-def]
    def draw(i: int) -> np.ndarray:  # red all along; blue from frame 10 (1.0 s); 20 frames
        shapes = [("blue", (40, 20, 60, 44))] if i >= 10 else []
        return draw_scene([("red", (4, 4, 20, 20)), *shapes], size=(48, 64))

    clips = tmp_path / "static"
    clips.mkdir()
    write_clip(clips / "static.mkv", 20, fps=10, draw=draw)
    spans = {}
    for dedup in (0.0, 2.0):
        idx = make_index(
            f"d{dedup}-{chunk}", video=VideoOptions(fps=10, dedup_threshold=dedup, chunk=chunk)
        )
        report = idx.ingest(clips)
        assert report.frames == (20 if dedup == 0 else 2)  # a static shot costs no model time
        spans[dedup] = {
            t.label: (t.start_s, round(t.end_s, 6)) for t in tracks_by_label(idx).values()
        }
    # the samples dropped as near-duplicates still count as the objects being on screen
    assert spans[2.0] == spans[0.0]
    assert spans[0.0]["red"] == (0.0, 1.9) and spans[0.0]["blue"] == (1.0, 1.9)
