"""The open_clip embedder for queries, run from its exported towers with no torch at all.

:meth:`ExportedClipEmbedder.from_cache` finds the CLIP towers that an ingest or search with a
compiled runtime exported (:func:`segindex.runtime.clip_towers.load_cached`) and pairs them with
the torch-free tokenizer (:class:`~segindex.embed.tokenizer.ClipTokenizer`, open_clip's ids) and
open_clip's eval transform written with PIL and numpy (resize the shortest side with PIL, as
torchvision does for PIL images, centre crop, scale, normalise). Its vectors are those of
:class:`~segindex.embed.clip.OpenClipEmbedder` with the same runtime, and it describes the same
vector space, so a search process (``segindex search``, ``segindex serve``, ``Index.search``)
answers text and image queries without importing PyTorch. ``None`` where there is no export
(never exported, weights changed, random weights, ``runtime="torch"``): the caller builds the
torch embedder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from segindex.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from segindex.embed.base import Embedder, check_rgb_image
from segindex.embed.clip_source import ClipSource, clip_identity, resolve_clip_source
from segindex.embed.tokenizer import ClipTokenizer
from segindex.memory import release_mapped

if TYPE_CHECKING:
    from segindex.runtime.clip_towers import ImageTower, TextTower

__all__ = ["ExportedClipEmbedder", "clip_eval_transform"]

#: embedder options this class understands (others: the torch embedder decides)
_OPTIONS = {"model", "pretrained", "device", "precision", "runtime"}
_INTERPOLATION = {"bicubic": 3, "bilinear": 2, "nearest": 0}  # PIL.Image.Resampling values


def clip_eval_transform(image: np.ndarray, preprocess: dict[str, Any]) -> np.ndarray:
    """open_clip's eval transform of one ``HxWx3`` uint8 RGB image as ``float32 (3, S, S)``.

    preprocess: ``{"size", "mean", "std", "interpolation", "resize_mode"}`` with
    ``resize_mode`` ``shortest`` (resize the shortest side to ``S``, longer side truncated as
    torchvision computes it, then centre crop) or ``squash`` (resize to ``S x S``).
    """
    from PIL import Image

    size = _square_size(preprocess["size"])
    pil = Image.fromarray(np.ascontiguousarray(image))
    resample = Image.Resampling(_INTERPOLATION[preprocess.get("interpolation", "bicubic")])
    w, h = pil.size
    if preprocess.get("resize_mode", "shortest") == "squash":
        pil = pil.resize((size, size), resample)
    else:
        short, long = (w, h) if w <= h else (h, w)
        if short != size:
            new_long = int(size * long / short)
            pil = pil.resize((size, new_long) if w <= h else (new_long, size), resample)
        w, h = pil.size
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        pil = pil.crop((left, top, left + size, top + size))
    pixels = np.asarray(pil.convert("RGB"), dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(preprocess["mean"], dtype=np.float32)
    std = np.asarray(preprocess["std"], dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def _square_size(size: Any) -> int:
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(f"only square image sizes are supported here, got {size}")
        size = size[0]
    return int(size)


def _supported(preprocess: dict[str, Any]) -> bool:
    try:
        _square_size(preprocess["size"])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        preprocess.get("resize_mode", "shortest") in ("shortest", "squash")
        and preprocess.get("interpolation", "bicubic") in _INTERPOLATION
        and len(preprocess.get("mean", ())) == 3
        and len(preprocess.get("std", ())) == 3
    )


class ExportedClipEmbedder(Embedder):
    """CLIP text and image towers of a compiled export, driven from numpy; vectors are
    L2-normalised float32 ``(N, dim)``, in the vector space of ``OpenClipEmbedder`` (same
    :meth:`describe`). Build with :meth:`from_cache`."""

    name = "open_clip"

    def __init__(
        self,
        source: ClipSource,
        tokenizer: ClipTokenizer,
        text: TextTower,
        image: ImageTower,
        precision: str,
    ) -> None:
        if text.dim != image.dim:
            raise ValueError(f"text tower dim {text.dim} != image tower dim {image.dim}")
        self.model, self.pretrained = source.model, source.pretrained
        self.device = "cpu"
        self.precision = precision
        self.runtime = text.runtime
        self._tokenizer, self._text, self._image = tokenizer, text, image
        self._preprocess = dict(image.preprocess)

    @classmethod
    def from_cache(
        cls, options: dict[str, Any], runtime: str = "auto", precision: str = "auto"
    ) -> ExportedClipEmbedder | None:
        """The embedder of the open_clip ``options`` (``model``, ``pretrained``) from its
        compiled export, or ``None`` when there is none to use here: runtime ``torch`` (also
        through ``SEGINDEX_RUNTIME``), a GPU device asked for, a precision the runtime does not
        take, a tokenizer or transform this module does not reproduce, or no valid export.

        Raises:
            ModelLoadError, ConfigError: the options name no model (as the torch embedder would).
        """
        from segindex.runtime import COMPILED, auto_precision, available, resolve_runtime
        from segindex.runtime.clip_towers import load_cached

        if set(options) - _OPTIONS:
            return None
        device = options.get("device", "auto")
        runtime = options.get("runtime", runtime)
        precision = options.get("precision", precision)
        if device not in ("auto", "cpu") or precision not in ("auto", "fp32", "bf16"):
            return None
        if runtime == "auto":
            runtime = resolve_runtime("auto", "cpu")
        if runtime not in COMPILED or not available(runtime):
            return None
        source = resolve_clip_source(
            options.get("model", DEFAULT_CLIP_MODEL),
            options.get("pretrained", DEFAULT_CLIP_PRETRAINED),
        )
        cfg = source.model_cfg()
        tokenizer = ClipTokenizer.for_model_cfg(cfg) if cfg is not None else None
        if tokenizer is None:
            return None
        if precision == "auto":  # as OpenClipEmbedder on a compiled runtime: bf16 where native
            precision = auto_precision("embedder")
        text, image = load_cached(
            source.model, source.pretrained, runtime=runtime, precision=precision
        )
        if text is None or image is None or not _supported(image.preprocess):
            return None
        if text.context_length != tokenizer.context_length:
            return None
        embedder = cls(source, tokenizer, text, image, precision)
        embedder.settle()
        return embedder

    def settle(self) -> None:
        """Run each tower once, then give back the pages of the weights files they were read
        from (the CPU plugin holds its own copy of the weights once it has run: about half of
        the process's memory, see :mod:`segindex.memory`)."""
        self._text(self._tokenizer([""]))
        size = _square_size(self._preprocess["size"])
        self._image(np.zeros((1, 3, size, size), dtype=np.float32))
        for tower in (self._text, self._image):
            release_mapped(tower.where)  # model.bin, or OpenVINO's compiled blob under it

    @property
    def dim(self) -> int:
        return int(self._text.dim)

    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """``(N, dim)`` image vectors of ``HxWx3`` uint8 RGB arrays (any size)."""
        batch = [
            clip_eval_transform(check_rgb_image(i, img), self._preprocess)
            for i, img in enumerate(images)
        ]
        return self._image(np.stack(batch))

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """``(N, dim)`` text vectors; texts longer than the context are truncated."""
        return self._text(self._tokenizer(texts))

    def describe(self) -> dict[str, Any]:
        """The vector space, exactly as ``OpenClipEmbedder.describe`` records it."""
        return clip_identity(self.model, self.pretrained, self.dim)

    def runtime_info(self) -> dict[str, Any]:
        """How the vectors are computed, as ``OpenClipEmbedder.runtime_info`` says it:
        ``runtime``, ``precision`` asked for, the ``inference_precision`` the runtime reports and
        its ``runtime_version``."""
        from segindex.runtime.ov import version

        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "inference_precision": self._image.precision,
            "runtime_version": version(),
        }

    def __repr__(self) -> str:
        return (
            f"ExportedClipEmbedder(model={self.model!r}, pretrained={self.pretrained!r}, "
            f"runtime={self.runtime!r}, precision={self.precision!r}, dim={self.dim})"
        )
