"""Panoptic segmentation with any transformers universal-segmentation checkpoint.

Mask2Former, MaskFormer and OneFormer checkpoints (hub id or local directory) are loaded through
``AutoModelForUniversalSegmentation`` and their own processor; one forward pass per batch (per
inference size in the batch, see ``PanopticSegmenter._forward``), then the processor's
``post_process_panoptic_segmentation`` per image. Every panoptic segment becomes one ``Regions``
row with its mask at the original image resolution.

``runtime`` (:mod:`segindex.runtime`): ``torch`` runs the network as it is; ``openvino`` runs the
same network exported once per input shape and compiled for this CPU
(:class:`segindex.runtime.panoptic.CompiledPanoptic`); pre- and post-processing are the same code
either way. ``auto`` is OpenVINO on a CPU where it is installed (Mask2Former and MaskFormer;
OneFormer, whose text task input is not exported, runs with torch).

torch and transformers are imported only when a segmenter is built: importing this module is cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from segindex.config import DEFAULT_SEGMENTER_MODEL
from segindex.data.coco_panoptic import COCO_STUFF_NAMES
from segindex.device import autocast, resolve_device, resolve_precision, to_device
from segindex.errors import ModelLoadError
from segindex.regions import Regions
from segindex.runtime import check_runtime, notice, openvino_hint, resolve_runtime
from segindex.segment.base import Segmenter
from segindex.segment.hf import check_available, load_pretrained
from segindex.validate import fraction, optional_integer

if TYPE_CHECKING:
    import torch

    from segindex.runtime.panoptic import CompiledPanoptic

#: longest edge / shortest edge of the inference size, as in the COCO recipes (800 x 1333)
LONGEST_EDGE_RATIO = 1333 / 800
#: ``config.model_type`` of the architectures whose outputs and post-processing this backend knows
SUPPORTED_MODEL_TYPES = ("mask2former", "maskformer", "oneformer")


class PanopticSegmenter(Segmenter):
    """Panoptic segmenter over a transformers universal-segmentation checkpoint.

    Args:
        model: hub id (e.g. ``facebook/mask2former-swin-tiny-coco-panoptic``) or local directory
            holding ``config.json``, the weights and the processor config.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (see :mod:`segindex.device`): the
            network runs under autocast in that precision (with a compiled runtime: its
            precision hint, fp32 or bf16); post-processing is always float32.
        runtime: ``auto``, ``torch`` or ``openvino`` (see the module doc).
        resolution: shortest edge of the inference size in pixels (the longest edge is capped at
            ``resolution * 1333 / 800``); ``None`` keeps the processor's own default size.
        threshold: minimum class probability of a query to become a segment, in [0, 1].
        mask_threshold: level at which a query's soft mask is binarised, in [0, 1]. As in
            transformers' post-processing, it applies to mask probability x class score, so a
            query whose class score is below it never yields a segment.
        overlap_threshold: a segment is kept only if its share of the per-pixel competition
            between queries covers more than this fraction of its binarised mask, in [0, 1].
        thing_ids: label ids that are countable things; by default a label is stuff when its
            name is one of the 53 COCO-panoptic stuff names and a thing otherwise.

    :meth:`segment` takes ``HxWx3`` uint8 RGB images and returns one ``Regions`` per image: one row
    per panoptic segment, masks ``(N, H, W)`` bool at the image's own resolution and disjoint,
    ``label_ids`` from the checkpoint's ``config.id2label``, ``labels`` its class names, ``scores``
    the class probabilities (float32), ``is_thing`` as above.

    Raises:
        ModelLoadError: the checkpoint cannot be found, downloaded or read.
        ConfigError: an option is out of range.
    """

    name = "panoptic"

    def __init__(
        self,
        model: str = DEFAULT_SEGMENTER_MODEL,
        *,
        device: str = "auto",
        precision: str = "auto",
        resolution: int | None = 384,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_threshold: float = 0.8,
        thing_ids: Iterable[int] | None = None,
        runtime: str = "auto",
    ) -> None:
        check_runtime(runtime)
        self.resolution = optional_integer("resolution", resolution, lo=32)
        self.threshold = fraction("threshold", threshold)
        self.mask_threshold = fraction("mask_threshold", mask_threshold)
        self.overlap_threshold = fraction("overlap_threshold", overlap_threshold)
        self.model_id = str(model)
        self.thing_ids = None if thing_ids is None else frozenset(int(i) for i in thing_ids)
        check_available(self.model_id)  # a missing Hub model is reported before torch loads
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)

        self.model, self.processor = _load(self.model_id)
        self.model.to(self.device).eval()
        config = self.model.config
        #: OneFormer conditions on a text task ("the task is panoptic") given to its processor
        self._needs_task_input = getattr(config, "model_type", "") == "oneformer"
        #: ``{label id: class name}`` of the checkpoint
        self.id2label: dict[int, str] = {int(k): str(v) for k, v in config.id2label.items()}
        self.runtime = resolve_runtime(runtime, self.device)
        self._compiled: CompiledPanoptic | None = None
        if self.runtime != "torch" and self._needs_task_input:
            if runtime != "auto":
                notice(
                    "oneformer-torch",
                    f"segindex: OneFormer runs with torch (runtime {self.runtime!r} does not "
                    "take its text task input)",
                )
            self.runtime = "torch"
        if self.runtime != "torch":
            from segindex.runtime.panoptic import CompiledPanoptic

            self._compiled = CompiledPanoptic(
                self.model,
                model=self.model_id,
                runtime=self.runtime,
                hint=openvino_hint(self.precision),
            )

    def runtime_info(self) -> dict[str, Any]:
        """How the network runs (not part of :meth:`describe`): ``runtime`` and ``precision``,
        and for a compiled runtime the input shapes compiled so far."""
        info: dict[str, Any] = {"runtime": self.runtime, "precision": self.precision}
        if self._compiled is not None:
            info["inference_precision"] = self._compiled.precision
            info["shapes"] = [list(s) for s in self._compiled.shapes()]
        return info

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "resolution": self.resolution,
            "threshold": self.threshold,
            "mask_threshold": self.mask_threshold,
            "overlap_threshold": self.overlap_threshold,
            "thing_ids": None if self.thing_ids is None else sorted(self.thing_ids),
        }

    def is_thing(self, label_id: int) -> bool:
        """Thing (True) or stuff (False) for a label id, see ``thing_ids`` in the class doc."""
        if self.thing_ids is not None:
            return label_id in self.thing_ids
        return self.id2label.get(label_id, "") not in COCO_STUFF_NAMES

    def _inference_size(self) -> dict[str, int] | None:
        if self.resolution is None:
            return None
        return {
            "shortest_edge": self.resolution,
            "longest_edge": round(self.resolution * LONGEST_EDGE_RATIO),
        }

    def _processor_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"return_tensors": "pt", "input_data_format": "channels_last"}
        size = self._inference_size()
        if size is not None:
            kwargs["size"] = size
        return kwargs

    def preprocessor(self) -> Callable[[np.ndarray], Any] | None:
        """Resize + normalise one image (run by the ingest runner's decode workers); ``None``
        for OneFormer, whose text task input is built with the batch."""
        if self._needs_task_input:
            return None
        return functools.partial(_prepare_one, self.processor, self._processor_kwargs())

    def _prepare(self, images: list[np.ndarray]) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """Per image its unpadded network input ``(3, h, w)`` float32 (resized, normalised);
        plus batch-aligned extra inputs (``task_inputs`` for OneFormer)."""
        kwargs = self._processor_kwargs()
        if self._needs_task_input:
            kwargs["task_inputs"] = ["panoptic"] * len(images)
        out = self.processor(images=images, **kwargs)
        pixels = _unpad(out["pixel_values"], out.get("pixel_mask"))
        extra = {k: v for k, v in out.items() if k not in ("pixel_values", "pixel_mask")}
        return pixels, extra

    def _segment_batch(
        self, images: list[np.ndarray], prepared: list[Any] | None = None
    ) -> list[Regions]:
        import torch

        pixels: list[Any] = list(prepared) if prepared is not None else [None] * len(images)
        missing = [i for i, p in enumerate(pixels) if p is None]
        extra: dict[str, Any] = {}
        if missing:
            made, extra = self._prepare([images[i] for i in missing])
            for i, t in zip(missing, made, strict=True):
                pixels[i] = t
            if extra and len(missing) != len(images):
                raise RuntimeError("OneFormer inputs cannot be part prepared")
        tensors = [torch.as_tensor(p) for p in pixels]
        results: list[Regions] = []
        with torch.inference_mode():
            for image, logits in zip(images, self._forward(tensors, extra), strict=True):
                height, width = image.shape[:2]
                class_logits, mask_logits = logits
                panoptic = self.processor.post_process_panoptic_segmentation(
                    SimpleNamespace(
                        class_queries_logits=class_logits, masks_queries_logits=mask_logits
                    ),
                    threshold=self.threshold,
                    mask_threshold=self.mask_threshold,
                    overlap_mask_area_threshold=self.overlap_threshold,
                    label_ids_to_fuse=set(),
                    target_sizes=[(height, width)],
                )[0]
                results.append(self._to_regions(panoptic, height, width))
        return results

    def _forward(
        self, pixels: list[torch.Tensor], extra: dict[str, Any]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the network on ``(3, h, w)`` inputs; per image ``(class logits (1, Q, C+1),
        mask logits (1, Q, h', w'))`` as float32.

        One forward pass per distinct inference size in the batch (usually one or two: photos
        come in few aspect ratios). Images are never padded to a larger batch-mate: padding
        changes the network's output (transformers#39382), and transformers' post-processing
        stretches the padded logit map onto the image, misplacing every mask. So an image gets
        the same regions whatever it is batched with.
        """
        import torch

        if self._compiled is not None:
            out = []
            for p in pixels:
                class_logits, mask_logits = self._compiled(p.unsqueeze(0).numpy())
                out.append((torch.from_numpy(class_logits), torch.from_numpy(mask_logits)))
            return out
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(pixels):
            groups.setdefault((int(p.shape[-2]), int(p.shape[-1])), []).append(i)
        per_image: list[Any] = [None] * len(pixels)
        for (height, width), members in groups.items():
            batch = torch.stack([pixels[i] for i in members])
            inputs: dict[str, Any] = {
                "pixel_values": to_device(batch, self.device),
                "pixel_mask": torch.ones(
                    (len(members), height, width), dtype=torch.long, device=self.device
                ),
            }
            for key, value in extra.items():
                if isinstance(value, torch.Tensor) and value.shape[:1] == (len(pixels),):
                    value = value[members]
                inputs[key] = to_device(value, self.device)
            with autocast(self.device, self.precision):
                outputs = self.model(**inputs)
            for j, i in enumerate(members):
                per_image[i] = (
                    outputs.class_queries_logits[j : j + 1].float(),
                    outputs.masks_queries_logits[j : j + 1].float(),
                )
        return per_image

    def _to_regions(self, panoptic: dict[str, Any], height: int, width: int) -> Regions:
        """``{"segmentation": (H, W) int segment ids, "segments_info": [...]}`` -> ``Regions``."""
        import torch

        info = list(panoptic["segments_info"])
        if not info:
            return Regions.empty(height, width)
        segmentation = panoptic["segmentation"]
        ids = torch.tensor([s["id"] for s in info], device=segmentation.device)
        masks = (segmentation.unsqueeze(0) == ids.view(-1, 1, 1)).cpu().numpy()  # (N, H, W) bool
        keep = masks.reshape(len(info), -1).any(axis=1)
        label_ids = [int(s["label_id"]) for s in info]
        return Regions.from_masks(
            masks,
            label_ids=label_ids,
            labels=[self.id2label.get(i, f"class_{i}") for i in label_ids],
            scores=[float(s["score"]) for s in info],
            is_thing=[self.is_thing(i) for i in label_ids],
        )[keep]


def _unpad(pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> list[torch.Tensor]:
    """``(B, 3, Hp, Wp)`` padded bottom/right (``pixel_mask`` 1 on real pixels) -> per image
    ``(3, h, w)``."""
    if pixel_mask is None:
        return list(pixel_values)
    valid = pixel_mask.bool()
    heights = valid.any(dim=2).sum(dim=1).tolist()
    widths = valid.any(dim=1).sum(dim=1).tolist()
    return [pv[:, :h, :w] for pv, h, w in zip(pixel_values, heights, widths, strict=True)]


def _prepare_one(processor: Any, kwargs: dict[str, Any], image: np.ndarray) -> np.ndarray:
    """``(3, h, w)`` float32 network input of one ``HxWx3`` uint8 RGB image (module level, so
    decode worker processes can run it)."""
    out = processor(images=[image], **kwargs)
    (pixels,) = _unpad(out["pixel_values"], out.get("pixel_mask"))
    return np.ascontiguousarray(pixels.numpy(), dtype=np.float32)


def _load(model: str) -> tuple[Any, Any]:
    """(network, processor) for a hub id or local directory; ``ModelLoadError`` if impossible."""
    return load_pretrained(
        model,
        lambda source, local_only: _from_pretrained(source, local_files_only=local_only),
        expected="its config.json, weights and preprocessor_config.json",
        wrong_kind=lambda exc: (
            f"not a universal-segmentation checkpoint (Mask2Former, MaskFormer, OneFormer): {exc}"
        ),
    )


def _from_pretrained(source: str, *, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import (
        AutoImageProcessor,
        AutoModelForUniversalSegmentation,
        AutoProcessor,
    )

    network = AutoModelForUniversalSegmentation.from_pretrained(
        source, local_files_only=local_files_only
    )
    model_type = network.config.model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"segmenter model {source!r} is a {model_type!r} checkpoint; the panoptic segmenter "
            f"supports {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    # OneFormer's full processor tokenises the task text; the others need only images.
    auto = AutoProcessor if model_type == "oneformer" else AutoImageProcessor
    processor = auto.from_pretrained(source, local_files_only=local_files_only)
    return network, processor


__all__ = ["PanopticSegmenter"]
