"""Where sampled video frames' regions become tracks: tracker backends by name, and summaries.

    base     ``Tracker``: ``start() -> state``, ``update(state, ...) -> ids``, ``dump``/``load``
    iou      ``iou``: model-free; mask IoU after a constant-velocity shift, vector cosine, label
    none     ``none``: every region its own track (the "no tracking" baseline)
    propagate  mask-propagating trackers (every frame through a video model), shared rules
    sam2     ``sam2``: SAM 2 propagates the segmenter's masks between the samples
    sam3_video ``sam3``: SAM 3 video tracks every instance of text concepts
    summary  ``summarise_track``: label by score-weighted vote, mean vector, time span

Built-in trackers are declared as entry points under ``segindex.trackers`` exactly as a
plugin would declare its own (a SAM 2 propagation tracker, say)::

    from segindex.track import TRACKERS
    tracker = TRACKERS.build("iou", max_missed=5)
    state = tracker.start()                      # one per video
    ids = tracker.update(state, frame_index, time_s, regions, vectors)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segindex.registry import Registry, takes_parameter
from segindex.track.base import Tracker
from segindex.track.summary import TrackSummary, summarise_track

TRACKERS: Registry[Tracker[Any]] = Registry("tracker", "segindex.trackers")


def build_tracker(
    name: str, options: Mapping[str, Any], *, device: str = "auto", precision: str = "auto"
) -> Tracker[Any]:
    """The tracker ``name`` with ``options``; ``device`` and ``precision`` (the ingest's) go to
    the trackers that run a model (``sam2``, ``sam3``: their builder names them) unless
    ``options`` set them."""
    builder = TRACKERS.get(name)
    extra = {
        key: value
        for key, value in (("device", device), ("precision", precision))
        if key not in options and takes_parameter(builder, key)
    }
    return builder(**options, **extra)


__all__ = ["TRACKERS", "TrackSummary", "Tracker", "build_tracker", "summarise_track"]
