"""The CLIP text and image towers as compiled models, loadable without torch.

:func:`load_cached` finds the towers that an :class:`~segindex.embed.clip.OpenClipEmbedder` with
a compiled runtime exported (:mod:`segindex.runtime.clip_export`) and compiles them, importing
only numpy and the runtime (OpenVINO): a search process can answer text and image queries
without PyTorch. Each tower is called on numpy arrays:

* :class:`TextTower`: int64 token ids ``(B, context_length)`` as open_clip's tokenizer makes them
  -> float32 ``(B, dim)`` L2-normalised;
* :class:`ImageTower`: float32 ``(B, 3, S, S)`` pixels after the model's eval transform
  (:attr:`ImageTower.preprocess`: resize the shortest side to ``S``, centre crop, scale to
  [0, 1], normalise with ``mean``/``std``) -> float32 ``(B, dim)`` L2-normalised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segindex.runtime import cache

TEXT = "clip-text"
IMAGE = "clip-image"
_HF_HUB = "hf-hub:"
_LOCAL_DIR = "local-dir:"
_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".npz", ".ckpt")


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class _Tower:
    model: Any  # segindex.runtime.ov.CompiledModel
    dim: int
    runtime: str
    #: the precision the runtime reports it computes in (``f32``/``bf16``)
    precision: str
    where: Path

    def _run(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.model(x)
        return out


@dataclass
class TextTower(_Tower):
    """``int64 (B, context_length)`` token ids -> ``float32 (B, dim)`` L2-normalised."""

    context_length: int = 77

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(
                f"tokens must be (B, {self.context_length}) int64, got shape {tokens.shape}"
            )
        return _l2(self._run(tokens.astype(np.int64, copy=False)))


@dataclass
class ImageTower(_Tower):
    """``float32 (B, 3, S, S)`` preprocessed pixels -> ``float32 (B, dim)`` L2-normalised."""

    image_size: int = 224
    #: ``{"size", "mean", "std", "interpolation", "resize_mode"}``: open_clip's eval transform
    preprocess: dict[str, Any] = field(default_factory=dict)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.asarray(pixels)
        s = self.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (3, s, s):
            raise ValueError(f"pixels must be (B, 3, {s}, {s}) float32, got shape {pixels.shape}")
        return _l2(self._run(pixels.astype(np.float32, copy=False)))


def canonical_source(model: str, pretrained: str | None) -> dict[str, Any]:
    """``{"model", "pretrained"}`` as :class:`~segindex.embed.clip.OpenClipEmbedder` records
    them (directories and files as absolute paths, ``ViT-B/32`` as ``ViT-B-32``, ``pretrained``
    ``None`` for hub and directory models)."""
    model = os.fspath(model).strip()
    if pretrained is not None:
        pretrained = os.fspath(pretrained).strip() or None
    if model.startswith(_HF_HUB):
        return {"model": model, "pretrained": None}
    if model.startswith(_LOCAL_DIR) or os.path.isdir(os.path.expanduser(model)):
        raw = model.removeprefix(_LOCAL_DIR)
        return {"model": str(Path(raw).expanduser().resolve()), "pretrained": None}
    name = model.replace("/", "-")
    if pretrained is not None:
        path = Path(pretrained).expanduser()
        if path.is_file() and (
            os.sep in pretrained or pretrained.lower().endswith(_WEIGHT_SUFFIXES)
        ):
            pretrained = str(path.resolve())
    return {"model": name, "pretrained": pretrained}


def load_cached(
    model: str, pretrained: str | None, *, runtime: str = "openvino", precision: str = "fp32"
) -> tuple[TextTower | None, ImageTower | None]:
    """The compiled towers exported for ``model``/``pretrained`` (the embedder's options), in
    ``precision`` (``fp32``, ``bf16`` or ``auto``: :func:`~segindex.runtime.auto_precision`, as
    the embedder does); ``None`` for a tower with no valid export (never
    exported, weights file changed, another runtime version, random weights), and both for
    ``runtime="torch"`` or a runtime not installed (``auto``: as :func:`~segindex.runtime.
    resolve_runtime` decides on a CPU). Imports no torch."""
    from segindex.runtime import (
        auto_precision,
        available,
        check_runtime,
        openvino_hint,
        resolve_runtime,
    )

    if check_runtime(runtime) == "auto":
        runtime = resolve_runtime(runtime, "cpu")
    if runtime == "torch" or not available(runtime):
        return None, None
    hint = openvino_hint(auto_precision("embedder") if precision == "auto" else precision)
    source = canonical_source(model, pretrained)
    text = _load(runtime, TEXT, source, hint)
    image = _load(runtime, IMAGE, source, hint)
    return (
        text if isinstance(text, TextTower) else None,
        image if isinstance(image, ImageTower) else None,
    )


def _load(runtime: str, kind: str, source: dict[str, Any], hint: str) -> _Tower | None:
    from segindex.runtime import ov

    key = cache.lookup_source(runtime, kind, source)
    if key is None or key.get("runtime_version") != ov.version():
        return None
    where = cache.find_entry(runtime, kind, key, ov.MODEL_FILES)
    return None if where is None else open_tower(runtime, kind, where, hint)


def open_tower(runtime: str, kind: str, where: Path, hint: str) -> _Tower:
    """Compile the tower exported in the cache entry ``where``."""
    from segindex.runtime.ov import CompiledModel

    meta = cache.read_manifest(where)["meta"]
    compiled = CompiledModel(where, hint)
    common: dict[str, Any] = {
        "model": compiled,
        "dim": int(meta["dim"]),
        "runtime": runtime,
        "precision": compiled.precision,
        "where": where,
    }
    if kind == TEXT:
        return TextTower(**common, context_length=int(meta["context_length"]))
    return ImageTower(
        **common, image_size=int(meta["image_size"]), preprocess=dict(meta["preprocess"])
    )


__all__ = ["IMAGE", "TEXT", "ImageTower", "TextTower", "canonical_source", "load_cached"]
