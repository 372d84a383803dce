"""Tiny, randomly initialised SAM 2 video models written to disk, so tests load them offline.

:func:`save_tiny_sam2_video` writes a directory in the layout of the hub checkpoint
``facebook/sam2.1-hiera-tiny`` (``config.json``, ``model.safetensors``, the processor's JSON), so
``Sam2Tracker(model=str(directory))`` loads it through exactly the code path a downloaded
checkpoint takes. Backbone: Hiera 12 wide, 4 stages (blocks ``[1, 1, 2, 1]``), image size 128;
every memory and mask-decoder hidden size 128 (SAM 2 hard-codes 64 memory channels and splits
object pointers into 64-wide tokens, so the hidden size must be a multiple of 64 above it);
one memory-attention layer, 3 memory frames. About 2.6 M parameters (10 MB), seeded.

:func:`sam2_video_config` with ``real_size=True`` gives the hiera-tiny sizes (image 1024,
hidden 256, blocks ``[1, 2, 7, 2]``), for timing random weights at the real cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_SAM2_SIZE = 128


def sam2_video_config(real_size: bool = False) -> Any:
    """A ``Sam2VideoConfig``: tiny (see the module docs) or the hiera-tiny sizes."""
    from transformers import Sam2VideoConfig

    if real_size:  # facebook/sam2.1-hiera-tiny's shapes
        from transformers.models.sam2.configuration_sam2 import (
            Sam2HieraDetConfig,
            Sam2VisionConfig,
        )

        backbone = Sam2HieraDetConfig(
            blocks_per_stage=[1, 2, 7, 2], global_attention_blocks=[5, 7, 9]
        )
        return Sam2VideoConfig(vision_config=Sam2VisionConfig(backbone_config=backbone))
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    s, h = TINY_SAM2_SIZE, 128
    backbone = Sam2HieraDetConfig(
        hidden_size=12,
        image_size=[s, s],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[2, 2],
    )
    feature_sizes = [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]]
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=feature_sizes,
        fpn_hidden_size=h,
    )
    return Sam2VideoConfig(
        vision_config=vision,
        **tiny_memory_options(s, 16),
    )


def tiny_memory_options(size: int, patch: int, hidden: int = 128) -> dict[str, Any]:
    """The tiny SAM 2-style tracker options (prompt encoder, mask decoder, one memory-attention
    layer, 3 memory frames) for frames of ``size`` pixels cut in ``patch``-pixel patches."""
    grid = size // patch
    return {
        "prompt_encoder_config": {"hidden_size": hidden, "image_size": size, "patch_size": patch},
        "mask_decoder_config": {
            "hidden_size": hidden,
            "mlp_dim": 64,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 32,
        },  # fmt: skip
        "image_size": size,
        "num_maskmem": 3,
        "max_object_pointers_in_encoder": 4,
        "memory_attention_hidden_size": hidden,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": hidden,
        "mask_downsampler_embed_dim": hidden,
        "memory_fuser_embed_dim": hidden,
        "memory_fuser_intermediate_dim": 64,
    }


def sam2_video_processor(size: int) -> Any:
    """A ``Sam2VideoProcessor`` resizing frames to ``size`` x ``size``."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(
            size={"height": size, "width": size},
            mask_size={"height": size // 4, "width": size // 4},
        ),
        video_processor=Sam2VideoVideoProcessor(size={"height": size, "width": size}),
        target_size=size,
    )


def save_tiny_sam2_video(directory: str | Path, *, real_size: bool = False) -> Path:
    """Build a seeded random ``Sam2VideoModel`` and its processor; save both to ``directory``
    (created if needed) and return it."""
    import torch
    from transformers import Sam2VideoModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = sam2_video_config(real_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam2VideoModel(config).eval()
    model.save_pretrained(directory)
    sam2_video_processor(1024 if real_size else TINY_SAM2_SIZE).save_pretrained(directory)
    return directory
