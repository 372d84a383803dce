"""One summary per track: a label by score-weighted vote, a mean vector and a time span."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrackSummary:
    """What a track is, from its frames.

    label, label_id  the label with the largest sum of frame scores (ties: the first seen)
    score            mean score of the frames that carry the winning label
    vector           ``(D,)`` float32, L2-normalised mean of the frame vectors
    start_s, end_s   first and last frame time in seconds
    n_frames         number of frames
    """

    label: str
    label_id: int
    score: float
    vector: np.ndarray
    start_s: float
    end_s: float
    n_frames: int


def summarise_track(
    labels: Sequence[str],
    label_ids: Sequence[int],
    scores: np.ndarray,
    vectors: np.ndarray,
    times_s: np.ndarray,
) -> TrackSummary:
    """Summarise the ``M`` frames of one track.

    labels, label_ids  per-frame label names and backend class ids (``M`` each)
    scores             ``(M,)`` per-frame confidences in [0, 1]
    vectors            ``(M, D)`` float per-frame vectors (L2-normalised)
    times_s            ``(M,)`` per-frame presentation times in seconds
    """
    scores = np.asarray(scores, dtype=np.float64)
    vectors = np.asarray(vectors)
    times = np.asarray(times_s, dtype=np.float64)
    m = len(labels)
    if m == 0:
        raise ValueError("a track needs at least one frame")
    if len(label_ids) != m or scores.shape != (m,) or times.shape != (m,):
        raise ValueError(
            f"labels ({m}), label_ids ({len(label_ids)}), scores {scores.shape} and times_s "
            f"{times.shape} must describe the same {m} frames"
        )
    if vectors.ndim != 2 or vectors.shape[0] != m:
        raise ValueError(f"vectors must be (M, D) with M = {m}, got shape {vectors.shape}")
    if not (np.isfinite(scores).all() and np.isfinite(times).all() and np.isfinite(vectors).all()):
        raise ValueError("scores, vectors and times_s must be finite")
    votes: dict[tuple[str, int], float] = {}
    for label, label_id, score in zip(labels, label_ids, scores.tolist(), strict=True):
        key = (str(label), int(label_id))
        votes[key] = votes.get(key, 0.0) + max(score, 0.0)
    best = max(votes, key=lambda k: votes[k])  # max keeps the first of equal keys
    chosen = np.array([(str(a), int(b)) == best for a, b in zip(labels, label_ids, strict=True)])
    mean = vectors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        raise ValueError("the frame vectors of a track average to zero; cannot normalise")
    return TrackSummary(
        label=best[0],
        label_id=best[1],
        score=float(scores[chosen].mean()),
        vector=(mean / norm).astype(np.float32),
        start_s=float(times.min()),
        end_s=float(times.max()),
        n_frames=m,
    )
