"""SAM 3 concept segmentation (transformers ``Sam3Model``): every instance of a named concept.

A concept is a short noun phrase ("umbrella", "red car"); SAM 3 returns a mask, a box and a
score for every instance it finds, so a text query gives all the umbrellas of a photo, not the
single best mask. The image is encoded once per image (``get_vision_features``) and each concept's
text once per segmenter (``get_text_features``); the detector and mask decoder then run once per
(image, concept).

As an ingest segmenter it segments a concept list: ``concepts`` if given, else the index's label
vocabulary (:class:`~segindex.config.LabelPolicy`, given by the index through
:meth:`Sam3Segmenter.use_vocabulary`; the 133 COCO-panoptic names when used alone). Regions come
labelled: the concept's name and its position in the list as ``label_id`` (the label policy's
ids), so no CLIP zero-shot naming is needed.

Prompts: SAM 3 takes *exemplar* boxes (find everything like this box), not points; a box
prompt returns the instance that best overlaps the box (box IoU).

torch and transformers are imported only when a segmenter is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segindex.device import autocast, resolve_device, resolve_precision, to_device
from segindex.errors import ConfigError
from segindex.masks import box_iou_matrix
from segindex.regions import Regions
from segindex.segment.base import Segmenter, check_image
from segindex.segment.hf import load_pretrained
from segindex.validate import fraction, phrases

DEFAULT_SAM3_MODEL = "facebook/sam3"


class Sam3Segmenter(Segmenter):
    """SAM 3: masks of every instance of each concept.

    Args:
        model: hub id (default ``facebook/sam3``) or a local directory (config, weights,
            processor and tokenizer files).
        concepts: noun phrases to segment at ingest; ``None``: the index's label vocabulary.
        threshold: instance score (detection x presence probability) to keep a mask (0.5).
        mask_threshold: mask probability threshold (0.5).
        device, precision: as for the other torch backends (:mod:`segindex.device`).

    Raises:
        ModelLoadError: the checkpoint cannot be found or read.
        ConfigError: an option is out of range.
    """

    name = "sam3"
    promptable = True
    #: the index hands its label vocabulary to segmenters with this flag (when no concepts)
    wants_vocabulary = True
    segments_text = True

    def __init__(
        self,
        model: str = DEFAULT_SAM3_MODEL,
        *,
        concepts: Sequence[str] | None = None,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        self.threshold = fraction("threshold", threshold)
        self.mask_threshold = fraction("mask_threshold", mask_threshold)
        self.concepts: tuple[str, ...] | None = None
        self.explicit = concepts is not None
        if concepts is not None:
            self.concepts = phrases("concepts", concepts)
        self.model_id = str(model)
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model, self.processor = load_pretrained(
            self.model_id,
            _from_pretrained,
            expected="its config.json, weights, processor and tokenizer files",
            wrong_kind=lambda exc: f"not a SAM 3 checkpoint (Sam3Model): {exc}",
        )
        self.model.to(self.device).eval()
        self._text: dict[str, Any] = {}

    def use_vocabulary(self, names: Sequence[str]) -> None:
        """Segment ``names`` at ingest unless ``concepts`` were given."""
        if not self.explicit:
            self.concepts = phrases("label vocabulary", names)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model_id,
            "concepts": list(self.concepts) if self.explicit and self.concepts else None,
            "threshold": self.threshold,
            "mask_threshold": self.mask_threshold,
        }

    # -- text ----------------------------------------------------------------------------------

    def segment_text(self, image: np.ndarray, texts: str | Sequence[str]) -> Regions:
        """Every instance of each text in ``image`` (``HxWx3`` uint8 RGB): one region per
        instance, labelled with its text (``label_id`` = the text's position), best first
        within each text."""
        check_image(image)
        wanted = phrases("text", [texts] if isinstance(texts, str) else texts)
        vision = self._vision(image)
        parts = [self._concept(vision, image.shape[:2], k, p) for k, p in enumerate(wanted)]
        return Regions.concatenate(parts)

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        if self.concepts is None:
            from segindex.config import LabelPolicy

            self.concepts = LabelPolicy().names()
        return [self.segment_text(im, self.concepts) for im in images]

    # -- boxes ---------------------------------------------------------------------------------

    def prompt(
        self,
        image: np.ndarray,
        *,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
    ) -> Regions:
        """One mask per ``(B, 4)`` XYXY pixel box: the instance SAM 3 finds from the box as an
        exemplar that overlaps the box best (empty when none does). Points are refused."""
        check_image(image)
        if points is not None or point_labels is not None:
            raise ConfigError(
                "segmenter 'sam3' takes box prompts only (exemplar boxes); use 'sam' for points"
            )
        if boxes is None:
            raise ConfigError("give at least one box prompt")
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes):
            raise ValueError(f"boxes must be (B, 4) float32 XYXY pixels, got shape {boxes.shape}")
        h, w = image.shape[:2]
        vision = self._vision(image)
        masks = np.zeros((len(boxes), h, w), bool)
        scores = np.zeros(len(boxes), np.float32)
        for b, box in enumerate(boxes):
            found = self._run(vision, (h, w), "visual", box=box)
            if len(found):
                best = int(np.argmax(box_iou_matrix(box[None], found.boxes)[0]))
                masks[b], scores[b] = found.masks[best], found.scores[best]
        return Regions.from_masks(masks, scores=scores)

    # -- model ---------------------------------------------------------------------------------

    def _vision(self, image: np.ndarray) -> Any:
        import torch

        inputs = self.processor(images=image, return_tensors="pt")
        pixels = to_device(inputs["pixel_values"], self.device)
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.model.get_vision_features(pixel_values=pixels)

    def _concept(self, vision: Any, size: tuple[int, int], k: int, phrase: str) -> Regions:
        found = self._run(vision, size, phrase)
        n = len(found)
        return Regions.from_masks(
            found.masks, labels=[phrase] * n, label_ids=[k] * n, scores=found.scores
        )

    def _run(
        self, vision: Any, size: tuple[int, int], phrase: str, box: np.ndarray | None = None
    ) -> Regions:
        """Instances for one phrase (and exemplar ``box``), best first, empty masks dropped."""
        import torch

        embeds = self._text_embeds(phrase)
        kwargs: dict[str, Any] = {"attention_mask": self._text[phrase][1]}
        if box is not None:
            enc = self.processor(
                input_boxes=[[box.tolist()]], input_boxes_labels=[[1]],
                original_sizes=[list(size)], return_tensors="pt",
            )  # fmt: skip
            kwargs["input_boxes"] = enc["input_boxes"]
            kwargs["input_boxes_labels"] = enc["input_boxes_labels"]
        kwargs = to_device(kwargs, self.device)
        with torch.inference_mode():
            with autocast(self.device, self.precision):
                out = self.model(vision_embeds=vision, text_embeds=embeds, **kwargs)
            out.pred_masks = out.pred_masks.float()
            out.pred_logits = out.pred_logits.float()
            if out.presence_logits is not None:
                out.presence_logits = out.presence_logits.float()
            (res,) = self.processor.post_process_instance_segmentation(
                out, self.threshold, self.mask_threshold, target_sizes=[size]
            )
        scores = res["scores"].float().cpu().numpy().astype(np.float32).reshape(-1)
        if not len(scores):
            return Regions.empty(*size)
        masks = res["masks"].cpu().numpy().astype(bool).reshape(len(scores), *size)
        keep = masks.reshape(len(masks), -1).any(axis=1)
        order = np.argsort(-scores[keep], kind="stable")
        return Regions.from_masks(masks[keep][order], scores=scores[keep][order])

    def _text_embeds(self, phrase: str) -> Any:
        import torch

        if phrase not in self._text:
            enc = self.processor(text=phrase, return_tensors="pt")
            ids = to_device(enc["input_ids"], self.device)
            mask = to_device(enc["attention_mask"], self.device)
            with torch.inference_mode(), autocast(self.device, self.precision):
                emb = self.model.get_text_features(input_ids=ids, attention_mask=mask)
            self._text[phrase] = (emb, mask)
        return self._text[phrase][0]


def _from_pretrained(source: str, local_files_only: bool) -> tuple[Any, Any]:
    from transformers import Sam3Model, Sam3Processor

    network = Sam3Model.from_pretrained(source, local_files_only=local_files_only)
    processor = Sam3Processor.from_pretrained(source, local_files_only=local_files_only)
    return network, processor


__all__ = ["DEFAULT_SAM3_MODEL", "Sam3Segmenter"]
