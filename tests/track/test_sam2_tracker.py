"""The propagating trackers: exact matching/ending/cap/backfill logic with a deterministic fake
propagator registered through the real registry, and the real ``sam2`` path on a tiny config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from segindex.errors import ConfigError, ModelLoadError
from segindex.regions import Regions
from segindex.testing.fake_propagator import FakeSam2Tracker
from segindex.track import TRACKERS

H, W = 48, 64
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture
def fake() -> Iterator[str]:
    TRACKERS.register("fake_sam2", FakeSam2Tracker, replace=True)
    yield "fake_sam2"
    TRACKERS.unregister("fake_sam2")


def frame(*objects: tuple[tuple[int, int, int], int, int]) -> np.ndarray:
    """A black frame with 8x8 squares of flat colour at (x, y)."""
    img = np.zeros((H, W, 3), np.uint8)
    for colour, x, y in objects:
        img[y : y + 8, x : x + 8] = colour
    return img


def regions_of(img: np.ndarray, colours: list[tuple[int, int, int]]) -> Regions:
    masks = np.stack([(img == np.array(c, np.uint8)).all(axis=2) for c in colours])
    return Regions.from_masks(masks.reshape(len(colours), H, W))


def run(tracker, frames, sampled, segment) -> tuple[dict[int, np.ndarray], object]:
    """Observe every frame; at ``sampled`` indices update with ``segment(i, img)`` regions."""
    state = tracker.start()
    ids = {}
    for i, img in enumerate(frames):
        tracker.observe(state, i, i / 10, img)
        if i in sampled:
            r = segment(i, img)
            ids[i] = tracker.update(state, i, i / 10, r, np.ones((len(r), 2), np.float32))
    return ids, state


def moving_clip() -> list[np.ndarray]:
    """Red moves right over frames 0-19; green is there in frames 3-12 only; blue from 14."""
    out = []
    for i in range(20):
        objs = [(RED, 2 + 2 * i, 4)]
        if 3 <= i <= 12:
            objs.append((GREEN, 30, 30))
        if i >= 14:
            objs.append((BLUE, 50, 36))
        out.append(frame(*objs))
    return out


def present(img: np.ndarray) -> list[tuple[int, int, int]]:
    return [c for c in (RED, GREEN, BLUE) if (img == np.array(c, np.uint8)).all(axis=2).any()]


def test_registered_fake_links_across_samples_and_spans_are_exact(fake: str) -> None:
    tracker = TRACKERS.build(fake, max_missed=2)
    assert tracker.needs_frames
    clip = moving_clip()
    ids, state = run(
        tracker, clip, {0, 5, 10, 15, 19}, lambda i, img: regions_of(img, present(img))
    )
    red = {int(ids[i][0]) for i in ids}
    assert red == {0}, "red keeps one id while it moves 10 px between samples"
    assert ids[5].tolist() == [0, 1] and ids[10].tolist() == [0, 1]
    assert ids[15].tolist() == [0, 2] and ids[19].tolist() == [0, 2]
    spans = tracker.take_spans(state)
    # green seen first at sample 5 but present from frame 3 (backfill); gone after frame 12
    assert spans[1] == (0.3, 1.2)
    assert spans[2] == (1.4, 1.9)  # blue appears at frame 14, first sampled at 15
    assert spans[0] == (0.0, 1.9)
    assert 1 not in state.objects, "green ended after max_missed absent frames"
    assert tracker.take_spans(state) == {}, "spans are handed out once"


def test_match_iou_gates_a_moved_region(fake: str) -> None:
    clip = moving_clip()

    def shifted(i: int, img: np.ndarray) -> Regions:  # the segmenter's red is 3 px off
        r = regions_of(img, [RED])
        return Regions.from_masks(np.roll(r.masks, 3, axis=2))

    loose, _ = run(TRACKERS.build(fake, match_iou=0.3), clip, {0, 4}, shifted)
    strict, _ = run(TRACKERS.build(fake, match_iou=0.8), clip, {0, 4}, shifted)
    assert loose[4].tolist() == [0]  # IoU 5/11 = 0.45 >= 0.3: same object
    assert strict[4].tolist() == [1]  # < 0.8: a new object


def test_absent_object_ends_after_max_missed_and_returns_as_new(fake: str) -> None:
    # red hidden in frames 3-5 (3 frames); max_missed 3 ends it, 4 keeps it
    clip = [frame((RED, 10, 10)) if not 3 <= i <= 5 else frame() for i in range(8)]
    seg = lambda i, img: regions_of(img, present(img))  # noqa: E731
    short, s1 = run(TRACKERS.build(fake, max_missed=3), clip, {0, 7}, seg)
    long, s2 = run(TRACKERS.build(fake, max_missed=4), clip, {0, 7}, seg)
    assert short[7].tolist() == [1] and long[7].tolist() == [0]
    # the first red ends at frame 2; the second starts at frame 6 (backfill from sample 7)
    assert FakeSam2Tracker().take_spans(s1) == {0: (0.0, 0.2), 1: (0.6, 0.7)}
    assert FakeSam2Tracker().take_spans(s2) == {0: (0.0, 0.7)}


def test_cap_drops_lowest_scoring_and_records_it(fake: str) -> None:
    tracker = TRACKERS.build(fake, max_objects=2)
    img = frame((RED, 2, 2), (GREEN, 20, 2), (BLUE, 40, 2))
    state = tracker.start()
    tracker.observe(state, 0, 0.0, img)
    r = regions_of(img, [RED, GREEN, BLUE])
    r = Regions.from_masks(r.masks, scores=np.array([0.9, 0.2, 0.8], np.float32))
    ids = tracker.update(state, 0, 0.0, r, np.ones((3, 2), np.float32))
    assert ids.tolist() == [0, 1, 2]
    assert sorted(state.objects) == [0, 2]
    assert state.n_dropped == 1
    assert state.dropped == [{"id": 1, "frame_index": 0, "score": pytest.approx(0.2)}]
    assert tracker.dump(state)["n_dropped"] == 1


def test_update_needs_the_frame_observed_first(fake: str) -> None:
    tracker = TRACKERS.build(fake)
    state = tracker.start()
    tracker.observe(state, 0, 0.0, frame((RED, 0, 0)))
    r = regions_of(frame((RED, 0, 0)), [RED])
    with pytest.raises(ValueError, match="observe"):
        tracker.update(state, 1, 0.1, r, np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="increase"):
        tracker.observe(state, 0, 0.0, frame())
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        tracker.observe(state, 1, 0.1, np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize(
    "options",
    [{"match_iou": 1.5}, {"max_missed": 0}, {"max_objects": "3"}, {"frame_fps": 0}],
)
def test_bad_options_are_config_errors(fake: str, options: dict) -> None:
    with pytest.raises(ConfigError):
        TRACKERS.build(fake, **options)


def test_dump_load_resumes_with_the_same_ids(fake: str) -> None:
    clip = moving_clip()
    seg = lambda i, img: regions_of(img, present(img))  # noqa: E731
    whole, _ = run(TRACKERS.build(fake), clip, {0, 5, 10}, seg)
    tracker = TRACKERS.build(fake)
    state = tracker.start()
    for i in range(6):
        tracker.observe(state, i, i / 10, clip[i])
        if i in (0, 5):
            r = seg(i, clip[i])
            tracker.update(state, i, i / 10, r, np.ones((len(r), 2), np.float32))
    import json

    again = tracker.load(json.loads(json.dumps(tracker.dump(state))))
    for i in range(6, 11):
        tracker.observe(again, i, i / 10, clip[i])
    r = seg(10, clip[10])
    ids = tracker.update(again, 10, 1.0, r, np.ones((len(r), 2), np.float32))
    assert ids.tolist() == whole[10].tolist()


# -- through the real video ingest ------------------------------------------------------------


def green_from_3_to_12(i: int) -> np.ndarray:
    """20 frames at 10 fps: red all along, green only in frames 3-12 (0.3 s to 1.2 s)."""
    from segindex.testing.fakes import draw_scene

    shapes = [("green", (36, 24, 52, 40))] if 3 <= i <= 12 else []
    return draw_scene([("red", (4, 4, 20, 20)), *shapes], size=(48, 64))


@pytest.mark.parametrize("chunk", [30, 1])
def test_ingest_spans_are_exact_to_the_frame(
    make_index, tmp_path: Path, fake: str, chunk: int
) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("av")
    from sqlalchemy import text

    from segindex.config import BackendSpec, VideoOptions
    from segindex.testing.clips import write_clip

    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "g.mkv", 20, fps=10, draw=green_from_3_to_12)
    spans = {}
    for tracker in ("iou", fake):
        idx = make_index(
            f"{tracker}-{chunk}.segindex",
            video=VideoOptions(fps=2, dedup_threshold=0, chunk=chunk, tracker=BackendSpec(tracker)),
        )
        report = idx.ingest(clips)
        assert not report.failed and report.frames == 4  # samples: frames 0, 5, 10, 15
        with idx.store.engine.connect() as conn:
            got = conn.execute(text("select label, start_s, end_s, n_frames from segindex_tracks"))
            spans[tracker] = {r.label: (r.start_s, round(r.end_s, 6), r.n_frames) for r in got}
    # the samples alone: green seen at 0.5 s and 1.0 s
    assert spans["iou"]["green"] == (0.5, 1.0, 2)
    # propagated through every frame: green from frame 3 (backfilled) to frame 12
    assert spans[fake]["green"] == (0.3, 1.2, 2)
    assert spans[fake]["red"] == (0.0, 1.9, 4)


# -- the real SAM 2 path, tiny random weights ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from segindex.testing.tiny_sam2 import save_tiny_sam2_video

    return save_tiny_sam2_video(tmp_path_factory.mktemp("sam2"))


def test_sam2_tracker_runs_tiny_model_from_a_local_dir(tiny_sam2: Path) -> None:
    tracker = TRACKERS.build("sam2", model=str(tiny_sam2), device="cpu", max_missed=50)
    assert tracker.describe()["model"] == str(tiny_sam2)
    clip = moving_clip()[:4]
    state = tracker.start()
    tracker.observe(state, 0, 0.0, clip[0])
    r = regions_of(clip[0], [RED])
    ids = tracker.update(state, 0, 0.0, r, np.ones((1, 2), np.float32))
    assert ids.dtype == np.int64 and ids.tolist() == [0]
    for i in (1, 2, 3):
        tracker.observe(state, i, i / 10, clip[i])
        p = state.current.propagated
        assert p.ids.tolist() == [0]
        assert p.masks.shape == (1, H, W) and p.masks.dtype == bool
        assert p.scores.dtype == np.float32 and 0 <= float(p.scores[0]) <= 1
    session = state.session.inner
    assert len(session.processed_frames) == 1, "earlier frames are forgotten (streaming)"
    r = regions_of(clip[3], [RED, GREEN])
    ids = tracker.update(state, 3, 0.3, r, np.ones((2, 2), np.float32))
    assert len(set(ids.tolist())) == 2
    before = list(session.obj_ids)  # random weights: red may or may not have kept id 0
    assert int(ids[1]) in before
    tracker.propagator.drop(state.session, [int(ids[1])])
    assert session.obj_ids == [o for o in before if o != int(ids[1])]
    assert len(session.output_dict_per_obj) == len(before) - 1
    tracker.observe(state, 4, 0.4, moving_clip()[4])  # the rest still propagate
    assert state.current.propagated.ids.tolist() == session.obj_ids
    # objects propagated again at a seeded frame keep finite scores (no non-streaming rerun)
    assert np.isfinite(state.current.propagated.scores).all()
    for i in range(5, 12):  # memory stays bounded: SAM 2 reads at most `_keep` steps back
        tracker.observe(state, i, i / 10, moving_clip()[i])
    keep = tracker.propagator._keep
    assert len(session.processed_frames) == 1
    for out in session.output_dict_per_obj.values():
        assert len(out["non_cond_frame_outputs"]) <= keep + 1  # the current step and `keep`
        assert len(out["cond_frame_outputs"]) <= tracker.propagator.max_cond_frames
    assert tracker.load(tracker.dump(state)).objects.keys() == state.objects.keys()


def test_sam2_missing_model_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        TRACKERS.build("sam2", model=str(tmp_path / "nothing"), device="cpu")


def test_eval_tracking_cli_runs_sam2_beside_iou_and_none(tiny_sam2: Path, tmp_path: Path) -> None:
    """Random weights: the numbers only show the harness runs the three trackers."""
    pytest.importorskip("av")
    pytest.importorskip("skimage")
    import json

    from click.testing import CliRunner

    from segindex.cli import main
    from segindex.eval.makeset_video import make_video_set

    make_video_set(tmp_path / "set", n=1, seed=1, size=(48, 64))
    gt = str(tmp_path / "set" / "youtube_vis.json")
    args = ["eval", "tracking", "--gt", gt, "--clips", str(tmp_path / "set"), "--json",
            "--every", "10",
            "--trackers", "sam2,iou,none", "--tracker-option", f"sam2:model={tiny_sam2}",
            "--tracker-option", "sam2:device=cpu", "--tracker-option", "sam2:frame_fps=2",
            "--tracker-option", "sam2:max_objects=2", "--tracker-option", "sam2:max_missed=2",
            ]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert sorted(summary) == ["iou", "none", "sam2"]
    assert all(0 <= summary[n]["J&F"] <= 1 for n in summary)
    res = CliRunner().invoke(main, [*args[:-2], "--tracker-option", "dino:x=1"])
    assert res.exit_code != 0 and "NAME:KEY=VALUE" in res.output


def test_cli_ingest_with_the_tiny_sam2_tracker(tiny_sam2: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    from click.testing import CliRunner
    from sqlalchemy import text

    from segindex import Index
    from segindex.cli import main
    from segindex.testing.clips import write_clip

    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "g.mkv", 6, fps=10, draw=green_from_3_to_12)
    where = tmp_path / "v.segindex"
    res = CliRunner().invoke(
        main,
        ["ingest", str(clips), "--index", str(where), "--segmenter", "fake", "--embedder", "fake",
         "--video-fps", "5", "--video-dedup", "0", "--tracker", "sam2",
         "--tracker-option", f"model={tiny_sam2}", "--tracker-option", "device=cpu",
         "--tracker-option", "max_objects=2", "--tracker-option", "backfill=false"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    with Index.open(where) as idx:
        assert idx.info()["videos"]["tracks"] >= 2
        with idx.store.engine.connect() as conn:
            rows = conn.execute(text("select start_s, end_s from segindex_tracks")).all()
        assert all(0.0 <= r.start_s <= r.end_s <= 0.5 for r in rows)


def test_build_tracker_passes_the_ingest_device_to_model_trackers_only(tiny_sam2: Path) -> None:
    from segindex.errors import ConfigError
    from segindex.track import build_tracker

    assert build_tracker("iou", {}, device="cpu").name == "iou"  # no device parameter: none given
    sam2 = build_tracker("sam2", {"model": str(tiny_sam2)}, device="cpu", precision="bf16")
    assert (sam2.propagator.device, sam2.propagator.precision) == ("cpu", "bf16")
    own = build_tracker("sam2", {"model": str(tiny_sam2), "precision": "fp32"}, device="cpu")
    assert own.propagator.precision == "fp32", "the tracker's own option wins"
    with pytest.raises(ConfigError, match="fp16"):
        build_tracker("sam2", {"model": str(tiny_sam2)}, device="cpu", precision="fp16")
