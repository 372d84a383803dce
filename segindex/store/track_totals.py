"""Running totals of a track, stored on its ``segindex_tracks`` row, so a chunk that extends a
track re-summarises it from the totals and the chunk's new frames alone: committing a chunk
costs the same at minute 1 and at hour 3 (no re-reading of the track's earlier frames).

The summary is exactly :func:`segindex.track.summarise_track` over all the track's frames
(tests hold the two equal): label by score-weighted vote (ties: the label seen first), score =
mean score of the frames carrying that label, vector = L2-normalised mean of the frame vectors,
start/end time and frame count. Only the best frame (whose box, mask and time the track's region
row shows) is chosen incrementally: the frame closest to the new track vector among the previous
best and the chunk's new frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TrackTotals:
    """Sums over a track's frames.

    vector_sum: ``(D,)`` float64 sum of the frame vectors (``None`` before the first frame)
    votes:      ``[label, label_id, vote, score_sum, n]`` per label in order of first appearance
                (``vote`` sums ``max(score, 0)``)
    """

    vector_sum: np.ndarray | None = None
    votes: list[list[Any]] = field(default_factory=list)
    start_s: float | None = None
    end_s: float | None = None
    n_frames: int = 0

    @classmethod
    def from_row(cls, row: Any) -> TrackTotals:
        """From a ``segindex_tracks`` row (its ``vector_sum``, ``votes``, span and count)."""
        if row.vector_sum is None:
            return cls()
        return cls(
            vector_sum=np.frombuffer(row.vector_sum, dtype="<f8").astype(np.float64),
            votes=json.loads(row.votes),
            start_s=row.start_s,
            end_s=row.end_s,
            n_frames=int(row.n_frames),
        )

    def add(
        self, label: str, label_id: int, score: float, vector: np.ndarray, time_s: float
    ) -> None:
        """One more frame: its label, score, ``(D,)`` float32 vector and time in seconds."""
        v = np.asarray(vector, dtype=np.float64)
        self.vector_sum = v.copy() if self.vector_sum is None else self.vector_sum + v
        for entry in self.votes:
            if entry[0] == label and entry[1] == label_id:
                entry[2] += max(score, 0.0)
                entry[3] += score
                entry[4] += 1
                break
        else:
            self.votes.append([label, int(label_id), max(score, 0.0), float(score), 1])
        self.start_s = time_s if self.start_s is None else min(self.start_s, time_s)
        self.end_s = time_s if self.end_s is None else max(self.end_s, time_s)
        self.n_frames += 1

    def vector(self) -> np.ndarray:
        """``(D,)`` float32, the L2-normalised mean of the frame vectors."""
        if self.vector_sum is None:
            raise ValueError("a track needs at least one frame")
        norm = float(np.linalg.norm(self.vector_sum))
        if norm == 0.0:
            raise ValueError("the frame vectors of a track average to zero; cannot normalise")
        return (self.vector_sum / norm).astype(np.float32)

    def label(self) -> tuple[str, int, float]:
        """``(label, label_id, score)``: the vote winner and its frames' mean score."""
        best = max(self.votes, key=lambda e: e[2])  # max keeps the first of equal votes
        return str(best[0]), int(best[1]), float(best[3] / best[4])

    def to_values(self) -> dict[str, Any]:
        """Column values for the ``segindex_tracks`` row (summary and totals)."""
        label, label_id, score = self.label()
        assert self.vector_sum is not None  # label() needs a frame
        return {
            "label": label,
            "label_id": label_id,
            "score": score,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "n_frames": self.n_frames,
            "vector_sum": np.ascontiguousarray(self.vector_sum, dtype="<f8").tobytes(),
            "votes": json.dumps(self.votes),
        }
