"""``summarise_track``: label by score-weighted vote, normalised mean vector, time span."""

from __future__ import annotations

import numpy as np
import pytest

from segindex.track import TrackSummary, summarise_track


def test_score_weighted_vote_mean_vector_and_span() -> None:
    # "cat" wins on summed score (0.9 + 0.8 = 1.7) although "dog" has more frames (3 x 0.5).
    labels = ["dog", "cat", "dog", "cat", "dog"]
    ids = [2, 1, 2, 1, 2]
    scores = np.array([0.5, 0.9, 0.5, 0.8, 0.5])
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]], np.float32)
    times = np.array([0.5, 1.0, 1.5, 2.0, 2.5])
    s = summarise_track(labels, ids, scores, vectors, times)
    assert isinstance(s, TrackSummary)
    assert (s.label, s.label_id, s.n_frames) == ("cat", 1, 5)
    assert s.score == pytest.approx(0.85)
    assert (s.start_s, s.end_s) == (0.5, 2.5)
    assert s.vector.dtype == np.float32
    np.testing.assert_allclose(s.vector, np.array([3, 2]) / np.hypot(3, 2), rtol=1e-6)


def test_tie_goes_to_the_first_label_seen() -> None:
    v = np.ones((2, 3), np.float32)
    s = summarise_track(["b", "a"], [0, 1], np.array([0.5, 0.5]), v, np.array([3.0, 1.0]))
    assert s.label == "b" and (s.start_s, s.end_s) == (1.0, 3.0)


@pytest.mark.parametrize(
    ("labels", "vectors", "times", "match"),
    [
        ([], np.zeros((0, 2)), np.zeros(0), "at least one frame"),
        (["a", "a"], np.ones((2, 2)), np.zeros(3), "same 2 frames"),
        (["a", "a"], np.ones((3, 2)), np.zeros(2), r"vectors must be \(M, D\)"),
        (["a", "a"], np.array([[1.0, 0], [-1, 0]]), np.zeros(2), "average to zero"),
        (["a", "a"], np.ones((2, 2)), np.array([0.0, np.nan]), "finite"),
    ],
)
def test_bad_input(labels: list[str], vectors: np.ndarray, times: np.ndarray, match: str) -> None:
    n = len(labels)
    with pytest.raises(ValueError, match=match):
        summarise_track(labels, [0] * n, np.ones(n), vectors, times)
