"""A tiny, randomly initialised open_clip CLIP written to disk, so tests load it offline.

The model goes through exactly the loading code a real checkpoint does
(:class:`segindex.embed.clip.OpenClipEmbedder` -> ``open_clip.create_model_and_transforms``):

* :func:`save_tiny_open_clip` writes a directory in open_clip's ``local-dir:`` format
  (``open_clip_config.json`` with ``model_cfg`` + ``preprocess_cfg``, and
  ``open_clip_model.safetensors``), loadable with ``OpenClipEmbedder(model=directory)``.
* :func:`save_tiny_open_clip_checkpoint` writes a bare checkpoint file and registers the tiny
  architecture with open_clip under :data:`TINY_MODEL_NAME`, loadable with
  ``OpenClipEmbedder(model=TINY_MODEL_NAME, pretrained=path)``.

Vision tower: ViT, 32x32 input, 8 px patches, width 32, 2 layers. Text tower: the standard CLIP
BPE tokenizer (vocabulary 49408, context 77), width 32, 2 layers. Joint space:
:data:`TINY_EMBED_DIM` dimensions. About 1.6 M parameters (6 MB), built and saved in well under a
second. Weights are seeded (``torch.manual_seed(0)`` inside a forked RNG, so the caller's RNG
state is untouched): the same call always writes the same model.
"""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TINY_MODEL_NAME = "segindex-tiny-clip"
TINY_EMBED_DIM = 16

TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": TINY_EMBED_DIM,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

# CLIP's own normalisation; bicubic resize of the shortest side, then centre crop.
TINY_PREPROCESS_CFG: dict[str, Any] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def _build_tiny_model(seed: int = 0) -> torch.nn.Module:
    """The tiny CLIP with seeded random weights, in eval mode."""
    import open_clip
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**deepcopy(TINY_MODEL_CFG))
    return model.eval()


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def save_tiny_open_clip(directory: str | Path) -> Path:
    """Write the tiny CLIP as an open_clip ``local-dir:`` model directory; return the directory.

    Files: ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": ...}``) and
    ``open_clip_model.safetensors`` (the state dict). The directory is created if needed.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_MODEL_CFG, "preprocess_cfg": TINY_PREPROCESS_CFG}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    save_file(_state_dict(_build_tiny_model()), str(out / "open_clip_model.safetensors"))
    return out


def register_tiny_open_clip_config(directory: str | Path) -> str:
    """Write ``<TINY_MODEL_NAME>.json`` into ``directory`` and add it to open_clip's model configs.

    Returns the model name. This changes open_clip's process-wide registry of architectures (the
    only way open_clip accepts a new architecture by name); registering again is harmless.
    """
    import open_clip

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / f"{TINY_MODEL_NAME}.json"
    cfg_path.write_text(json.dumps(TINY_MODEL_CFG, indent=2), encoding="utf-8")
    if TINY_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(cfg_path)
    return TINY_MODEL_NAME


def save_tiny_open_clip_checkpoint(path: str | Path) -> tuple[str, Path]:
    """Write the tiny CLIP's weights to the checkpoint file ``path``; return ``(model_name, path)``.

    ``.safetensors`` paths are written with safetensors, anything else with ``torch.save`` (like
    ``open_clip_pytorch_model.bin``). The architecture is registered with open_clip (see
    :func:`register_tiny_open_clip_config`, config written beside the file) so that
    ``OpenClipEmbedder(model=model_name, pretrained=str(path))`` loads it.
    """
    import torch

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = _state_dict(_build_tiny_model())
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save(state, out)
    return register_tiny_open_clip_config(out.parent), out
