"""A transformers universal-segmentation network (Mask2Former, MaskFormer) run by a compiled
runtime, one export per input shape.

The network's forward is traced at a fixed input shape (Swin's window padding is fixed at trace
time, so one graph does not serve other shapes); the panoptic segmenter's inputs come in few
shapes (shortest edge fixed, sides rounded to the processor's size divisor), so each new shape is
exported once and cached like any other entry (:mod:`segindex.runtime.cache`). Pre- and
post-processing stay the segmenter's own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segindex.runtime import cache

if TYPE_CHECKING:
    import torch

KIND = "panoptic"
#: compiled input shapes kept at once (least recently used ones are dropped, recompiled from
#: OpenVINO's cache when seen again in a few seconds): each holds its own copy of the weights and
#: buffers, ~0.65 GB for Mask2Former Swin-T at 384 px
MAX_SHAPES = 6


def _logits_module(network: Any) -> torch.nn.Module:
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.network(pixel_values=pixel_values)
            return out.class_queries_logits, out.masks_queries_logits

    return Logits().eval()


class CompiledPanoptic:
    """``network``'s forward on a compiled runtime: ``(1, 3, h, w)`` float32 pixel values ->
    ``(class logits (1, Q, C+1), mask logits (1, Q, h/4, w/4))`` float32.

    model: the checkpoint's name or path (part of the cache key, with a sha256 of the weights and
        a digest of the config). hint: OpenVINO precision hint, ``f32`` or ``bf16``.
    """

    def __init__(self, network: Any, *, model: str, runtime: str, hint: str) -> None:
        from segindex.runtime import export, ov

        self.network = network
        self.runtime = runtime
        self.hint = hint
        self._base = {
            "kind": KIND,
            "model": model,
            "config": cache.digest(network.config.to_dict()),
            "weights": export.state_sha256(network),
            "runtime": runtime,
            "runtime_version": ov.version(),
            "format": cache.FORMAT,
        }
        self._models: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        #: the precision the runtime reports (``f32``/``bf16``), known after the first shape
        self.precision: str | None = None

    def shapes(self) -> list[tuple[int, int]]:
        """The input shapes ``(h, w)`` compiled and kept now (at most :data:`MAX_SHAPES`)."""
        return sorted(self._models)

    def _model_for(self, height: int, width: int) -> Any:
        with self._lock:
            found = self._models.get((height, width))
            if found is not None:
                self._models.move_to_end((height, width))
                return found
            from segindex.runtime import export, ov

            inputs = [([1, 3, height, width], "f32")]
            key = {**self._base, "inputs": inputs}
            where = cache.find_entry(self.runtime, KIND, key, ov.MODEL_FILES)
            if where is None:

                def write(tmp: Path) -> dict[str, Any]:
                    import torch

                    example = torch.zeros((1, 3, height, width), dtype=torch.float32)
                    export.export_openvino(_logits_module(self.network), (example,), inputs, tmp)
                    return {"height": height, "width": width}

                where = cache.publish(self.runtime, KIND, key, write)
            compiled = ov.CompiledModel(where, self.hint)
            self.precision = compiled.precision
            self._models[(height, width)] = compiled
            while len(self._models) > MAX_SHAPES:
                self._models.popitem(last=False)
            return compiled

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if pixels.ndim != 4 or pixels.shape[:2] != (1, 3):
            raise ValueError(f"pixels must be (1, 3, h, w) float32, got shape {pixels.shape}")
        model = self._model_for(int(pixels.shape[2]), int(pixels.shape[3]))
        class_logits, mask_logits = model(np.ascontiguousarray(pixels, dtype=np.float32))
        return class_logits, mask_logits


__all__ = ["CompiledPanoptic"]
