"""Tracking metrics: hand-worked cases, and agreement with the TrackEval reference code on
random sequences (skipped where ``trackeval`` is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from segindex.eval.tracking_metrics import Frames, clear, combine, hota, identity


def seq(frames: list[tuple[list[int], list[int], list[list[float]]]], n_gt: int, n_pred: int):
    return Frames(
        [np.array(g, np.int64) for g, _, _ in frames],
        [np.array(p, np.int64) for _, p, _ in frames],
        [np.array(s, float).reshape(len(g), len(p)) for g, p, s in frames],
        n_gt,
        n_pred,
    )


# Two objects A (0), B (1). Prediction 0 follows A, prediction 1 follows B, then at frame 2
# prediction 1 jumps to A and a new prediction 2 takes B: two ID switches.
SWITCHES = seq(
    [
        ([0, 1], [0, 1], [[0.9, 0], [0, 0.8]]),
        ([0, 1], [0, 1], [[0.9, 0], [0, 0.8]]),
        ([0, 1], [1, 2], [[0.7, 0], [0, 0.6]]),
        ([0], [1], [[0.9]]),
    ],
    2,
    3,
)


def test_clear_hand_worked() -> None:
    c = clear(SWITCHES)
    assert (c["TP"], c["FN"], c["FP"], c["IDSW"]) == (7, 0, 0, 2)
    assert c["MOTA"] == pytest.approx(5 / 7)
    assert c["MOTP"] == pytest.approx(5.6 / 7)


def test_identity_hand_worked() -> None:
    # Matches (IoU >= 0.5): A-p0 2 frames, A-p1 2, B-p1 2, B-p2 1; best one-to-one: A-p0 + B-p1.
    i = identity(SWITCHES)
    assert (i["IDTP"], i["IDFN"], i["IDFP"]) == (4, 3, 3)
    assert i["IDF1"] == pytest.approx(4 / 7)


def test_hota_hand_worked() -> None:
    perfect = seq([([0], [0], [[1.0]]), ([0], [0], [[1.0]])], 1, 1)
    h = hota(perfect)
    assert (h["HOTA"], h["DetA"], h["AssA"], h["LocA"]) == pytest.approx((1, 1, 1, 1))
    # One object, a new predicted id every frame: detection perfect, association 1/2 for every
    # alpha (each match: 1 / (2 gt frames + 1 pred frame - 1 match)).
    split = seq([([0], [0], [[1.0]]), ([0], [1], [[1.0]])], 1, 2)
    h = hota(split)
    assert h["DetA"] == pytest.approx(1.0) and h["AssA"] == pytest.approx(0.5)
    assert h["HOTA"] == pytest.approx(np.sqrt(0.5))
    # IoU 0.5: matched for the 10 alphas <= 0.5 of 19, so DetA = 10/19; LocA is 0.5 where
    # matched and, as in TrackEval, 1 where nothing is: (10 x 0.5 + 9) / 19.
    half = seq([([0], [0], [[0.5]])], 1, 1)
    h = hota(half)
    assert h["DetA"] == pytest.approx(10 / 19) and h["LocA"] == pytest.approx(14 / 19)
    assert h["HOTA"] == pytest.approx(10 / 19)


def test_empty_and_combined() -> None:
    empty_pred = seq([([0], [], [])], 1, 0)
    assert clear(empty_pred)["FN"] == 1 and identity(empty_pred)["IDF1"] == 0.0
    assert hota(empty_pred)["HOTA"] == 0.0
    parts = [{"clear": clear(s), "identity": identity(s), "hota": hota(s)}
             for s in (SWITCHES, empty_pred)]  # fmt: skip
    total = combine(parts)
    assert total["clear"]["IDSW"] == 2 and total["clear"]["FN"] == 1
    assert total["identity"]["IDF1"] == pytest.approx(4 / (4 + 0.5 * 3 + 0.5 * 4))


def random_sequence(rng: np.random.Generator) -> Frames:
    n_gt, n_pred, length = (
        int(rng.integers(1, 5)),
        int(rng.integers(1, 6)),
        int(rng.integers(3, 12)),
    )
    frames = []
    for _ in range(length):
        g = np.flatnonzero(rng.random(n_gt) < 0.8)
        p = np.flatnonzero(rng.random(n_pred) < 0.7)
        s = rng.random((len(g), len(p))) * (rng.random((len(g), len(p))) < 0.6)
        frames.append((g.tolist(), p.tolist(), s.tolist()))
    return seq(frames, n_gt, n_pred)


@pytest.mark.parametrize("seed", range(12))
def test_agrees_with_trackeval(seed: int) -> None:
    trackeval = pytest.importorskip("trackeval")
    from trackeval.metrics import CLEAR, HOTA, Identity

    f = random_sequence(np.random.default_rng(seed))
    data = {
        "num_gt_ids": f.n_gt,
        "num_tracker_ids": f.n_pred,
        "num_gt_dets": sum(len(g) for g in f.gt_ids),
        "num_tracker_dets": sum(len(p) for p in f.pred_ids),
        "num_timesteps": len(f.gt_ids),
        "gt_ids": f.gt_ids,
        "tracker_ids": f.pred_ids,
        "similarity_scores": f.similarity,
    }
    assert trackeval is not None
    quiet = {"PRINT_CONFIG": False}
    ref_h = HOTA().eval_sequence(data)
    ref_i = Identity(quiet).eval_sequence(data)
    ref_c = CLEAR(quiet).eval_sequence(data)
    h, i, c = hota(f), identity(f), clear(f)
    if data["num_gt_dets"] and data["num_tracker_dets"]:
        assert h["HOTA"] == pytest.approx(float(np.mean(ref_h["HOTA"])), abs=1e-9)
        assert h["AssA"] == pytest.approx(float(np.mean(ref_h["AssA"])), abs=1e-9)
        assert h["LocA"] == pytest.approx(float(np.mean(ref_h["LocA"])), abs=1e-9)
    assert h["DetA"] == pytest.approx(float(np.mean(ref_h["DetA"])), abs=1e-9)
    assert i["IDF1"] == pytest.approx(ref_i["IDF1"], abs=1e-9)
    assert (c["IDSW"], c["TP"], c["FP"], c["FN"]) == (
        ref_c["IDSW"], ref_c["CLR_TP"], ref_c["CLR_FP"], ref_c["CLR_FN"])  # fmt: skip
    assert c["MOTA"] == pytest.approx(ref_c["MOTA"], abs=1e-9)
