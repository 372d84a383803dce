"""The open_clip embedder: crops and texts into one CLIP space.

``model`` names the architecture and where it comes from:

* an open_clip model name (``ViT-B-32``, see ``open_clip.list_models()``), with ``pretrained`` an
  open_clip weight tag (``laion2b_s34b_b79k``, downloaded through the Hugging Face Hub cache), a
  local checkpoint file, or ``None`` for random weights;
* ``hf-hub:org/repo``, config and weights from a Hub repository (``pretrained`` is ignored);
* a local directory (plain path or ``local-dir:PATH``) holding ``open_clip_config.json`` and a
  weights file, as written by ``open_clip.push_to_hf_hub`` or downloaded from such a Hub repository
  (``pretrained`` is ignored).

``runtime`` (:mod:`segindex.runtime`): ``torch`` runs open_clip's towers as they are;
``openvino`` runs the same towers exported once and compiled for this CPU (cached beside the model
cache, :mod:`segindex.runtime.cache`), with the same preprocessing and tokenizer; ``auto`` is
OpenVINO on a CPU where it is installed. The runtime does not change :meth:`describe` (the vector
space), it is reported by :meth:`runtime_info`.

torch and open_clip are imported when an embedder is built, not when this module is imported.
A named model is looked up in the local Hub cache first, with no network; only a missing one is
downloaded, after one bounded reachability probe (:mod:`segindex.hub`), so an unreachable Hub
fails in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from segindex.config import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from segindex.device import resolve_device, resolve_precision, to_device, torch_dtype
from segindex.embed.base import Embedder
from segindex.embed.clip_source import hub_failure, resolve_clip_source
from segindex.errors import ConfigError, ModelLoadError
from segindex.hub import offline, unreachable, unreachable_note
from segindex.runtime import auto_precision, check_runtime, openvino_hint, resolve_runtime

if TYPE_CHECKING:
    import torch

    from segindex.runtime.clip_towers import ImageTower, TextTower

#: ``auto``/``fp32``/``fp16``/``bf16`` as in :mod:`segindex.device` (weights cast, LayerNorms kept
#: in float32); ``pure_fp16``/``pure_bf16`` cast every weight
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "pure_fp16", "pure_bf16")
_HF_HUB = "hf-hub:"
_LOCAL_DIR = "local-dir:"


def _short(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
            come back float32 whatever the precision. With a compiled runtime only ``auto``
            (bf16 on CPUs with native bf16, else fp32: :func:`segindex.runtime.auto_precision`),
            ``fp32`` and ``bf16`` (the runtime's precision hint) are accepted.
        runtime: ``auto``, ``torch`` or ``openvino`` (see the module doc).

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
        runtime: str = "auto",
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        check_runtime(runtime)
        # names and paths checked, and a missing Hub model reported, before torch is imported
        source = resolve_clip_source(model, pretrained)
        source.check_available()
        # ``model``/``pretrained``: canonical identity (absolute paths); ``_model_id``: open_clip's.
        self.model, self.pretrained = source.model, source.pretrained
        self._model_id = source.model_id
        self._source = source
        self.device = resolve_device(device)
        self.runtime = resolve_runtime(runtime, self.device)
        if self.runtime != "torch" and precision.startswith("pure_"):
            raise ConfigError(
                f"precision {precision!r} is for the torch runtime; runtime {self.runtime!r} "
                f"takes fp32 or bf16"
            )
        self.precision = (
            precision
            if precision.startswith("pure_")
            else resolve_precision(precision, self.device, cuda_auto="fp16")
        )
        if self.runtime != "torch" and precision == "auto":
            self.precision = auto_precision("embedder")  # bf16 where the CPU has it
        # a compiled runtime is exported from the float32 modules and given its precision as a hint
        self._torch_precision = self.precision if self.runtime == "torch" else "fp32"

        self._clip, self._preprocess, self._tokenizer = self._load()
        # image batches are cast to the dtype of the towers' first (conv/linear) layers
        self._image_dtype = torch_dtype(self._torch_precision.removeprefix("pure_"))
        self._towers: tuple[TextTower, ImageTower] | None = None
        if self.runtime != "torch":
            self._towers = self._compile()
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
            precision=self._torch_precision,
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

    def _compile(self) -> tuple[TextTower, ImageTower]:
        """The towers exported to the compiled runtime (from its cache, or exported now)."""
        import open_clip

        from segindex.runtime.clip_export import compiled_towers

        return compiled_towers(
            self._clip,
            source={"model": self.model, "pretrained": self.pretrained},
            files=self._weight_files(),
            example_tokens=self._tokenizer(["a photo of a dog.", "a cropped photo of a cat."]),
            preprocess=dict(open_clip.get_model_preprocess_cfg(self._clip)),
            runtime=self.runtime,
            hint=openvino_hint(self.precision),
        )

    def _weight_files(self) -> list[Path]:
        """The files the weights were read from (for finding the export without torch); empty
        for random weights or where they cannot be told."""
        weights = self._source.weights_file()
        if weights is None:
            return []
        config = Path(self.model) / "open_clip_config.json"
        return [config, weights] if self._source.schema == "local-dir" else [weights]

    def _load_failure(self, schema: str | None, cause: str) -> str:
        if schema == "hf-hub":
            return hub_failure(self.model, None, cause)
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
            return hub_failure(self.model, self.pretrained, cause)
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
        if self._towers is not None:
            return self._towers[1](torch.stack(tensors).numpy())
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

        if self._towers is not None:
            return self._towers[0](self._tokenizer(texts).numpy())
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

    def runtime_info(self) -> dict[str, Any]:
        """How the vectors are computed (not part of :meth:`describe`): ``runtime``,
        ``precision`` asked for and, for a compiled runtime, the ``inference_precision`` it
        reports and its ``runtime_version``."""
        info: dict[str, Any] = {"runtime": self.runtime, "precision": self.precision}
        if self._towers is not None:
            from segindex.runtime.ov import version

            info["inference_precision"] = self._towers[1].precision
            info["runtime_version"] = version()
        return info

    def __repr__(self) -> str:
        return (
            f"OpenClipEmbedder(model={self.model!r}, pretrained={self.pretrained!r}, "
            f"device={self.device!r}, precision={self.precision!r}, runtime={self.runtime!r}, "
            f"dim={self.dim})"
        )


# -- helpers ----------------------------------------------------------------------------------


def _schema(model_id: str) -> str | None:
    if model_id.startswith(_HF_HUB):
        return "hf-hub"
    if model_id.startswith(_LOCAL_DIR):
        return "local-dir"
    return None


def _to_numpy(feats: torch.Tensor) -> np.ndarray:
    return feats.detach().float().cpu().numpy().astype(np.float32, copy=False)
