"""A deterministic mask propagator for tests of :mod:`segindex.track.propagate`.

Each object is remembered by the colour under its seed mask (the most common RGB value there);
in a later frame its mask is every pixel of exactly that colour, and its presence score is 1.0
when there is any, else 0.0. Draw objects as flat-coloured shapes on a black background and the
"model" follows them wherever they move, loses them exactly when they leave, and finds them
again when they come back: ground truth to the frame.

Registered as a tracker by the tests through the real registry::

    TRACKERS.register("fake_sam2", fake_sam2_tracker)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segindex.track.propagate import PropagatingTracker, Propagation


@dataclass
class FakeSession:
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    image: np.ndarray | None = None
    frames: int = 0  # frames fed (calls with an image)
    calls: int = 0


class ColourPropagator:
    """Follows flat colours (see the module docs). ``sessions`` lists every session made."""

    def __init__(self) -> None:
        self.sessions: list[FakeSession] = []

    def start(self) -> FakeSession:
        s = FakeSession()
        self.sessions.append(s)
        return s

    def track(
        self, session: FakeSession, image: np.ndarray | None, seeds: Mapping[int, np.ndarray]
    ) -> Propagation:
        session.calls += 1
        if image is not None:
            session.image, session.frames = image, session.frames + 1
        if session.image is None:
            raise ValueError("the first call of a session needs a frame")
        frame = session.image
        for oid, mask in seeds.items():
            colours, counts = np.unique(frame[mask].reshape(-1, 3), axis=0, return_counts=True)
            r, g, b = (int(c) for c in colours[counts.argmax()])
            session.colours[int(oid)] = (r, g, b)
        ids = sorted(session.colours)
        h, w = frame.shape[:2]
        masks = np.zeros((len(ids), h, w), bool)
        for k, oid in enumerate(ids):
            masks[k] = (frame == np.array(session.colours[oid], np.uint8)).all(axis=2)
        scores = np.any(masks.reshape(len(ids), -1), axis=1).astype(np.float32)
        return Propagation(np.asarray(ids, np.int64), masks, scores)

    def drop(self, session: FakeSession, ids: Sequence[int]) -> None:
        for oid in ids:
            session.colours.pop(int(oid), None)


class FakeSam2Tracker(PropagatingTracker):
    """The propagating tracker over a :class:`ColourPropagator` (same options as ``sam2``)."""

    name = "fake_sam2"

    def __init__(self, **options: Any) -> None:
        super().__init__(ColourPropagator(), **options)
