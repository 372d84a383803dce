"""The open_clip embedder: crops and texts into one CLIP space.

``model`` names the architecture and where it comes from:

* an open_clip model name (``ViT-B-32``, see ``open_clip.list_models()``), with ``pretrained`` an
  open_clip weight tag (``laion2b_s34b_b79k``, downloaded through the Hugging Face Hub cache), a
  local checkpoint file, or ``None`` for random weights;
* ``hf-hub:org/repo``, config and weights from a Hub repository (``pretrained`` is ignored);
* a local directory (plain path or ``local-dir:PATH``) holding ``open_clip_config.json`` and a
  weights file, as written by ``open_clip.push_to_hf_hub`` or downloaded from such a Hub repository
  (``pretrained`` is ignored).

torch and open_clip are imported when an embedder is built, not when this module is imported.
A named model is looked up in the local Hub cache first, with no network; only a missing one is
downloaded, after one bounded reachability probe (:mod:`segindex.hub`), so an unreachable Hub
fails in seconds.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segindex.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from segindex.device import resolve_device, resolve_precision, to_device, torch_dtype
from segindex.embed.base import Embedder
from segindex.errors import ConfigError, ModelLoadError
from segindex.hub import offline, unreachable, unreachable_note

if TYPE_CHECKING:
    import torch

#: ``auto``/``fp32``/``fp16``/``bf16`` as in :mod:`segindex.device` (weights cast, LayerNorms kept
#: in float32); ``pure_fp16``/``pure_bf16`` cast every weight
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "pure_fp16", "pure_bf16")
_HF_HUB = "hf-hub:"
_LOCAL_DIR = "local-dir:"
_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".npz", ".ckpt")


def _looks_like_path(s: str) -> bool:
    return (
        os.sep in s
        or (os.altsep is not None and os.altsep in s)
        or s.startswith((".", "~"))
        or s.lower().endswith(_WEIGHT_SUFFIXES)
    )


def _short(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _local_copy_hint(model: str) -> str:
    return (
        "Download the checkpoint where you have network and pass it: "
        "--clip-pretrained /path/to/open_clip_pytorch_model.bin (or a directory with "
        "open_clip_config.json and the weights via --clip-model DIR); Python: "
        f"embedder_options={{'model': {model!r}, "
        "'pretrained': '/path/to/open_clip_pytorch_model.bin'} or "
        "embedder_options={'model': '/path/to/DIR'}"
    )


class OpenClipEmbedder(Embedder):
    """CLIP image and text towers from open_clip; vectors are L2-normalised float32 ``(N, dim)``.

    Args:
        model: open_clip model name, ``hf-hub:org/repo``, or a local model directory (plain path
            or ``local-dir:PATH``) with ``open_clip_config.json`` and weights.
        pretrained: for a model name only: an open_clip weight tag, a local checkpoint file path,
            or ``None`` (or ``""``) for random initialisation. Ignored (recorded as ``None``)
            for hub and directory models, which carry their own weights.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda[:N]`` or ``mps``.
        precision: one of :data:`PRECISIONS`; ``auto`` is ``fp16`` on CUDA (as CLIP is run on
            GPUs) and ``fp32`` elsewhere. ``fp16``/``bf16`` keep LayerNorms in fp32; vectors
            come back float32 whatever the precision.

    Raises:
        ModelLoadError: unknown model name or tag, missing file or directory, failed download,
            or weights that do not fit the architecture.
        ConfigError: bad ``device`` or ``precision``, or ``model``/``pretrained`` of a wrong type.
    """

    name = "open_clip"

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_CLIP_MODEL,
        pretrained: str | os.PathLike[str] | None = DEFAULT_CLIP_PRETRAINED,
        device: str = "auto",
        precision: str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        self.device = resolve_device(device)
        self.precision = (
            precision
            if precision.startswith("pure_")
            else resolve_precision(precision, self.device, cuda_auto="fp16")
        )
        # ``model``/``pretrained``: canonical identity (absolute paths); ``_model_id``: open_clip's.
        self.model, self.pretrained, self._model_id = _resolve_source(model, pretrained)

        self._clip, self._preprocess, self._tokenizer = self._load()
        # image batches are cast to the dtype of the towers' first (conv/linear) layers
        self._image_dtype = torch_dtype(self.precision.removeprefix("pure_"))
        self._dim = self._find_dim()

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> tuple[Any, Any, Any]:
        schema = _schema(self._model_id)
        from_hub = schema == "hf-hub" or (
            schema is None and self.pretrained is not None and not os.path.isfile(self.pretrained)
        )
        if from_hub:
            # The local cache first, with no network at all; the Hub only for a missing model,
            # after one bounded probe (not the Hub client's minute of retries when offline).
            try:
                with offline():
                    return self._create(schema)
            except Exception:  # noqa: BLE001 - not cached (or unreadable): try the Hub below
                pass
            reason = unreachable()
            if reason is not None:
                raise ModelLoadError(self._load_failure(schema, unreachable_note(reason)))
        try:
            return self._create(schema)
        except Exception as e:  # open_clip raises RuntimeError/OSError/ValueError/... here
            raise ModelLoadError(
                self._load_failure(schema, f"{type(e).__name__}: {_short(e)}")
            ) from e

    def _create(self, schema: str | None) -> tuple[Any, Any, Any]:
        import open_clip

        clip, _, preprocess = open_clip.create_model_and_transforms(
            self._model_id,
            pretrained=self.pretrained if schema is None else None,
            precision=self.precision,
            device=self.device,
            # Hub and directory models must bring weights: open_clip would otherwise fall back to
            # random weights with only a logged warning.
            require_pretrained=schema is not None or self.pretrained is not None,
            # Random init means random: no separate download of text-tower weights.
            pretrained_text=self.pretrained is not None or schema is not None,
        )
        tokenizer = open_clip.get_tokenizer(self._model_id)
        clip.eval()
        return clip, preprocess, tokenizer

    def _load_failure(self, schema: str | None, cause: str) -> str:
        if schema == "hf-hub":
            return (
                f"could not load CLIP model {self.model!r} from the Hugging Face Hub (offline, no "
                f"access, or unknown repository). Download the repository (open_clip_config.json "
                f"and open_clip_pytorch_model.bin) where you have network and pass the directory: "
                f"--clip-model DIR; Python: embedder_options={{'model': '/path/to/DIR'}}. "
                f"Cause: {cause}"
            )
        if schema == "local-dir":
            return (
                f"could not load CLIP model from directory {self.model!r}: the directory must hold "
                f"open_clip_config.json (with model_cfg) and matching weights "
                f"(open_clip_model.safetensors or open_clip_pytorch_model.bin). Cause: {cause}"
            )
        if self.pretrained is not None and os.path.isfile(self.pretrained):
            return (
                f"could not load weights file {self.pretrained!r} into CLIP model {self.model!r}: "
                f"it must be an open_clip (or OpenAI CLIP) checkpoint of this architecture. "
                f"Cause: {cause}"
            )
        if self.pretrained is not None:
            return (
                f"could not load CLIP model {self.model!r} with weights {self.pretrained!r} "
                f"(offline, no access to the Hugging Face Hub, or not in its cache). "
                f"{_local_copy_hint(self.model)}. Cause: {cause}"
            )
        return f"could not build CLIP model {self.model!r} (random weights). Cause: {cause}"

    def _find_dim(self) -> int:
        out = getattr(self._clip.visual, "output_dim", None)
        if isinstance(out, int) and out > 0:
            return out
        # Towers without ``output_dim`` (timm): ask the text tower once.
        return int(self._encode_text([""]).shape[1])

    # -- Embedder -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Dimension of the joint image/text space (the model's ``embed_dim``)."""
        return self._dim

    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """``(N, dim)`` float32 image features (not normalised) for ``HxWx3`` uint8 RGB arrays.

        Each image goes through the model's own eval transform (resize, centre crop, normalise),
        so any size is accepted.
        """
        import torch
        from PIL import Image

        tensors = []
        for i, img in enumerate(images):
            if not (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3):
                got = (
                    f"shape {img.shape} dtype {img.dtype}"
                    if isinstance(img, np.ndarray)
                    else type(img).__name__
                )
                raise ValueError(f"image {i} must be an HxWx3 uint8 RGB array, got {got}")
            if img.dtype != np.uint8:
                raise ValueError(f"image {i} must be uint8 RGB, got dtype {img.dtype}")
            if img.shape[0] == 0 or img.shape[1] == 0:
                raise ValueError(f"image {i} is empty, got shape {img.shape}")
            tensors.append(self._preprocess(Image.fromarray(np.ascontiguousarray(img))))
        batch = to_device(torch.stack(tensors), self.device).to(dtype=self._image_dtype)
        with torch.inference_mode():
            feats = self._clip.encode_image(batch)
        return _to_numpy(feats)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        """``(N, dim)`` float32 text features (not normalised), tokenised by the model's tokenizer.

        Texts longer than the context (77 tokens for CLIP) are truncated by the tokenizer.
        """
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"text {i} must be a str, got {type(t).__name__}")
        return self._encode_text(texts)

    def _encode_text(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = to_device(self._tokenizer(texts), self.device)
        with torch.inference_mode():
            feats = self._clip.encode_text(tokens)
        return _to_numpy(feats)

    def describe(self) -> dict[str, Any]:
        """Identity of the vector space: backend name, model, weights and dimension (no device)."""
        return {
            "name": self.name,
            "model": self.model,
            "pretrained": self.pretrained,
            "dim": self.dim,
        }

    def __repr__(self) -> str:
        return (
            f"OpenClipEmbedder(model={self.model!r}, pretrained={self.pretrained!r}, "
            f"device={self.device!r}, precision={self.precision!r}, dim={self.dim})"
        )


# -- helpers ----------------------------------------------------------------------------------


def _schema(model_id: str) -> str | None:
    if model_id.startswith(_HF_HUB):
        return "hf-hub"
    if model_id.startswith(_LOCAL_DIR):
        return "local-dir"
    return None


def _resolve_source(
    model: str | os.PathLike[str], pretrained: str | os.PathLike[str] | None
) -> tuple[str, str | None, str]:
    """Check ``model``/``pretrained`` before any loading; return ``(model, pretrained, model_id)``.

    ``model`` and ``pretrained`` come back canonical (directories and files as absolute paths,
    ``pretrained`` ``None`` where it is ignored); ``model_id`` is the string open_clip is given.
    Fails fast with :class:`ModelLoadError` on unknown names and tags and on missing paths.
    """
    import open_clip

    model = os.fspath(model) if isinstance(model, os.PathLike) else model
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"CLIP model must be a non-empty string or path, got {model!r}")
    model = model.strip()
    pretrained = os.fspath(pretrained) if isinstance(pretrained, os.PathLike) else pretrained
    if pretrained is not None and not isinstance(pretrained, str):
        raise ConfigError(f"CLIP pretrained must be a string, path or None, got {pretrained!r}")
    if pretrained is not None and not pretrained.strip():
        pretrained = None  # "" (e.g. an empty CLI option) means random weights, like None

    if model.startswith(_HF_HUB):
        if not model[len(_HF_HUB) :].strip("/"):
            raise ModelLoadError(f"CLIP model {model!r}: missing repository after 'hf-hub:'")
        return model, None, model

    if model.startswith(_LOCAL_DIR) or os.path.isdir(os.path.expanduser(model)):
        raw = model[len(_LOCAL_DIR) :] if model.startswith(_LOCAL_DIR) else model
        directory = Path(raw).expanduser().resolve()
        if not directory.is_dir():
            raise ModelLoadError(f"CLIP model directory {str(directory)!r} does not exist")
        if not (directory / "open_clip_config.json").is_file():
            raise ModelLoadError(
                f"CLIP model directory {str(directory)!r} has no open_clip_config.json; expected "
                f"an open_clip model directory (open_clip_config.json + "
                f"open_clip_pytorch_model.bin or open_clip_model.safetensors)"
            )
        return str(directory), None, f"{_LOCAL_DIR}{directory}"

    name = model.replace("/", "-")  # open_clip accepts 'ViT-B/32' for 'ViT-B-32'
    known = open_clip.list_models()
    if name not in known:
        if _looks_like_path(model):
            raise ModelLoadError(
                f"CLIP model directory {model!r} does not exist (and it is not an open_clip "
                f"model name)"
            )
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelLoadError(
            f"unknown CLIP model {model!r}: {hint}open_clip knows {len(known)} architectures "
            f"(list them with open_clip.list_models()), or pass 'hf-hub:org/repo' or a local "
            f"directory with open_clip_config.json"
        )

    if pretrained is None:
        return name, None, name
    pretrained = pretrained.strip()
    if open_clip.get_pretrained_cfg(name, pretrained):
        return name, pretrained, name
    path = Path(pretrained).expanduser()
    if path.is_file():
        return name, str(path.resolve()), name
    if _looks_like_path(pretrained):
        raise ModelLoadError(
            f"CLIP weights file {pretrained!r} for model {name!r} does not exist "
            f"(expected a local open_clip checkpoint such as open_clip_pytorch_model.bin)"
        )
    tags = open_clip.list_pretrained_tags_by_model(name)
    raise ModelLoadError(
        f"unknown weights {pretrained!r} for CLIP model {name!r}: not an open_clip tag for this "
        f"model (known: {', '.join(tags) or 'none'}) and not an existing file"
    )


def _to_numpy(feats: torch.Tensor) -> np.ndarray:
    return feats.detach().float().cpu().numpy().astype(np.float32, copy=False)
