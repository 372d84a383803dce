"""The frames between the samples, for trackers that propagate masks (``needs_frames``).

A second decoding pass over the same video, one frame at a time (never held: each is handed to
:meth:`~segindex.track.base.Tracker.observe` and dropped), at the tracker's ``frame_fps`` or
every frame, starting after the last committed frame (so a resumed video goes on from there).
The sampled frames themselves come from the main pass, with their regions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from segindex.config import VideoOptions
from segindex.ingest.video import SampledFrame, SamplerState, sample_frames

#: ``fps`` that keeps every frame (slots of 1 ms)
EVERY_FRAME_FPS = 1000.0


class FrameFeed:
    """Frames of ``path`` after frame ``after``, fed in order up to each sample.

    observe: called with ``(frame index, time_s, HxWx3 uint8 RGB image)`` per frame
    fps:     at most this many frames per second (``None``: every frame)
    """

    def __init__(
        self,
        path: str,
        after: int,
        observe: Callable[[int, float, object], None],
        fps: float | None = None,
    ) -> None:
        options = VideoOptions(fps=fps or EVERY_FRAME_FPS, dedup_threshold=0.0)
        self._frames: Iterator[SampledFrame] = sample_frames(
            path, options, SamplerState(last_frame=after)
        )
        self._observe = observe
        self._held: SampledFrame | None = None

    def until(self, sample: SampledFrame) -> None:
        """Observe every frame before ``sample``, then ``sample`` itself."""
        self._feed(sample.index)
        self._observe(sample.index, sample.time_s, sample.image)

    def rest(self) -> None:
        """Observe the frames after the last sample, to the end of the video."""
        self._feed(None)

    def _feed(self, before: int | None) -> None:
        while True:
            frame = self._held if self._held is not None else next(self._frames, None)
            self._held = None
            if frame is None:
                return
            if before is not None and frame.index >= before:
                if frame.index > before:
                    self._held = frame  # after this sample: the next call's
                return
            self._observe(frame.index, frame.time_s, frame.image)
