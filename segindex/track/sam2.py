"""The ``sam2`` tracker: SAM 2 (transformers ``Sam2VideoModel``) propagates the segmenter's masks
through every frame between the samples (rules in :mod:`segindex.track.propagate`).

Streaming: frames are fed one at a time (``Sam2VideoProcessor.init_video_session`` with no
video), the session's object memories are kept on the CPU (``inference_state_device``), and after
each frame the session forgets what SAM 2 no longer reads: frames before the current one, memories
older than ``num_maskmem``/``max_object_pointers_in_encoder`` frames, conditioning (seeded) frames
beyond the latest ``max_cond_frames`` per object. Memory therefore stays flat over a long video.

Session frame numbers are the session's own steps (0, 1, 2, ...), not the video's frame indices:
SAM 2 reads its memory at ``step - 1 ... step - num_maskmem``, which must be the frames it was fed
(at ``frame_fps`` they are not consecutive video frames).

torch and transformers are imported only when the tracker is built.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segindex.device import autocast, resolve_device, resolve_precision
from segindex.segment.hf import load_pretrained
from segindex.track.propagate import PropagatingTracker, Propagation
from segindex.validate import integer

DEFAULT_SAM2_MODEL = "facebook/sam2.1-hiera-tiny"
#: per-object dicts of a transformers ``Sam2VideoInferenceSession`` keyed by object index
_PER_OBJECT = (
    "point_inputs_per_obj", "mask_inputs_per_obj", "output_dict_per_obj", "frames_tracked_per_obj"
)  # fmt: skip


@dataclass
class _Session:
    inner: Any  # transformers Sam2VideoInferenceSession
    step: int = -1
    size: tuple[int, int] | None = None  # (height, width) of the frames
    pixels: Any = None  # pixel values of the current frame


class Sam2Propagator:
    """SAM 2 video propagation behind the :class:`~segindex.track.propagate.Propagator`
    interface; ``model`` is a hub id or a local directory (config, weights, processor)."""

    def __init__(
        self,
        model: str = DEFAULT_SAM2_MODEL,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_cond_frames: int = 4,
    ) -> None:
        self.model_id = str(model)
        self.max_cond_frames = integer("max_cond_frames", max_cond_frames, lo=1)
        self.device, self.precision, self.model, self.processor = load_video_model(
            self.model_id, device, precision, _from_pretrained, "SAM 2 video (Sam2VideoModel)"
        )
        self._keep = memory_steps(self.model.config)

    def start(self) -> _Session:
        return _Session(open_session(self.processor, self.device))

    def track(
        self, session: _Session, image: np.ndarray | None, seeds: Mapping[int, np.ndarray]
    ) -> Propagation:
        import torch

        s = session.inner
        if image is not None:
            inputs = self.processor(images=image, return_tensors="pt")
            session.step += 1
            session.size = (int(image.shape[0]), int(image.shape[1]))
            session.pixels = inputs.pixel_values[0]
        if session.size is None or session.step < 0:
            raise ValueError("the first call of a SAM 2 session needs a frame")
        if seeds:
            ids = [int(i) for i in seeds]
            masks = [np.asarray(seeds[i], dtype=bool) for i in ids]
            self.processor.add_inputs_to_inference_session(
                s, frame_idx=session.step, obj_ids=ids, input_masks=masks,
                original_size=session.size,
            )  # fmt: skip
        if s.get_obj_num() == 0:
            return Propagation.empty(*session.size)
        # the frame is passed again when only seeds are new: transformers' non-streaming path
        # (frame=None) counts the session's frames, which forgetting keeps at 1 (NaN pointers);
        # its vision features come from the session's cache, not a second encoder pass
        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model(inference_session=s, frame=session.pixels, frame_idx=session.step)
        masks = self.processor.post_process_masks(
            [out.pred_masks.float().cpu()], original_sizes=[list(session.size)], binarize=True
        )[0][:, 0]  # (K, H, W) bool
        scores = torch.sigmoid(out.object_score_logits.float().reshape(-1)).cpu().numpy()
        forget_before(s, session.step, self._keep, self.max_cond_frames)
        return Propagation(
            np.asarray(out.object_ids, dtype=np.int64),
            masks.numpy().astype(bool),
            scores.astype(np.float32),
        )

    def drop(self, session: _Session, ids: Sequence[int]) -> None:
        """Remove objects from the session (transformers has no call for it: the per-object
        dicts are re-indexed so the remaining objects keep their memories)."""
        s = session.inner
        gone = {int(i) for i in ids}
        keep = [o for o in s.obj_ids if o not in gone]
        if len(keep) == len(s.obj_ids):
            return
        old = [s._obj_id_to_idx[o] for o in keep]
        for name in _PER_OBJECT:
            d = getattr(s, name)
            setattr(s, name, {new: d[i] for new, i in enumerate(old)})
        s._obj_id_to_idx = OrderedDict((o, k) for k, o in enumerate(keep))
        s._obj_idx_to_id = OrderedDict((k, o) for k, o in enumerate(keep))
        s.obj_ids = list(keep)
        s.obj_with_new_inputs = [o for o in s.obj_with_new_inputs if o not in gone]


def load_video_model(
    model_id: str, device: str, precision: str, build: Any, what: str
) -> tuple[str, str, Any, Any]:
    """``(device, precision, model, processor)`` of a transformers video checkpoint (hub id or
    directory) through :func:`~segindex.segment.hf.load_pretrained`, in eval mode on device."""
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    model, processor = load_pretrained(
        model_id,
        build,
        expected="its config.json, weights and processor files",
        wrong_kind=lambda exc: f"not a {what} checkpoint: {exc}",
    )
    model.to(device).eval()
    return device, precision, model, processor


def memory_steps(config: Any) -> int:
    """How many past steps a SAM 2-style memory reads (memory frames, object pointers)."""
    return max(int(config.num_maskmem), int(config.max_object_pointers_in_encoder)) + 1


def open_session(processor: Any, device: str) -> Any:
    """A streaming transformers video session: inference on ``device``, state and frames kept
    on the CPU (offloaded), float32."""
    import torch

    return processor.init_video_session(
        inference_device=device,
        inference_state_device="cpu",
        video_storage_device="cpu",
        dtype=torch.float32,
    )


def forget_before(s: Any, step: int, keep: int, max_cond: int) -> None:
    """Drop from a transformers SAM 2/SAM 3 video session what it will not read again: frames
    before ``step``, per-object outputs older than ``keep`` steps, conditioning outputs beyond the
    latest ``max_cond``, and old prompts. So memory does not grow with the video."""
    if s.processed_frames:
        for k in [k for k in s.processed_frames if k < step]:
            del s.processed_frames[k]
    oldest = step - keep
    for idx in list(s.output_dict_per_obj):
        out = s.output_dict_per_obj[idx]
        for k in [k for k in out["non_cond_frame_outputs"] if k < oldest]:
            del out["non_cond_frame_outputs"][k]
        for k in sorted(out["cond_frame_outputs"])[:-max_cond]:
            del out["cond_frame_outputs"][k]
        for d in (s.point_inputs_per_obj[idx], s.mask_inputs_per_obj[idx]):
            for k in [k for k in d if k < step]:
                del d[k]
        tracked = s.frames_tracked_per_obj[idx]
        for k in [k for k in tracked if k < oldest]:
            del tracked[k]


class Sam2Tracker(PropagatingTracker):
    """``sam2``: SAM 2 propagation of the segmenter's masks (see :mod:`segindex.track.propagate`
    for ``match_iou``, ``max_missed``, ``presence``, ``max_objects``, ``reseed``, ``backfill``,
    ``frame_fps``).

    model:            hub id (default ``facebook/sam2.1-hiera-tiny``; ``-small``, ``-base-plus``,
                      ``-large``) or a local directory
    device:           ``auto``, ``cpu``, ``cuda[:N]``, ``mps``
    precision:        ``auto``, ``fp32``, ``fp16``, ``bf16`` (autocast, as the other backends)
    max_cond_frames:  seeded frames remembered per object (4)

    Raises ModelLoadError when the checkpoint cannot be found or read.
    """

    name = "sam2"

    def __init__(
        self, model: str = DEFAULT_SAM2_MODEL, *, device: str = "auto", precision: str = "auto",
        **options: Any,
    ) -> None:  # fmt: skip
        cond = options.pop("max_cond_frames", 4)
        propagator = Sam2Propagator(model, device=device, precision=precision, max_cond_frames=cond)
        super().__init__(propagator, **options)

    def describe(self) -> dict[str, Any]:
        p = self.propagator
        assert isinstance(p, Sam2Propagator)
        return {**super().describe(), "model": p.model_id, "max_cond_frames": p.max_cond_frames}


def _from_pretrained(source: str, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    network = Sam2VideoModel.from_pretrained(source, local_files_only=local_files_only)
    processor = Sam2VideoProcessor.from_pretrained(source, local_files_only=local_files_only)
    return network, processor


__all__ = ["DEFAULT_SAM2_MODEL", "Sam2Propagator", "Sam2Tracker", "forget_before"]
