"""The trackers: the ``iou`` tracker keeps identities through motion, crossings and short
occlusions; ``none`` never links; states survive a JSON round trip; bad input is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segindex.errors import ConfigError, UnknownBackendError
from segindex.regions import Regions
from segindex.track import TRACKERS
from segindex.track.iou import IouTracker, box_motion, mask_ious

H, W = 60, 120


def disc(cx: float, cy: float, r: float = 6.0) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2


def frame(objects: list[tuple[float, float]], labels: list[str] | None = None) -> Regions:
    masks = np.stack([disc(x, y) for x, y in objects]) if objects else np.zeros((0, H, W), bool)
    return Regions.from_masks(masks, labels=labels)


def same_vectors(n: int, dim: int = 4) -> np.ndarray:
    """Look-alike objects: every region has the same unit vector."""
    v = np.zeros((n, dim), np.float32)
    v[:, 0] = 1.0
    return v


def run(tracker: object, frames: list[Regions], fps: float = 10.0) -> list[np.ndarray]:
    state = tracker.start()  # type: ignore[attr-defined]
    return [
        tracker.update(state, i, i / fps, r, same_vectors(len(r)))  # type: ignore[attr-defined]
        for i, r in enumerate(frames)
    ]


def crossing(n: int = 14) -> tuple[list[Regions], list[list[int]]]:
    """Two identical discs crossing (one going right, one left); region order shuffled per frame.
    Returns the frames and, per frame, which object (0 = rightward) each region is."""
    rng = np.random.default_rng(0)
    frames, who = [], []
    for i in range(n):
        pos = [(15 + 7 * i, 28.0), (105 - 7 * i, 32.0)]
        order = list(rng.permutation(2))
        frames.append(frame([pos[k] for k in order]))
        who.append(order)
    return frames, who


def test_registry_lists_builtins_and_refuses_unknown() -> None:
    assert {"iou", "none"} <= set(TRACKERS.names())
    assert isinstance(TRACKERS.build("iou", max_missed=2), IouTracker)
    with pytest.raises(UnknownBackendError, match="registered trackers: .*iou"):
        TRACKERS.build("nope")


def test_backends_command_lists_trackers() -> None:
    from click.testing import CliRunner

    from segindex.cli import main

    res = CliRunner().invoke(main, ["backends"])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("trackers:"))
    assert {"iou", "none"} <= {n.strip() for n in line.split(":", 1)[1].split(",")}


def test_iou_keeps_look_alikes_apart_through_a_crossing_none_never_links() -> None:
    frames, who = crossing()
    ids = run(TRACKERS.build("iou"), frames)
    track_of = [
        {o: int(i) for o, i in zip(w, f, strict=True)} for w, f in zip(who, ids, strict=True)
    ]
    assert {t[0] for t in track_of} == {track_of[0][0]}
    assert {t[1] for t in track_of} == {track_of[0][1]}
    assert track_of[0][0] != track_of[0][1]
    plain = run(TRACKERS.build("none"), frames)
    flat = np.concatenate(plain)
    assert len(np.unique(flat)) == len(flat) == 2 * len(frames)


def test_hidden_object_stays_one_track_within_max_missed() -> None:
    # One disc moving right, absent (hidden) in samples 4-6, back where its motion predicts.
    frames = [frame([] if 4 <= i <= 6 else [(10 + 8 * i, 30.0)]) for i in range(11)]
    ids = run(IouTracker(max_missed=3), frames)
    seen = {int(x) for f in ids for x in f}
    assert seen == {0}
    ids = run(IouTracker(max_missed=2), frames)  # gap of 3 samples: a new track starts
    assert [int(f[0]) for f in ids if len(f)] == [0] * 4 + [1] * 4


def test_far_jump_and_label_weight_gate_matches() -> None:
    near = [frame([(30, 30)]), frame([(32, 30)])]
    far = [frame([(10, 30)]), frame([(100, 30)])]
    assert [int(f[0]) for f in run(IouTracker(), near)] == [0, 0]
    assert [int(f[0]) for f in run(IouTracker(), far)] == [0, 1]
    relabelled = [frame([(30, 30)], ["cat"]), frame([(30, 30)], ["dog"])]
    assert [int(f[0]) for f in run(IouTracker(), relabelled)] == [0, 0]
    strict = IouTracker(label_weight=1.0)
    assert [int(f[0]) for f in run(strict, relabelled)] == [0, 1]


def test_a_good_match_is_not_traded_for_two_rejected_ones() -> None:
    # Track 0 at x=30 ("a"), track 1 at x=55 ("b"). Next frame: "a" again at x=30 and a new "c"
    # at x=10, too far from track 1 to be allowed. Pairing 0-c and 1-a costs less than 0-a plus
    # a disallowed pair, but both would be rejected: the gate must apply before solving.
    t = IouTracker()
    state = t.start()
    first = t.update(state, 0, 0.0, frame([(30, 30), (55, 30)], ["a", "b"]), same_vectors(2))
    ids = t.update(state, 1, 0.1, frame([(10, 30), (30, 30)], ["c", "a"]), same_vectors(2))
    assert int(ids[1]) == int(first[0])
    assert int(ids[0]) not in first.tolist()


def test_cost_matrix_terms() -> None:
    t = IouTracker(iou_weight=0.5, vector_weight=0.3, label_weight=0.2, max_cost=2.0)
    state = t.start()
    t.update(state, 0, 0.0, frame([(30, 30)], ["cat"]), same_vectors(1))
    regions = frame([(30, 30), (36, 30)], ["cat", "dog"])
    vectors = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32)
    cost = t.cost_matrix(state.tracks, 0.1, regions, vectors)
    a = disc(30, 30)
    b = disc(36, 30)
    iou_b = (a & b).sum() / (a | b).sum()
    np.testing.assert_allclose(cost[0], [0.0, 0.5 * (1 - iou_b) + 0.3 * 0.5 + 0.2])
    t.max_cost = 0.6  # the gate: a pair at or above it is disallowed
    gated = t.cost_matrix(state.tracks, 0.1, regions, vectors)
    np.testing.assert_allclose(gated[0], [0.0, 1e6])


@pytest.mark.parametrize("name", ["iou", "none"])
def test_dump_load_resumes_exactly(name: str) -> None:
    frames, _ = crossing()
    tracker = TRACKERS.build(name)
    whole = run(tracker, frames)
    state = tracker.start()
    for i, r in enumerate(frames[:7]):
        tracker.update(state, i, i / 10.0, r, same_vectors(len(r)))
    dumped = json.loads(json.dumps(tracker.dump(state)))
    resumed = tracker.load(dumped)
    assert tracker.dump(resumed) == dumped
    for i, r in enumerate(frames[7:], start=7):
        ids = tracker.update(resumed, i, i / 10.0, r, same_vectors(len(r)))
        np.testing.assert_array_equal(ids, whole[i])
    with pytest.raises(ValueError, match="frame_index must increase"):
        tracker.update(resumed, 3, 99.0, frames[0], same_vectors(2))


def test_state_of_another_tracker_is_refused() -> None:
    none, iou = TRACKERS.build("none"), TRACKERS.build("iou")
    with pytest.raises(ConfigError, match="expected 'iou'"):
        iou.load(none.dump(none.start()))
    bad = iou.dump(iou.start()) | {"tracks": [{"id": 1}]}
    with pytest.raises(ConfigError, match="malformed"):
        iou.load(bad)


@pytest.mark.parametrize(
    ("vectors", "frame_index", "time_s", "match"),
    [
        (np.ones((2, 4), np.float32), 0, 0.0, "vectors must be"),
        (np.ones((1, 4), np.float64), 0, 0.0, "float32"),
        (np.full((1, 4), np.nan, np.float32), 0, 0.0, "finite"),
        (np.ones((1, 4), np.float32), -1, 0.0, "frame_index >= 0"),
        (np.ones((1, 4), np.float32), 1.5, 0.0, "must be an int"),
        (np.ones((1, 4), np.float32), 0, float("inf"), "finite time_s"),
    ],
)
def test_bad_update_input(vectors: np.ndarray, frame_index: int, time_s: float, match: str) -> None:
    t = IouTracker()
    with pytest.raises(ValueError, match=match):
        t.update(t.start(), frame_index, time_s, frame([(30, 30)]), vectors)


def test_frame_size_and_time_order_checked() -> None:
    t = IouTracker()
    state = t.start()
    t.update(state, 0, 1.0, frame([(30, 30)]), same_vectors(1))
    with pytest.raises(ValueError, match="time_s went backwards"):
        t.update(state, 1, 0.5, frame([(30, 30)]), same_vectors(1))
    small = Regions.from_masks(np.ones((1, 10, 10), bool))
    with pytest.raises(ValueError, match="frame size changed"):
        t.update(state, 2, 2.0, small, same_vectors(1))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_missed": -1}, "max_missed"),
        ({"max_missed": 1.5}, "max_missed"),
        ({"iou_weight": -0.1}, "iou_weight"),
        ({"max_cost": "high"}, "max_cost"),
        ({"velocity_smoothing": 1.0}, "velocity_smoothing"),
    ],
)
def test_bad_options(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IouTracker(**options)  # type: ignore[arg-type]


def test_mask_ious_of_a_shifted_crop() -> None:
    crop = np.ones((2, 2), bool)  # a 2x2 square
    other = np.zeros((2, 5, 6), bool)
    other[0, 1:3, 2:4] = True
    other[1, 4:5, 5:6] = True
    boxes = np.array([[2, 1, 4, 3], [5, 4, 6, 5]])
    areas = other.sum((1, 2))
    full = np.zeros((5, 6), bool)
    full[1:3, 1:3] = True
    expect = [(full & o).sum() / (full | o).sum() for o in other]  # placed at (1, 1)
    np.testing.assert_allclose(mask_ious(crop, (1, 1), other, boxes, areas), expect)
    np.testing.assert_allclose(expect, [2 / 6, 0.0])
    # moved to (2, 1): on top of the first mask
    np.testing.assert_allclose(mask_ious(crop, (2, 1), other, boxes, areas), [1.0, 0.0])
    # half outside the frame on the right: only the visible column counts (1 px in common)
    np.testing.assert_allclose(mask_ious(crop, (5, 3), other, boxes, areas), [0.0, 1 / 2])
    assert not mask_ious(crop, (-5, 0), other, boxes, areas).any()


@pytest.mark.parametrize(
    ("before", "after", "motion"),
    [
        ([10, 0, 20, 10], [13, 2, 23, 12], [3, 2]),  # plain shift
        ([10, 0, 20, 10], [14, 0, 20, 10], [4, 0]),  # sliding behind something: right edge stops
        ([0, 0, 5, 10], [0, 0, 9, 10], [4, 0]),  # entering at the left border
        ([10, 10, 20, 20], [8, 8, 22, 22], [0, 0]),  # growing about its centre
    ],
)
def test_box_motion(before: list[int], after: list[int], motion: list[int]) -> None:
    got = box_motion(np.array(before, np.float32), np.array(after, np.float32))
    np.testing.assert_allclose(got, motion)


def test_a_look_alike_that_does_not_overlap_never_continues_a_track() -> None:
    # the object vanishes and an identical-looking one appears 20 px away (within max_distance,
    # same vector and label): with no overlap of the shifted mask it is a new object, unless
    # min_iou is 0, where appearance alone links it
    frames = [frame([(30.0, 30.0)]), frame([(52.0, 30.0)])]
    strict = run(IouTracker(), frames)
    assert strict[0][0] != strict[1][0]
    loose = run(IouTracker(min_iou=0.0), frames)
    assert loose[0][0] == loose[1][0]
    # a small shift that still overlaps stays one track under the default
    moved = run(IouTracker(), [frame([(30.0, 30.0)]), frame([(34.0, 30.0)])])
    assert moved[0][0] == moved[1][0]
    with pytest.raises(ConfigError, match="min_iou"):
        IouTracker(min_iou=1.5)
