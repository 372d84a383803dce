"""Trackers that propagate masks through every frame with a video model (SAM 2, SAM 3).

The model sits behind a small :class:`Propagator` interface (a session per video; one call per
frame), so the linking logic here is the same for every model and is tested with a deterministic
fake (:mod:`segindex.testing.fake_propagator`) registered through the real tracker registry.

Per video, :class:`PropagatingTracker` keeps a set of live objects:

* every observed frame (:meth:`~segindex.track.base.Tracker.observe`, at ``frame_fps`` or every
  decoded frame) is propagated: each live object gets a mask and a presence score in [0, 1];
  present (score >= ``presence`` and a non-empty mask) moves its end to this frame, absent for
  ``max_missed`` observed frames in a row ends it (its end stays at the last present frame);
* at a sampled frame (:meth:`~segindex.track.base.Tracker.update`) each segmenter region is
  matched to a propagated mask by mask IoU (one-to-one, best total IoU, pairs below
  ``match_iou`` refused) and takes that object's id; an unmatched region starts a new object,
  seeded with its mask (and, with ``reseed``, matched objects are re-seeded with theirs, which
  stops drift); with ``backfill``, a new object is propagated backwards through the frames seen
  since the previous sample, so its start is the first frame it was present, not the sample;
* at most ``max_objects`` objects are propagated at once: beyond that the lowest-scoring are
  dropped (recorded in ``state.dropped``; a dropped object keeps its id for the regions already
  given and ends at its last present frame).

Spans (first and last present frame time) are exact to the observed frame and come out through
:meth:`take_spans`. The model's memory is not written out: :meth:`dump` keeps each live object's
last mask, and after :meth:`load` the objects are re-seeded with those masks at the next frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from segindex import rle as rle_codec
from segindex.masks import iou_matrix
from segindex.regions import Regions
from segindex.track.base import Tracker, VideoState
from segindex.validate import fraction, integer, optional_number

#: at most this many cap drops are kept in the state (the count is kept in full)
_DROPPED_KEPT = 100


@dataclass
class Propagation:
    """What a propagator says about one frame, for every object of its session.

    ids:    ``(K,)`` int64 object ids
    masks:  ``(K, H, W)`` bool, at the frame's own size
    scores: ``(K,)`` float32 presence probabilities in [0, 1]
    """

    ids: np.ndarray
    masks: np.ndarray
    scores: np.ndarray

    @classmethod
    def empty(cls, height: int, width: int) -> Propagation:
        return cls(
            np.zeros(0, np.int64), np.zeros((0, height, width), bool), np.zeros(0, np.float32)
        )


class Propagator(Protocol):
    """A video mask propagator (SAM 2's memory, a fake). One session per video or pass."""

    def start(self) -> Any:
        """A new, empty session."""

    def track(
        self, session: Any, image: np.ndarray | None, seeds: Mapping[int, np.ndarray]
    ) -> Propagation:
        """Process the next frame (``image``, ``HxWx3`` uint8 RGB), or the same frame again
        with ``image=None``; objects in ``seeds`` (id -> ``HxW`` bool mask) are (re)started
        from their masks at this frame, the others propagated. Returns every object of the
        session (ids are the caller's)."""

    def drop(self, session: Any, ids: Sequence[int]) -> None:
        """Stop propagating ``ids`` in ``session`` (unknown ids are ignored)."""


@dataclass
class LiveObject:
    """One propagated object: its span (first/last present frame) and its last mask."""

    id: int
    start_frame: int
    start_s: float
    end_frame: int
    end_s: float
    score: float
    mask: np.ndarray | None = None  # ``HxW`` bool, last present mask
    missed: int = 0


@dataclass
class Observed:
    """The frame last observed and what propagation made of it (``None`` before any)."""

    frame_index: int
    time_s: float
    image: np.ndarray
    propagated: Propagation | None


@dataclass
class PropagatingState(VideoState):
    objects: dict[int, LiveObject] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    n_dropped: int = 0
    grown: dict[int, tuple[float, float]] = field(default_factory=dict)
    # not written out: the model session, the last frame and the frames since the last sample
    session: Any = None
    current: Observed | None = None
    buffer: deque[tuple[int, float, np.ndarray]] = field(default_factory=deque)


class PropagatingTracker(Tracker[PropagatingState]):
    """Links regions through a :class:`Propagator` (see the module docs for the rules).

    match_iou:   mask IoU a region needs with a propagated mask to take its id (0.5, DEVA's
                 value: a sampled mask and a mask propagated a few frames differ at the edges;
                 Grounded-SAM-2's 0.8 splits more tracks when objects deform)
    max_missed:  observed frames an object may be absent in a row before it ends (15)
    presence:    presence score at or above which an object counts as present (0.5)
    max_objects: objects propagated at once; the lowest-scoring beyond are dropped (32)
    reseed:      re-seed matched objects with the segmenter's mask at each sample (True)
    backfill:    propagate new objects backwards through the frames since the last sample,
                 at most ``backfill_frames`` of them (True, 60)
    frame_fps:   observe at most this many frames per second; ``None``: every frame
    """

    needs_frames = True

    def __init__(
        self,
        propagator: Propagator,
        *,
        match_iou: float = 0.5,
        max_missed: int = 15,
        presence: float = 0.5,
        max_objects: int = 32,
        reseed: bool = True,
        backfill: bool = True,
        backfill_frames: int = 60,
        frame_fps: float | None = None,
    ) -> None:
        self.propagator = propagator
        self.match_iou = fraction("match_iou", match_iou)
        self.presence = fraction("presence", presence)
        self.max_missed = integer("max_missed", max_missed, lo=1)
        self.max_objects = integer("max_objects", max_objects, lo=1)
        self.backfill_frames = integer("backfill_frames", backfill_frames, lo=0)
        self.reseed = bool(reseed)
        self.backfill = bool(backfill)
        self.frame_fps = optional_number("frame_fps", frame_fps, lo=0, hi=1000, lo_open=True)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "match_iou": self.match_iou,
            "max_missed": self.max_missed,
            "presence": self.presence,
            "max_objects": self.max_objects,
            "reseed": self.reseed,
            "backfill": self.backfill,
            "backfill_frames": self.backfill_frames,
            "frame_fps": self.frame_fps,
        }

    # -- frames ---------------------------------------------------------------------------------

    def _new_state(self) -> PropagatingState:
        return PropagatingState(buffer=deque(maxlen=self.backfill_frames + 1))

    def _observe(
        self, state: PropagatingState, frame_index: int, time_s: float, image: np.ndarray
    ) -> None:
        if state.current is not None and frame_index <= state.current.frame_index:
            raise ValueError(
                f"frame_index must increase: observed {frame_index} after "
                f"{state.current.frame_index}"
            )
        if state.buffer.maxlen != self.backfill_frames + 1:
            state.buffer = deque(state.buffer, maxlen=self.backfill_frames + 1)
        state.buffer.append((frame_index, time_s, image))
        propagated = None
        if state.objects:
            if state.session is None:  # a resumed video: re-seed from the last masks
                state.session = self.propagator.start()
                seeds = {o.id: o.mask for o in state.objects.values() if o.mask is not None}
                propagated = self.propagator.track(state.session, image, seeds)
            else:
                propagated = self.propagator.track(state.session, image, {})
        state.current = Observed(frame_index, time_s, image, propagated)
        if propagated is not None:
            self._advance(state, frame_index, time_s, propagated)

    def _advance(
        self, state: PropagatingState, frame_index: int, time_s: float, p: Propagation
    ) -> None:
        """Presence bookkeeping of one propagated frame; objects absent too long end."""
        ended = []
        for oid, mask, score in zip(p.ids.tolist(), p.masks, p.scores.tolist(), strict=True):
            obj = state.objects.get(int(oid))
            if obj is None:
                continue
            if score >= self.presence and mask.any():
                obj.missed, obj.score, obj.mask = 0, float(score), mask
                obj.end_frame, obj.end_s = frame_index, time_s
                state.grown[obj.id] = (obj.start_s, obj.end_s)
            else:
                obj.missed += 1
                obj.score = float(score)
                if obj.missed >= self.max_missed:
                    ended.append(obj.id)
        if ended:
            self.propagator.drop(state.session, ended)
            for oid in ended:
                del state.objects[oid]

    # -- samples --------------------------------------------------------------------------------

    def _update(
        self,
        state: PropagatingState,
        frame_index: int,
        time_s: float,
        regions: Regions,
        vectors: np.ndarray,
    ) -> np.ndarray:
        cur = state.current
        if cur is None or cur.frame_index != frame_index:
            raise ValueError(
                f"tracker {self.name!r} needs every sampled frame through observe() before "
                f"update(): frame {frame_index} was not observed"
            )
        if regions.image_size != cur.image.shape[:2]:
            raise ValueError(
                f"regions are {regions.image_size}, the observed frame {cur.image.shape[:2]}"
            )
        n = len(regions)
        ids = np.full(n, -1, dtype=np.int64)
        seeds: dict[int, np.ndarray] = {}
        p = cur.propagated
        if p is not None and n and len(p.ids):
            live = np.array([int(i) in state.objects for i in p.ids.tolist()], dtype=bool)
            for j, k in match_masks(regions.masks, p.masks[live], self.match_iou):
                obj = state.objects[int(p.ids[live][k])]
                ids[j] = obj.id
                obj.missed, obj.mask = 0, regions.masks[j]
                if obj.end_frame < frame_index:
                    obj.end_frame, obj.end_s = frame_index, time_s
                    state.grown[obj.id] = (obj.start_s, obj.end_s)
                if self.reseed:
                    seeds[obj.id] = regions.masks[j]
        fresh = np.flatnonzero(ids < 0)
        ids[fresh] = state.new_ids(len(fresh))
        new: dict[int, np.ndarray] = {}
        for j, oid in zip(fresh.tolist(), ids[fresh].tolist(), strict=True):
            mask = regions.masks[j]
            if not mask.any():  # nothing to propagate: a one-frame track
                continue
            state.objects[oid] = LiveObject(
                oid, frame_index, time_s, frame_index, time_s, float(regions.scores[j]), mask
            )
            state.grown[oid] = (time_s, time_s)
            new[oid] = seeds[oid] = mask
        for oid in self._over_cap(state, frame_index):
            seeds.pop(oid, None)
            new.pop(oid, None)
        if seeds:
            if state.session is None:
                state.session = self.propagator.start()
                self.propagator.track(state.session, cur.image, seeds)
            else:
                self.propagator.track(state.session, None if p is not None else cur.image, seeds)
        if new and self.backfill:
            self._backfill(state, new)
        state.buffer.clear()
        return ids

    def _over_cap(self, state: PropagatingState, frame_index: int) -> list[int]:
        """Drop the lowest-scoring objects beyond ``max_objects``; returns their ids."""
        excess = len(state.objects) - self.max_objects
        if excess <= 0:
            return []
        order = sorted(state.objects.values(), key=lambda o: (o.score, -o.id))[:excess]
        out = [o.id for o in order]
        if state.session is not None:
            self.propagator.drop(state.session, out)
        for o in order:
            del state.objects[o.id]
            state.n_dropped += 1
            state.dropped.append({"id": o.id, "frame_index": frame_index, "score": o.score})
        del state.dropped[:-_DROPPED_KEPT]
        return out

    def _backfill(self, state: PropagatingState, new: dict[int, np.ndarray]) -> None:
        """Move new objects' starts back to the first frame they are present in, propagating
        backwards (a separate session) through the frames seen since the previous sample."""
        earlier = list(state.buffer)[:-1]
        if not earlier:
            return
        cur = state.current
        assert cur is not None
        session = self.propagator.start()
        self.propagator.track(session, cur.image, new)
        going = set(new)
        for frame_index, time_s, image in reversed(earlier):
            p = self.propagator.track(session, image, {})
            stopped = []
            for oid, mask, score in zip(p.ids.tolist(), p.masks, p.scores.tolist(), strict=True):
                obj = state.objects.get(int(oid))
                if int(oid) not in going or obj is None:
                    continue
                if score >= self.presence and mask.any():
                    obj.start_frame, obj.start_s = frame_index, time_s
                    state.grown[obj.id] = (obj.start_s, obj.end_s)
                else:
                    stopped.append(int(oid))
            going.difference_update(stopped)
            if not going:
                break
            if stopped:
                self.propagator.drop(session, stopped)

    def take_spans(self, state: PropagatingState) -> dict[int, tuple[float, float]]:
        out, state.grown = state.grown, {}
        return out

    # -- state ----------------------------------------------------------------------------------

    def _dump_state(self, state: PropagatingState) -> dict[str, Any]:
        return {
            "objects": [
                {
                    "id": o.id,
                    "start": [o.start_frame, o.start_s],
                    "end": [o.end_frame, o.end_s],
                    "score": o.score,
                    "missed": o.missed,
                    "mask": None if o.mask is None else dict(rle_codec.encode(o.mask)),
                }
                for o in state.objects.values()
            ],
            "grown": [[k, a, b] for k, (a, b) in state.grown.items()],
            "dropped": state.dropped,
            "n_dropped": state.n_dropped,
        }

    def _load_state(self, data: dict[str, Any]) -> PropagatingState:
        state = self._new_state()
        for d in data["objects"]:
            mask = None if d["mask"] is None else rle_codec.decode(d["mask"])
            obj = LiveObject(
                int(d["id"]),
                int(d["start"][0]),
                float(d["start"][1]),
                int(d["end"][0]),
                float(d["end"][1]),
                float(d["score"]),
                mask,
                int(d["missed"]),
            )
            state.objects[obj.id] = obj
        state.grown = {int(k): (float(a), float(b)) for k, a, b in data["grown"]}
        state.dropped = [dict(x) for x in data["dropped"]]
        state.n_dropped = int(data["n_dropped"])
        return state


def match_masks(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(i, j)`` of ``NxHxW`` bool ``a`` and ``KxHxW`` bool ``b`` with the
    largest summed mask IoU, each pair's IoU at least ``min_iou`` (and above 0)."""
    if not len(a) or not len(b):
        return []
    from scipy.optimize import linear_sum_assignment

    iou = iou_matrix(a, b)
    rows, cols = linear_sum_assignment(-iou)
    return [
        (int(i), int(j))
        for i, j in zip(rows, cols, strict=True)
        if iou[i, j] >= min_iou and iou[i, j] > 0
    ]
