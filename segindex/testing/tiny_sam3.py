"""Tiny, randomly initialised SAM 3 models written to disk, so tests load them offline.

:func:`save_tiny_sam3` writes a ``Sam3Model`` + ``Sam3Processor`` directory in the layout of the
hub checkpoint ``facebook/sam3``; :func:`save_tiny_sam3_video` the same for ``Sam3VideoModel`` +
``Sam3VideoProcessor``. Vision: ViT 32 wide, 2 layers, 14 px patches at image size 112 (an 8x8
grid); text: CLIP text model 32 wide, 1 layer (CLIP's 49408-token vocabulary); DETR encoder and
decoder 1 layer each, 8 queries; every hidden size 32. The tokenizer is a ``CLIPTokenizer`` with an
empty BPE vocabulary (every word -> unknown token), since the real CLIP vocabulary would need a
download: all texts look alike to the tiny model, which is fine for testing shapes, types and code
paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_SAM3_SIZE = 112
_H = 32


def sam3_config(real_size: bool = False) -> Any:
    """A ``Sam3Config``: tiny (see the module docs) or the ``facebook/sam3`` sizes."""
    from transformers import Sam3Config

    if real_size:
        return Sam3Config()
    from transformers.models.sam3.configuration_sam3 import Sam3VisionConfig, Sam3ViTConfig

    s, h = TINY_SAM3_SIZE, _H
    grid = s // 14
    backbone = Sam3ViTConfig(
        hidden_size=h, intermediate_size=2 * h, num_hidden_layers=2, num_attention_heads=2,
        image_size=s, patch_size=14, window_size=4, global_attn_indexes=[1],
        pretrain_image_size=s,
    )  # fmt: skip
    vision = Sam3VisionConfig(
        backbone_config=backbone,
        fpn_hidden_size=h,
        backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    )
    layers = {
        "hidden_size": h,
        "num_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 2 * h,
    }
    return Sam3Config(
        vision_config=vision,
        text_config={
            "vocab_size": 49408,
            "hidden_size": h,
            "intermediate_size": 2 * h,
            "projection_dim": h,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 32,
        },  # fmt: skip
        geometry_encoder_config=layers,
        detr_encoder_config=layers,
        detr_decoder_config={**layers, "num_queries": 8},
        mask_decoder_config={"hidden_size": h, "num_attention_heads": 2},
    )


def _image_processor(size: int) -> Any:
    from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor

    return Sam3ImageProcessor(
        size={"height": size, "width": size}, mask_size={"height": size // 4, "width": size // 4}
    )


def save_tiny_sam3(directory: str | Path, *, real_size: bool = False) -> Path:
    """Build a seeded random ``Sam3Model`` and its ``Sam3Processor``; save both to
    ``directory`` (created if needed) and return it."""
    import torch
    from transformers import CLIPTokenizer, Sam3Model, Sam3Processor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam3Model(sam3_config(real_size)).eval()
    model.save_pretrained(directory)
    size = 1008 if real_size else TINY_SAM3_SIZE
    processor = Sam3Processor(
        image_processor=_image_processor(size), tokenizer=CLIPTokenizer(), target_size=size
    )
    processor.save_pretrained(directory)
    return directory
