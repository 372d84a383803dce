"""The ``none`` tracker: every region starts its own track (the "no tracking" baseline)."""

from __future__ import annotations

from typing import Any

import numpy as np

from segindex.regions import Regions
from segindex.track.base import Tracker, VideoState


class NoTracker(Tracker[VideoState]):
    """Each region of each frame gets a fresh id; nothing is linked across frames."""

    name = "none"

    def _new_state(self) -> VideoState:
        return VideoState()

    def _update(
        self,
        state: VideoState,
        frame_index: int,
        time_s: float,
        regions: Regions,
        vectors: np.ndarray,
    ) -> np.ndarray:
        return state.new_ids(len(regions))

    def _dump_state(self, state: VideoState) -> dict[str, Any]:
        return {}

    def _load_state(self, data: dict[str, Any]) -> VideoState:
        return VideoState()
