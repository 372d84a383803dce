"""Exporting an open_clip model's text and image towers to a compiled runtime, once per weights.

:func:`compiled_towers` returns the two towers of :mod:`segindex.runtime.clip_towers` for a loaded
open_clip model: from the cache when an entry with the same key exists, else exported from the
PyTorch modules first (``encode_text`` / ``encode_image``, unnormalised; the towers normalise).
torch is imported by the callers that hand in the model; this module needs it only for the
example inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from segindex.runtime import cache
from segindex.runtime.clip_towers import IMAGE, TEXT, ImageTower, TextTower, open_tower

if TYPE_CHECKING:
    import torch


def _tower_module(clip: Any, kind: str) -> torch.nn.Module:
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if kind == TEXT:
                return self.clip.encode_text(x)
            return self.clip.encode_image(x)

    return Tower().eval()


def compiled_towers(
    clip: Any,
    *,
    source: dict[str, Any],
    files: list[Path],
    example_tokens: torch.Tensor,
    preprocess: dict[str, Any],
    runtime: str,
    hint: str,
) -> tuple[TextTower, ImageTower]:
    """The compiled ``(text, image)`` towers of the float32 open_clip model ``clip``.

    source: ``{"model", "pretrained"}`` as the embedder records them (part of the key).
    files: the weight files the model was loaded from (empty for random weights): remembered so
        that :func:`~segindex.runtime.clip_towers.load_cached` finds the export without torch.
    example_tokens: int64 ``(B, context_length)`` token ids to trace the text tower on.
    preprocess: open_clip's eval transform config (``size``, ``mean``, ``std``, ...), recorded.
    hint: OpenVINO precision hint, ``f32`` or ``bf16``.
    """
    import torch

    from segindex.runtime import export, ov

    weights = export.state_sha256(clip)
    size = preprocess["size"]
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    context = int(example_tokens.shape[1])
    pixels = torch.zeros((2, 3, image_size, image_size), dtype=torch.float32)
    with torch.no_grad():
        dim = int(clip.encode_text(example_tokens[:1]).shape[1])
    plans: dict[str, tuple[Any, Any, dict[str, Any]]] = {
        TEXT: (example_tokens, [([-1, context], "i64")], {"context_length": context}),
        IMAGE: (
            pixels,
            [([-1, 3, image_size, image_size], "f32")],
            {"image_size": image_size, "preprocess": _jsonable(preprocess)},
        ),
    }
    towers: dict[str, Any] = {}
    for kind, (example, inputs, meta) in plans.items():
        key = {
            "kind": kind,
            **source,
            "weights": weights,
            "runtime": runtime,
            "runtime_version": ov.version(),
            "format": cache.FORMAT,
            "inputs": inputs,
        }
        where = cache.find_entry(runtime, kind, key, ov.MODEL_FILES)
        if where is None:

            def write(tmp: Path, kind: str = kind, example: Any = example, inputs: Any = inputs,
                      meta: dict[str, Any] = meta) -> dict[str, Any]:  # fmt: skip
                export.export_openvino(_tower_module(clip, kind), (example,), inputs, tmp)
                return {"dim": dim, **meta}

            where = cache.publish(runtime, kind, key, write)
        if files:
            cache.record_source(runtime, kind, source, files, key)
        towers[kind] = open_tower(runtime, kind, where, hint)
    return cast(TextTower, towers[TEXT]), cast(ImageTower, towers[IMAGE])


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


__all__ = ["compiled_towers"]
