"""The ``iou`` tracker: model-free linking by predicted mask overlap, appearance and label.

For each sampled frame, every active track's last mask is shifted by its constant-velocity
prediction (box velocity in pixels per second, see :func:`box_motion`, times the time since the
track was last seen); the cost of giving region ``j`` to track ``i`` is::

    iou_weight * (1 - IoU(shifted mask_i, mask_j))
  + vector_weight * (1 - cos(vector_i, vector_j)) / 2
  + label_weight * (label_i != label_j)

Pairs whose predicted box centres are further apart than ``max_distance`` (a fraction of the
image diagonal), or whose shifted masks overlap less than ``min_iou``, are not allowed: a track
is one physically continuous object, so look-alike regions elsewhere in the frame never continue
it however similar their vectors. ``scipy.optimize.linear_sum_assignment`` finds the cheapest
assignment; a pair is kept only if its cost is below ``max_cost``. Unmatched regions start new
tracks; a track missing from up to ``max_missed`` consecutive samples can still be continued
(an object hidden a moment stays one track), after that it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segindex import rle as rle_codec
from segindex.embed.base import l2_normalise
from segindex.regions import Regions
from segindex.track.base import Tracker, VideoState
from segindex.validate import fraction, integer, number

_DISALLOWED = 1e6


@dataclass
class Track:
    """One active track: its last observation and motion.

    mask      ``hxw`` bool, the last matched mask cropped to its tight ``box``
    box       ``(4,)`` float32 XYXY pixels (x1/y1 exclusive) of the mask in the frame
    frame     ``(height, width)`` of the video's frames
    velocity  ``(2,)`` float64 box velocity ``(vx, vy)`` in pixels per second
    vector    ``(D,)`` float32 L2-normalised appearance (smoothed over matches)
    """

    id: int
    mask: np.ndarray
    box: np.ndarray
    frame: tuple[int, int]
    velocity: np.ndarray
    vector: np.ndarray
    label: str
    last_time: float
    hits: int = 1
    missed: int = 0


@dataclass
class IouState(VideoState):
    tracks: list[Track] = field(default_factory=list)


class IouTracker(Tracker[IouState]):
    """Constant-velocity mask-IoU tracker with appearance and label terms (see module docs).

    iou_weight:          weight of ``1 - IoU`` of the shifted track mask and the region (0.5)
    vector_weight:       weight of the cosine distance ``(1 - cos) / 2`` of the vectors (0.3)
    label_weight:        cost added when the labels differ (0.2)
    max_cost:            a match needs a cost below this gate (0.6)
    min_iou:             a match needs at least this IoU of the shifted track mask and the
                         region (0.03; 0 lets appearance alone link regions that do not overlap)
    max_distance:        predicted box centres further apart than this fraction of the image
                         diagonal are never matched (0.25)
    max_missed:          consecutive samples a track may go unmatched and still continue (5)
    velocity_smoothing:  weight of the previous velocity when a new one is measured, 0 = use the
                         latest displacement only (0.3)
    vector_smoothing:    weight of the previous track vector when a match updates it (0.5)
    """

    name = "iou"

    def __init__(
        self,
        iou_weight: float = 0.5,
        vector_weight: float = 0.3,
        label_weight: float = 0.2,
        max_cost: float = 0.6,
        min_iou: float = 0.03,
        max_distance: float = 0.25,
        max_missed: int = 5,
        velocity_smoothing: float = 0.3,
        vector_smoothing: float = 0.5,
    ) -> None:
        self.iou_weight = number("iou_weight", iou_weight, lo=0)
        self.vector_weight = number("vector_weight", vector_weight, lo=0)
        self.label_weight = number("label_weight", label_weight, lo=0)
        self.max_cost = number("max_cost", max_cost, lo=0)
        self.min_iou = fraction("min_iou", min_iou, hi_open=True)
        self.max_distance = number("max_distance", max_distance, lo=0)
        self.velocity_smoothing = fraction("velocity_smoothing", velocity_smoothing, hi_open=True)
        self.vector_smoothing = fraction("vector_smoothing", vector_smoothing, hi_open=True)
        self.max_missed = integer("max_missed", max_missed, lo=0)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "iou_weight": self.iou_weight,
            "vector_weight": self.vector_weight,
            "label_weight": self.label_weight,
            "max_cost": self.max_cost,
            "min_iou": self.min_iou,
            "max_distance": self.max_distance,
            "max_missed": self.max_missed,
            "velocity_smoothing": self.velocity_smoothing,
            "vector_smoothing": self.vector_smoothing,
        }

    def _new_state(self) -> IouState:
        return IouState()

    def _update(
        self,
        state: IouState,
        frame_index: int,
        time_s: float,
        regions: Regions,
        vectors: np.ndarray,
    ) -> np.ndarray:
        from scipy.optimize import linear_sum_assignment

        if state.tracks:
            self._check_compatible(state.tracks[0], regions, vectors)
        vectors = l2_normalise(vectors)
        n = len(regions)
        ids = np.full(n, -1, dtype=np.int64)
        matched_tracks: set[int] = set()
        if state.tracks and n:
            cost = self.cost_matrix(state.tracks, time_s, regions, vectors)
            rows, cols = linear_sum_assignment(cost)
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                if cost[i, j] < self.max_cost:
                    self._continue_track(state.tracks[i], time_s, regions, vectors, j)
                    ids[j] = state.tracks[i].id
                    matched_tracks.add(i)
        survivors = []
        for i, track in enumerate(state.tracks):
            if i not in matched_tracks:
                track.missed += 1
            if track.missed <= self.max_missed:
                survivors.append(track)
        state.tracks = survivors
        fresh = np.flatnonzero(ids < 0)
        ids[fresh] = state.new_ids(len(fresh))
        for j, tid in zip(fresh.tolist(), ids[fresh].tolist(), strict=True):
            state.tracks.append(
                Track(
                    id=int(tid),
                    mask=_crop(regions.masks[j], regions.boxes[j]),
                    box=regions.boxes[j].copy(),
                    frame=regions.image_size,
                    velocity=np.zeros(2),
                    vector=vectors[j].copy(),
                    label=str(regions.labels[j]),
                    last_time=time_s,
                )
            )
        return ids

    def cost_matrix(
        self, tracks: list[Track], time_s: float, regions: Regions, vectors: np.ndarray
    ) -> np.ndarray:
        """``(T, N)`` float64 matching costs of ``tracks`` to ``regions`` at ``time_s``;
        pairs too far apart or not below ``max_cost`` are disallowed and cost ``1e6`` (so the
        assignment never trades a good match for a pair it would reject). ``vectors`` is
        ``(N, D)`` float32 L2-normalised."""
        h, w = regions.image_size
        diag = float(np.hypot(h, w))
        cost = np.full((len(tracks), len(regions)), _DISALLOWED)
        centres = _centres(regions.boxes)
        boxes = regions.boxes.astype(np.int64)
        masks = regions.masks
        areas = np.array([_crop(masks[k], boxes[k], copy=False).sum() for k in range(len(boxes))])
        for i, t in enumerate(tracks):
            shift = np.rint(t.velocity * (time_s - t.last_time)).astype(np.int64)
            predicted_box = t.box + np.array([shift[0], shift[1]] * 2, dtype=np.float32)
            dist = np.hypot(*(centres - _centres(predicted_box[None])).T)
            near = np.flatnonzero(dist <= self.max_distance * diag)
            if near.size == 0:
                continue
            origin = (int(t.box[0]) + int(shift[0]), int(t.box[1]) + int(shift[1]))
            # all regions (no copy of the masks); pairs whose boxes miss cost nothing
            iou = mask_ious(t.mask, origin, regions.masks, boxes, areas)[near]
            cos = vectors[near] @ t.vector if vectors.shape[1] else np.ones(len(near))
            same = regions.labels[near] == t.label
            cost[i, near] = np.where(
                iou >= self.min_iou if self.min_iou > 0 else True,
                self.iou_weight * (1.0 - iou)
                + self.vector_weight * (1.0 - np.clip(cos, -1.0, 1.0)) / 2.0
                + self.label_weight * (~same).astype(np.float64),
                _DISALLOWED,
            )
        cost[cost >= self.max_cost] = _DISALLOWED
        return cost

    def _continue_track(
        self, t: Track, time_s: float, regions: Regions, vectors: np.ndarray, j: int
    ) -> None:
        dt = time_s - t.last_time
        if dt > 0:
            measured = box_motion(t.box, regions.boxes[j]) / dt
            s = self.velocity_smoothing if t.hits > 1 else 0.0
            t.velocity = s * t.velocity + (1.0 - s) * measured
        v = self.vector_smoothing * t.vector + (1.0 - self.vector_smoothing) * vectors[j]
        t.vector = l2_normalise(v[None])[0]
        t.mask = _crop(regions.masks[j], regions.boxes[j])
        t.box = regions.boxes[j].copy()
        t.label = str(regions.labels[j])
        t.last_time = time_s
        t.hits += 1
        t.missed = 0

    @staticmethod
    def _check_compatible(track: Track, regions: Regions, vectors: np.ndarray) -> None:
        if regions.image_size != track.frame:
            raise ValueError(
                f"frame size changed within a video: regions are {regions.image_size}, "
                f"tracks {track.frame}"
            )
        if len(regions) and vectors.shape[1] != track.vector.shape[0]:
            raise ValueError(
                f"vector dimension changed within a video: {vectors.shape[1]} after "
                f"{track.vector.shape[0]}"
            )

    def _dump_state(self, state: IouState) -> dict[str, Any]:
        return {
            "tracks": [
                {
                    "id": t.id,
                    "mask": dict(rle_codec.encode(_uncrop(t.mask, t.box, t.frame))),
                    "box": t.box.tolist(),
                    "velocity": t.velocity.tolist(),
                    "vector": t.vector.tolist(),
                    "label": t.label,
                    "last_time": t.last_time,
                    "hits": t.hits,
                    "missed": t.missed,
                }
                for t in state.tracks
            ]
        }

    def _load_state(self, data: dict[str, Any]) -> IouState:
        tracks = []
        for d in data["tracks"]:
            full = rle_codec.decode(d["mask"])
            box = np.asarray(d["box"], dtype=np.float32).reshape(4)
            tracks.append(
                Track(
                    id=int(d["id"]),
                    mask=_crop(full, box),
                    box=box,
                    frame=(int(full.shape[0]), int(full.shape[1])),
                    velocity=np.asarray(d["velocity"], dtype=np.float64).reshape(2),
                    vector=np.asarray(d["vector"], dtype=np.float32).reshape(-1),
                    label=str(d["label"]),
                    last_time=float(d["last_time"]),
                    hits=int(d["hits"]),
                    missed=int(d["missed"]),
                )
            )
        return IouState(tracks=tracks)


def _crop(mask: np.ndarray, box: np.ndarray, copy: bool = True) -> np.ndarray:
    """The ``box`` (XYXY) part of an ``HxW`` bool mask (a copy unless ``copy`` is False)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    part = mask[y0:y1, x0:x1]
    return part.copy() if copy else part


