"""The ``sam3`` tracker: SAM 3 video (transformers ``Sam3VideoModel``) detects and tracks every
instance of its text concepts ("dog", "umbrella") in every frame; the segmenter's regions are
linked through those tracks (rules in :mod:`segindex.track.propagate`).

SAM 3 keeps its own object ids. Each of our objects is bound to one SAM 3 object: when a region
seeds an object, it is bound to the SAM 3 instance whose mask overlaps it best (mask IoU at least
``bind_iou``); the object then has that instance's mask and score in every frame, is absent while
SAM 3 does not report the instance, and ends after ``max_missed`` such frames. A region that no
instance covers still gets an id and its sampled frames, but nothing is propagated for it. Pair
it with the ``sam3`` segmenter on the same concepts so the indexed regions are SAM 3's instances.

Streaming as for ``sam2``: one frame at a time, state on the CPU, old memories forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segindex.device import autocast
from segindex.errors import ConfigError
from segindex.track.propagate import PropagatingTracker, Propagation, match_masks
from segindex.track.sam2 import forget_before, load_video_model, memory_steps, open_session
from segindex.validate import number, phrases

DEFAULT_SAM3_VIDEO_MODEL = "facebook/sam3"


@dataclass
class _Session:
    inner: Any  # transformers Sam3VideoInferenceSession
    step: int = -1
    size: tuple[int, int] | None = None
    found: Propagation | None = None  # SAM 3's instances in the current frame (its ids)
    bound: dict[int, int] = field(default_factory=dict)  # our id -> SAM 3 id


class Sam3VideoPropagator:
    """SAM 3 video behind the :class:`~segindex.track.propagate.Propagator` interface."""

    def __init__(
        self,
        model: str,
        concepts: Sequence[str],
        *,
        device: str = "auto",
        precision: str = "auto",
        bind_iou: float = 0.3,
    ) -> None:
        self.concepts = phrases("concepts", concepts)
        self.bind_iou = number("bind_iou", bind_iou, lo=0, hi=1, lo_open=True)
        self.model_id = str(model)
        self.device, self.precision, self.model, self.processor = load_video_model(
            self.model_id, device, precision, _from_pretrained, "SAM 3 video (Sam3VideoModel)"
        )
        self._keep = memory_steps(self.model.config.tracker_config)

    def start(self) -> _Session:
        inner = open_session(self.processor, self.device)
        self.processor.add_text_prompt(inner, list(self.concepts))
        return _Session(inner)

    def track(
        self, session: _Session, image: np.ndarray | None, seeds: Mapping[int, np.ndarray]
    ) -> Propagation:
        if image is not None:
            session.found = self._detect(session, image)
        if session.found is None or session.size is None:
            raise ValueError("the first call of a SAM 3 session needs a frame")
        found = session.found
        if seeds:
            ids = [int(i) for i in seeds]
            masks = np.stack([np.asarray(seeds[i], dtype=bool) for i in ids])
            for i in ids:
                session.bound.pop(i, None)
            taken = set(session.bound.values())
            free = np.array([int(o) not in taken for o in found.ids.tolist()], dtype=bool)
            free_ids = found.ids[free]
            for j, k in match_masks(masks, found.masks[free], self.bind_iou):
                session.bound[ids[j]] = int(free_ids[k])
        ours = sorted(session.bound)
        h, w = session.size
        out = Propagation.empty(h, w)
        if ours:
            where = {int(o): k for k, o in enumerate(found.ids.tolist())}
            masks = np.zeros((len(ours), h, w), bool)
            scores = np.zeros(len(ours), np.float32)
            for n, oid in enumerate(ours):
                at = where.get(session.bound[oid])
                if at is not None:
                    masks[n], scores[n] = found.masks[at], found.scores[at]
            out = Propagation(np.asarray(ours, np.int64), masks, scores)
        return out

    def drop(self, session: _Session, ids: Sequence[int]) -> None:
        for i in ids:
            session.bound.pop(int(i), None)

    def _detect(self, session: _Session, image: np.ndarray) -> Propagation:
        """Run SAM 3 on the next frame: its instances with their masks and scores."""
        import torch

        inputs = self.processor(images=image, return_tensors="pt")
        session.step += 1
        session.size = (int(image.shape[0]), int(image.shape[1]))
        s = session.inner
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model(
                inference_session=s, frame=inputs.pixel_values[0], frame_idx=session.step
            )
        res = self.processor.postprocess_outputs(s, out, original_sizes=[list(session.size)])
        forget_before(s, session.step, self._keep, 4)
        ids = res["object_ids"].cpu().numpy().astype(np.int64).reshape(-1)
        masks = res["masks"].cpu().numpy().astype(bool).reshape(len(ids), *session.size)
        scores = res["scores"].float().cpu().numpy().astype(np.float32).reshape(-1)
        return Propagation(ids, masks, np.clip(scores, 0, 1))


class Sam3VideoTracker(PropagatingTracker):
    """``sam3``: every instance of ``concepts`` tracked by SAM 3 video; the segmenter's regions
    take the ids of the instances they overlap (module docs; the ``propagate`` options apply:
    ``match_iou``, ``max_missed``, ``presence``, ``max_objects``, ``reseed``, ``backfill``,
    ``frame_fps``).

    model:     hub id (default ``facebook/sam3``) or a local directory
    concepts:  noun phrases to track (required), e.g. ``["dog", "person"]``
    bind_iou:  mask IoU a region needs with a SAM 3 instance to follow it (0.3)
    device, precision: as for the other torch backends
    """

    name = "sam3"

    def __init__(
        self, model: str = DEFAULT_SAM3_VIDEO_MODEL, *, concepts: Sequence[str] | None = None,
        device: str = "auto", precision: str = "auto", **options: Any,
    ) -> None:  # fmt: skip
        if concepts is None:
            raise ConfigError("tracker 'sam3' needs concepts, e.g. concepts=['dog']")
        bind = options.pop("bind_iou", 0.3)
        propagator = Sam3VideoPropagator(
            model, concepts, device=device, precision=precision, bind_iou=bind
        )
        super().__init__(propagator, **options)

    def describe(self) -> dict[str, Any]:
        p = self.propagator
        assert isinstance(p, Sam3VideoPropagator)
        extra = {"model": p.model_id, "concepts": list(p.concepts), "bind_iou": p.bind_iou}
        return {**super().describe(), **extra}


def _from_pretrained(source: str, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    network = Sam3VideoModel.from_pretrained(source, local_files_only=local_files_only)
    processor = Sam3VideoProcessor.from_pretrained(source, local_files_only=local_files_only)
    return network, processor


__all__ = ["DEFAULT_SAM3_VIDEO_MODEL", "Sam3VideoPropagator", "Sam3VideoTracker"]
