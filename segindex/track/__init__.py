"""Where sampled video frames' regions become tracks: tracker backends by name, and summaries.

    base     ``Tracker``: ``start() -> state``, ``update(state, ...) -> ids``, ``dump``/``load``
    iou      ``iou``: model-free; mask IoU after a constant-velocity shift, vector cosine, label
    none     ``none``: every region its own track (the "no tracking" baseline)
    summary  ``summarise_track``: label by score-weighted vote, mean vector, time span

Built-in trackers are declared as entry points under ``segindex.trackers`` exactly as a
plugin would declare its own (a SAM 2 propagation tracker, say)::

    from segindex.track import TRACKERS
    tracker = TRACKERS.build("iou", max_missed=5)
    state = tracker.start()                      # one per video
    ids = tracker.update(state, frame_index, time_s, regions, vectors)
"""

from __future__ import annotations

from segindex.registry import Registry
from segindex.track.base import Tracker
from segindex.track.summary import TrackSummary, summarise_track

TRACKERS: Registry[Tracker] = Registry("tracker", "segindex.trackers")

__all__ = ["TRACKERS", "TrackSummary", "Tracker", "summarise_track"]