def _uncrop(crop: np.ndarray, box: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """The ``frame``-sized ``HxW`` bool mask of a crop taken at ``box``."""
    full = np.zeros(frame, dtype=bool)
    x0, y0 = int(box[0]), int(box[1])
    full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
    return full


def mask_ious(
    crop: np.ndarray,
    origin: tuple[int, int],
    masks: np.ndarray,
    boxes: np.ndarray,
    areas: np.ndarray,
) -> np.ndarray:
    """``(N,)`` float64 IoU of one mask with ``NxHxW`` bool ``masks``.

    The mask is an ``hxw`` bool ``crop`` whose top-left pixel lies at ``origin`` = ``(x, y)``
    in the frame (it may reach outside the frame; what does is dropped). ``boxes`` are the
    masks' ``(N, 4)`` int XYXY tight boxes, ``areas`` their ``(N,)`` pixel counts. Only the
    overlap of the boxes is read, so the cost grows with the objects, not with the frame.
    """
    n, h, w = masks.shape
    out = np.zeros(n)
    ox, oy = origin
    ch, cw = crop.shape
    vx0, vy0, vx1, vy1 = max(0, ox), max(0, oy), min(w, ox + cw), min(h, oy + ch)
    if vx1 <= vx0 or vy1 <= vy0:
        return out
    area = int(crop[vy0 - oy : vy1 - oy, vx0 - ox : vx1 - ox].sum())
    for k in range(n):
        x0, y0 = max(vx0, int(boxes[k, 0])), max(vy0, int(boxes[k, 1]))
        x1, y1 = min(vx1, int(boxes[k, 2])), min(vy1, int(boxes[k, 3]))
        inter = 0
        if x1 > x0 and y1 > y0:
            part = crop[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            inter = int((part & masks[k, y0:y1, x0:x1]).sum())
        union = area + int(areas[k]) - inter
        out[k] = inter / union if union else 0.0
    return out


def box_motion(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``(2,)`` float64 ``(dx, dy)`` displacement between two XYXY boxes: per axis, the larger
    of the two edge displacements unless the edges move opposite ways (an object sliding behind
    something or out of the frame keeps one edge moving at its true speed while the other
    stops); when they do, the centre displacement (the box grew or shrank about its centre)."""
    d = after.astype(np.float64) - before.astype(np.float64)
    out = np.empty(2)
    for axis in (0, 1):
        a, b = d[axis], d[axis + 2]
        out[axis] = (a + b) / 2 if a * b < 0 else (a if abs(a) >= abs(b) else b)
    return out


def _centres(boxes: np.ndarray) -> np.ndarray:
    """``(N, 2)`` float64 centres of ``(N, 4)`` XYXY boxes."""
    b = boxes.astype(np.float64)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
