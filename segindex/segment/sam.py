"""SAM through transformers ``SamModel``: automatic mode and box/point prompts.

The image embedding is computed once per image (``SamModel.get_image_embeddings``); the mask
decoder then runs on ``points_per_batch`` prompts per call (transformers' "point batch"
dimension), and the processor's ``post_process_masks`` brings the low-resolution mask logits back
to the image's own size. Grid, thresholds, NMS and crops are shared with the ONNX backend
(:mod:`segindex.segment.sam_auto`).

torch and transformers are imported only when a segmenter is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from segindex.device import autocast, resolve_device, resolve_precision, to_device
from segindex.segment.hf import load_pretrained
from segindex.segment.sam_auto import SamLikeSegmenter

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"


class SamSegmenter(SamLikeSegmenter):
    """Segment Anything (transformers ``SamModel``): automatic masks and box/point prompts.

    Args:
        model: hub id (default ``facebook/sam-vit-base``; also ``-vit-large``, ``-vit-huge``,
            SlimSAM/MedSAM checkpoints in the same format) or a local directory with
            ``config.json``, the weights and ``preprocessor_config.json``.
        device: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16``: autocast precision of the image
            encoder and mask decoder (see :mod:`segindex.device`); masks are post-processed in
            float32.
        multimask: in automatic mode, take SAM's three candidate masks per point (as
            segment-anything does) instead of one.
        **sam_options: see :class:`~segindex.segment.sam_auto.SamLikeSegmenter`.

    Raises:
        ModelLoadError: the checkpoint cannot be found, downloaded or read.
        ConfigError: an option is out of range.
    """

    name = "sam"

    def __init__(
        self,
        model: str = DEFAULT_SAM_MODEL,
        *,
        device: str = "auto",
        precision: str = "auto",
        multimask: bool = True,
        **sam_options: Any,
    ) -> None:
        super().__init__(**sam_options)
        self.model_id = str(model)
        self.multimask = bool(multimask)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model, self.processor = load_pretrained(
            self.model_id,
            _from_pretrained,
            expected="its config.json, weights and preprocessor_config.json",
            wrong_kind=lambda exc: f"not a SAM checkpoint (SamModel): {exc}",
        )
        self.model.to(self.device).eval()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "multimask": self.multimask,
            **self._sam_settings(),
        }

    def _embed(self, image: np.ndarray) -> dict[str, Any]:
        import torch

        inputs = self.processor(
            images=image, return_tensors="pt", input_data_format="channels_last"
        )
        with torch.inference_mode(), autocast(self.device, self.precision):
            embedding = self.model.get_image_embeddings(
                to_device(inputs["pixel_values"], self.device)
            )
        original = [int(v) for v in inputs["original_sizes"][0]]
        reshaped = [int(v) for v in inputs["reshaped_input_sizes"][0]]
        return {
            "embedding": embedding,
            "original_sizes": [original],
            "reshaped_input_sizes": [reshaped],
            "scale": np.array(
                [reshaped[1] / original[1], reshaped[0] / original[0]], dtype=np.float32
            ),
        }

    def _decode(
        self,
        state: dict[str, Any],
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        scale = state["scale"]
        n = len(boxes) if boxes is not None else len(points)  # type: ignore[arg-type]  # boxes or points
        kwargs: dict[str, Any] = {}
        if points is not None:
            pts = np.broadcast_to(points * scale, (n, *points.shape[1:]))
            lab = np.broadcast_to(labels, (n, points.shape[1]))  # type: ignore[arg-type]  # labels come with points
            kwargs["input_points"] = torch.from_numpy(np.array(pts[None], dtype=np.float32))
            kwargs["input_labels"] = torch.from_numpy(np.array(lab[None], dtype=np.int64))
        if boxes is not None:
            b = boxes * np.concatenate([scale, scale])
            kwargs["input_boxes"] = torch.from_numpy(np.array(b[None], dtype=np.float32))
        kwargs = to_device(kwargs, self.device)
        with torch.inference_mode():
            with autocast(self.device, self.precision):
                out = self.model(
                    image_embeddings=state["embedding"],
                    multimask_output=multimask and self.multimask,
                    **kwargs,
                )
            (logits,) = self.processor.image_processor.post_process_masks(
                out.pred_masks.float().cpu(),
                state["original_sizes"],
                state["reshaped_input_sizes"],
                binarize=False,
            )  # (B, K, H, W) float logits
        iou = out.iou_scores[0].float().cpu().numpy()  # (B, K)
        return logits.numpy(), iou


def _from_pretrained(source: str, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import SamModel, SamProcessor

    network = SamModel.from_pretrained(source, local_files_only=local_files_only)
    processor = SamProcessor.from_pretrained(source, local_files_only=local_files_only)
    return network, processor


__all__ = ["DEFAULT_SAM_MODEL", "SamSegmenter"]
