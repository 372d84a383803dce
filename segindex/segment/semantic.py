"""Semantic segmentation with any transformers ``AutoModelForSemanticSegmentation`` checkpoint.

SegFormer by default (also BEiT, DPT, MobileViT, UperNet... checkpoints of that auto class). The
per-pixel class map (logits upsampled to the image size, arg-max) is split into connected
components (``scipy.ndimage.label``, 8-connectivity); every component of at least ``min_area``
pixels becomes one region labelled with its class. Semantic models do not separate instances:
two touching people are one region.

torch and transformers are imported only when a segmenter is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from segindex.data.coco_panoptic import COCO_STUFF_NAMES
from segindex.device import autocast, resolve_device, resolve_precision, to_device
from segindex.regions import Regions
from segindex.segment.base import Segmenter
from segindex.segment.hf import load_pretrained
from segindex.validate import positive_int

DEFAULT_SEMANTIC_MODEL = "nvidia/segformer-b0-finetuned-ade-512-512"
#: ADE20K / Cityscapes stuff-like class names besides COCO's (for ``is_thing``)
_EXTRA_STUFF = frozenset(
    {
        "wall", "floor", "ceiling", "road", "grass", "sidewalk", "earth", "mountain", "plant",
        "water", "sea", "field", "sand", "skyscraper", "path", "stairs", "runway", "river",
        "hill", "land", "dirt track", "sky", "tree", "vegetation", "terrain", "building",
        "background", "floor-other", "ground",
    }
)  # fmt: skip


class SemanticSegmenter(Segmenter):
    """Class map -> connected components -> regions.

    Args:
        model: hub id (default ``nvidia/segformer-b0-finetuned-ade-512-512``) or a local
            directory with ``config.json``, weights and ``preprocessor_config.json``.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16``: autocast precision of the network
            (see :mod:`segindex.device`); probabilities are computed in float32.
        min_area: components with fewer pixels are dropped (>= 1).
        ignore_labels: class ids never turned into regions (e.g. a "background" class).
        thing_ids: class ids that are countable things; by default a class is stuff when its
            name is a COCO-panoptic stuff name or a common ADE20K/Cityscapes stuff name.

    Regions: ``label_ids``/``labels`` from ``config.id2label``, ``scores`` the component's mean
    softmax probability of its class (float32).
    """

    name = "semantic"

    def __init__(
        self,
        model: str = DEFAULT_SEMANTIC_MODEL,
        *,
        device: str = "auto",
        precision: str = "auto",
        min_area: int = 64,
        ignore_labels: Iterable[int] = (),
        thing_ids: Iterable[int] | None = None,
    ) -> None:
        self.min_area = positive_int("min_area", min_area)
        self.model_id = str(model)
        self.ignore_labels = frozenset(int(i) for i in ignore_labels)
        self.thing_ids = None if thing_ids is None else frozenset(int(i) for i in thing_ids)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model, self.processor = load_pretrained(
            self.model_id,
            _from_pretrained,
            expected="its config.json, weights and preprocessor_config.json",
            wrong_kind=lambda exc: f"not a semantic-segmentation checkpoint: {exc}",
        )
        self.model.to(self.device).eval()
        self.id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "min_area": self.min_area,
            "ignore_labels": sorted(self.ignore_labels),
            "thing_ids": None if self.thing_ids is None else sorted(self.thing_ids),
        }

    def is_thing(self, label_id: int) -> bool:
        if self.thing_ids is not None:
            return label_id in self.thing_ids
        name = self.id2label.get(label_id, "").split(",")[0].strip().lower()
        return name not in COCO_STUFF_NAMES and name not in _EXTRA_STUFF

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        import torch

        out: list[Regions] = []
        with torch.inference_mode():
            for image in images:  # one by one: the processor resizes each to a fixed size anyway
                inputs = self.processor(
                    images=image, return_tensors="pt", input_data_format="channels_last"
                )
                with autocast(self.device, self.precision):
                    logits = self.model(
                        pixel_values=to_device(inputs["pixel_values"], self.device)
                    ).logits
                logits = logits.float()
                logits = torch.nn.functional.interpolate(
                    logits, size=image.shape[:2], mode="bilinear", align_corners=False
                )[0]
                probs = logits.softmax(dim=0)
                conf, classes = probs.max(dim=0)
                out.append(self._components(classes.cpu().numpy(), conf.float().cpu().numpy()))
        return out

    def _components(self, classes: np.ndarray, confidence: np.ndarray) -> Regions:
        """``(H, W)`` int class map + ``(H, W)`` float confidence -> one region per component."""
        masks, label_ids, scores = class_map_components(
            classes, confidence, self.min_area, self.ignore_labels
        )
        return Regions.from_masks(
            masks,
            label_ids=label_ids,
            labels=[self.id2label.get(i, f"class_{i}") for i in label_ids],
            scores=scores,
            is_thing=[self.is_thing(i) for i in label_ids],
        )


def class_map_components(
    classes: np.ndarray,
    confidence: np.ndarray | None = None,
    min_area: int = 1,
    ignore_labels: Iterable[int] = (),
) -> tuple[np.ndarray, list[int], list[float]]:
    """Split an ``(H, W)`` int class map into 8-connected components.

    Returns ``(masks (N, H, W) bool, label ids, scores)``; scores are the mean ``confidence``
    over each component (1.0 without one). Components under ``min_area`` pixels are dropped.
    """
    from scipy import ndimage

    ignore = set(ignore_labels)
    structure = np.ones((3, 3), dtype=bool)
    masks: list[np.ndarray] = []
    label_ids: list[int] = []
    scores: list[float] = []
    for cls in np.unique(classes):
        if int(cls) in ignore:
            continue
        components, n = ndimage.label(classes == cls, structure=structure)
        if n == 0:
            continue
        areas = np.bincount(components.ravel(), minlength=n + 1)
        for comp in np.flatnonzero(areas[1:] >= min_area) + 1:
            mask = components == comp
            masks.append(mask)
            label_ids.append(int(cls))
            scores.append(float(confidence[mask].mean()) if confidence is not None else 1.0)
    if not masks:
        return np.zeros((0, *classes.shape), dtype=bool), [], []
    return np.stack(masks), label_ids, scores


def _from_pretrained(source: str, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    network = AutoModelForSemanticSegmentation.from_pretrained(
        source, local_files_only=local_files_only
    )
    processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_files_only)
    return network, processor


__all__ = ["DEFAULT_SEMANTIC_MODEL", "SemanticSegmenter", "class_map_components"]
