"""Base class of trackers: per-video state in, tracker-local ids out; the base validates.

A tracker object holds only its settings; everything about one video lives in a state object
made by :meth:`Tracker.start`, so one tracker serves many videos (one state each) and a state can
be written out with :meth:`Tracker.dump` (plain JSON) and read back with :meth:`Tracker.load` to
resume a video after a crash with the same tracks.

Trackers that propagate masks with a video model (``needs_frames = True``, e.g. ``sam2``) also
see the frames between the sampled ones: the video runner calls :meth:`Tracker.observe` for every
decoded frame (or every frame at the tracker's ``frame_fps``) in time order, each sampled frame
included, just before its :meth:`Tracker.update`; such a tracker knows when an object appears and
disappears between samples and hands the exact spans out through :meth:`Tracker.take_spans`.
Trackers without the flag are never called with frames (the contract is unchanged for them).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from segindex.errors import ConfigError
from segindex.regions import Regions

#: version of the dict written by :meth:`Tracker.dump`
STATE_VERSION = 1


@dataclass
class VideoState:
    """What every tracker keeps per video: the next free track id and the last sample seen."""

    next_id: int = 0
    last_frame: int | None = None
    last_time: float | None = None

    def new_ids(self, n: int) -> np.ndarray:
        """``(n,)`` int64 fresh track ids."""
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        self.next_id += n
        return ids


S = TypeVar("S", bound=VideoState)


class Tracker(ABC, Generic[S]):
    """Links each sampled frame's regions to tracks of the same video.

    Subclasses implement :meth:`_new_state`, :meth:`_update`, :meth:`_dump_state` and
    :meth:`_load_state`; callers use :meth:`start`, :meth:`update`, :meth:`dump`, :meth:`load`.
    """

    #: registry name; set by subclasses
    name: str = ""
    #: True if the tracker wants every frame through :meth:`observe` (mask propagation)
    needs_frames: bool = False
    #: frames per second a ``needs_frames`` tracker wants observed; ``None``: every frame
    frame_fps: float | None = None

    def start(self) -> S:
        """A fresh state for one video."""
        return self._new_state()

    def update(
        self,
        state: S,
        frame_index: int,
        time_s: float,
        regions: Regions,
        vectors: np.ndarray,
    ) -> np.ndarray:
        """Assign a track id to each region of one sampled frame.

        frame_index: index of the frame in the video's decoding order; must increase from
                     one call to the next on the same ``state``
        time_s:      presentation time of the frame in seconds (finite, not decreasing)
        regions:     the frame's ``Regions`` (N masks ``HxW`` bool, XYXY boxes, labels, scores)
        vectors:     ``(N, D)`` float32 crop vectors, L2-normalised, parallel to ``regions``

        Returns ``(N,)`` int64 track ids, >= 0, unique within the frame and stable within the
        video (the same object keeps its id across frames).
        """
        self._check(state, frame_index, time_s, regions, vectors)
        ids = self._update(state, int(frame_index), float(time_s), regions, vectors)
        if not (
            isinstance(ids, np.ndarray)
            and ids.dtype == np.int64
            and ids.shape == (len(regions),)
            and (ids >= 0).all()
            and len(np.unique(ids)) == len(ids)
        ):
            raise RuntimeError(f"tracker {self.name!r} returned invalid ids {ids!r}")
        state.last_frame, state.last_time = int(frame_index), float(time_s)
        return ids

    def observe(self, state: S, frame_index: int, time_s: float, image: np.ndarray) -> None:
        """Show a ``needs_frames`` tracker one decoded frame (sampled or not), in time order.

        frame_index: strictly increasing from one call to the next on the same ``state``; a
                     sampled frame is observed before its :meth:`update`
        time_s:      presentation time in seconds (finite, not decreasing)
        image:       ``HxWx3`` uint8 RGB, upright
        """
        from segindex.segment.base import check_image

        check_image(image)
        _check_position(state, frame_index, time_s)
        self._observe(state, int(frame_index), float(time_s), image)

    def take_spans(self, state: S) -> dict[int, tuple[float, float]]:
        """``{track id: (start_s, end_s)}`` of the tracks whose exact span (seen between the
        samples) grew since the last call; forgets them. Empty for trackers that only see
        sampled frames (their spans are those of the sampled frames)."""
        return {}

    def dump(self, state: S) -> dict[str, Any]:
        """The whole ``state`` as a JSON-able dict (masks as COCO RLE, vectors as lists)."""
        return {
            "tracker": self.name,
            "version": STATE_VERSION,
            "next_id": state.next_id,
            "last_frame": state.last_frame,
            "last_time": state.last_time,
            **self._dump_state(state),
        }

    def load(self, data: dict[str, Any]) -> S:
        """A state equal to the one ``data`` was dumped from (by a tracker of the same name)."""
        if not isinstance(data, dict):
            raise ConfigError(f"tracker state must be a dict, got {type(data).__name__}")
        if data.get("tracker") != self.name or data.get("version") != STATE_VERSION:
            raise ConfigError(
                f"tracker state is for tracker {data.get('tracker')!r} version "
                f"{data.get('version')!r}, expected {self.name!r} version {STATE_VERSION}"
            )
        try:
            state = self._load_state(data)
            state.next_id = int(data["next_id"])
            last_frame, last_time = data["last_frame"], data["last_time"]
            state.last_frame = None if last_frame is None else int(last_frame)
            state.last_time = None if last_time is None else float(last_time)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"tracker state is malformed: {exc!r}") from None
        return state

    def describe(self) -> dict[str, Any]:
        """Name and settings, stored with the index."""
        return {"name": self.name}

    def _check(
        self, state: S, frame_index: int, time_s: float, regions: Regions, vectors: np.ndarray
    ) -> None:
        if not isinstance(state, VideoState):
            raise TypeError(f"state must come from {type(self).__name__}.start() or .load()")
        if not isinstance(regions, Regions):
            raise TypeError(f"regions must be Regions, got {type(regions).__name__}")
        n = len(regions)
        if (
            not isinstance(vectors, np.ndarray)
            or vectors.ndim != 2
            or vectors.shape[0] != n
            or vectors.dtype != np.float32
        ):
            raise ValueError(
                f"vectors must be (N, D) float32 with N = {n} regions, got shape "
                f"{getattr(vectors, 'shape', None)} dtype {getattr(vectors, 'dtype', None)}"
            )
        if not np.isfinite(vectors).all():
            raise ValueError("vectors must be finite")
        _check_position(state, frame_index, time_s)

    def _observe(self, state: S, frame_index: int, time_s: float, image: np.ndarray) -> None:
        """One validated frame for a ``needs_frames`` tracker; others ignore frames."""

    @abstractmethod
    def _new_state(self) -> S: ...

    @abstractmethod
    def _update(
        self, state: S, frame_index: int, time_s: float, regions: Regions, vectors: np.ndarray
    ) -> np.ndarray: ...

    @abstractmethod
    def _dump_state(self, state: S) -> dict[str, Any]:
        """JSON-able fields of ``state`` beyond the ones of :class:`VideoState`."""

    @abstractmethod
    def _load_state(self, data: dict[str, Any]) -> S:
        """Inverse of :meth:`_dump_state` (the base restores the :class:`VideoState` fields)."""


def _check_position(state: VideoState, frame_index: int, time_s: float) -> None:
    """``frame_index`` an int after the state's last sampled frame, ``time_s`` finite and not
    before its time."""
    if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
        raise ValueError(f"frame_index must be an int, got {frame_index!r}")
    if frame_index < 0 or not math.isfinite(time_s):
        raise ValueError(f"need frame_index >= 0 and a finite time_s, got {frame_index}, {time_s}")
    if state.last_frame is not None and frame_index <= state.last_frame:
        raise ValueError(
            f"frame_index must increase within a video: got {frame_index} after {state.last_frame}"
        )
    if state.last_time is not None and time_s < state.last_time:
        raise ValueError(f"time_s went backwards: {time_s} after {state.last_time}")
