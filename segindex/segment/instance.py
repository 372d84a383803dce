"""Instance segmentation with torchvision's Mask R-CNN (``maskrcnn_resnet50_fpn_v2``).

Weights come from a local file (a state dict as saved by ``torch.save(model.state_dict())``, or a
checkpoint dict holding one under ``"model"``/``"state_dict"``), or from torchvision's usual
download (``weights="DEFAULT"``, cached under ``$TORCH_HOME``). The number of classes is read from
the state dict, so fine-tuned checkpoints load as they are; their class names come from
``categories`` (COCO's 91 torchvision categories when there are 91 classes).

Every detection scoring at least ``score_threshold`` becomes one region: its soft mask
thresholded at ``mask_threshold``, ``is_thing`` True. Instances may overlap.

torch and torchvision are imported only when a segmenter is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segindex.device import autocast, resolve_device, resolve_precision, to_device
from segindex.errors import ConfigError, ModelLoadError
from segindex.regions import Regions
from segindex.segment.base import Segmenter
from segindex.segment.hf import local_file, looks_like_path
from segindex.validate import fraction, integer, positive_int

_CLS_KEY = "roi_heads.box_predictor.cls_score.weight"


class InstanceSegmenter(Segmenter):
    """Mask R-CNN ResNet-50 FPN v2 (torchvision).

    Args:
        weights: ``"DEFAULT"`` (torchvision's COCO weights, downloaded once) or a local file path.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16``: autocast precision of the backbone
            and FPN (see :mod:`segindex.device`); region proposals, box regression and mask
            heads stay float32, so boxes keep full precision.
        score_threshold: minimum detection score, in [0, 1].
        mask_threshold: level at which soft masks are binarised, in [0, 1].
        min_area: masks with fewer pixels are dropped (>= 0).
        max_detections: at most this many detections per image.
        min_size, max_size: the network's input resize (shortest side, longest-side cap), as in
            torchvision (800, 1333); smaller is faster and misses small objects.
        categories: class names by label id (index 0 is the background); COCO's by default when
            the checkpoint has 91 classes, ``class_<id>`` otherwise.

    Raises:
        ModelLoadError: the weights cannot be found, downloaded or read.
        ConfigError: an option is out of range.
    """

    name = "instance"

    def __init__(
        self,
        weights: str = "DEFAULT",
        *,
        device: str = "auto",
        precision: str = "auto",
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
        min_area: int = 0,
        max_detections: int = 100,
        min_size: int = 800,
        max_size: int = 1333,
        categories: Sequence[str] | None = None,
        model: str | None = None,
    ) -> None:
        # ``model`` is an alias of ``weights``, so ``--segmenter-model FILE`` works on the CLI.
        if model is not None:
            weights = model
        self.score_threshold = fraction("score_threshold", score_threshold)
        self.mask_threshold = fraction("mask_threshold", mask_threshold)
        self.min_area = integer("min_area", min_area, lo=0)
        self.max_detections = positive_int("max_detections", max_detections)
        self.min_size = integer("min_size", min_size, lo=32)
        self.max_size = integer("max_size", max_size, lo=self.min_size)
        self.weights = str(weights)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model, num_classes = _load(
            self.weights,
            box_detections_per_img=self.max_detections,
            min_size=self.min_size,
            max_size=self.max_size,
        )
        self.model.to(self.device).eval()
        if self.precision != "fp32":
            # only the backbone (+ FPN) in reduced precision: the box coder casts anchors and
            # proposals to the dtype of the deltas, and bf16 box coordinates at 800-1333 px are
            # only good to 4-8 px, which would shift every mask
            self.model.backbone = _autocast_backbone(
                self.model.backbone, self.device, self.precision
            )
        self.categories = _categories(categories, num_classes)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": self.weights,
            "score_threshold": self.score_threshold,
            "mask_threshold": self.mask_threshold,
            "min_area": self.min_area,
            "max_detections": self.max_detections,
            "min_size": self.min_size,
            "max_size": self.max_size,
        }

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        import torch

        tensors = [
            to_device(torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))), self.device)
            .float()
            .div_(255.0)
            for im in images
        ]
        with torch.inference_mode():
            detections = self.model(tensors)
        return [self._to_regions(d, im.shape[:2]) for d, im in zip(detections, images, strict=True)]

    def _to_regions(self, det: dict[str, Any], size: tuple[int, int]) -> Regions:
        scores = det["scores"].float().cpu().numpy()
        keep = scores >= self.score_threshold
        if not keep.any():
            return Regions.empty(*size)
        masks = (det["masks"][:, 0].float().cpu().numpy() >= self.mask_threshold)[keep]
        labels = det["labels"].cpu().numpy()[keep]
        big = masks.sum(axis=(1, 2)) >= max(self.min_area, 1)
        masks, labels, scores = masks[big], labels[big], scores[keep][big]
        return Regions.from_masks(
            masks,
            label_ids=labels.astype(np.int64),
            labels=[
                self.categories[i] if i < len(self.categories) else f"class_{i}" for i in labels
            ],
            scores=scores,
            is_thing=[True] * len(masks),
        )


def _autocast_backbone(backbone: Any, device: str, precision: str) -> Any:
    """``backbone`` (a module returning an ``OrderedDict`` of feature maps) run under autocast,
    its features handed on as float32."""
    from collections import OrderedDict

    import torch

    class AutocastBackbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = backbone
            self.out_channels = getattr(backbone, "out_channels", None)

        def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
            with autocast(device, precision):
                features = self.inner(x)
            return OrderedDict((k, v.float()) for k, v in features.items())

    return AutocastBackbone()


def _categories(categories: Sequence[str] | None, num_classes: int) -> list[str]:
    if categories is not None:
        names = [str(c) for c in categories]
        if len(names) != num_classes:
            raise ConfigError(
                f"categories must name all {num_classes} classes (background first), "
                f"got {len(names)}"
            )
        return names
    if num_classes == 91:
        from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights

        return list(MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"])
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def _load(weights: str, **model_kwargs: int) -> tuple[Any, int]:
    """(network, number of classes) from ``"DEFAULT"`` or a local state-dict file."""
    from torchvision.models.detection import (
        MaskRCNN_ResNet50_FPN_V2_Weights,
        maskrcnn_resnet50_fpn_v2,
    )

    if weights.upper() in ("DEFAULT", "COCO_V1") and not looks_like_path(weights):
        tv = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
        try:
            model = maskrcnn_resnet50_fpn_v2(weights=tv, **model_kwargs)
        except Exception as exc:  # urllib/HTTP/OS errors when offline
            raise ModelLoadError(
                f"could not download Mask R-CNN weights ({tv.url}): {type(exc).__name__}: {exc}. "
                "Download the file where you have network and pass it: --segmenter-model FILE on "
                "the CLI or segmenter_options={'weights': 'FILE'} in Python."
            ) from exc
        return model, 91

    import torch

    path = local_file(weights, "Mask R-CNN weights file", "weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a bad file
        raise ModelLoadError(f"could not read Mask R-CNN weights {weights!r}: {exc}") from exc
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or _CLS_KEY not in state:
        raise ModelLoadError(
            f"{weights!r} is not a maskrcnn_resnet50_fpn_v2 state dict (no {_CLS_KEY!r})"
        )
    num_classes = int(state[_CLS_KEY].shape[0])
    model = maskrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=None,
        num_classes=num_classes,
        **model_kwargs,
    )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"{weights!r} does not fit maskrcnn_resnet50_fpn_v2: {str(exc)[:300]}"
        ) from exc
    return model, num_classes


__all__ = ["InstanceSegmenter"]
