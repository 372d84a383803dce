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


def sam3_video_config() -> Any:
    """A tiny ``Sam3VideoConfig``: the tiny detector of :func:`sam3_config` with FPN/DETR
    hidden size 128 (the SAM 2-style tracker needs a multiple of 64 above its 64 memory
    channels) and a tiny tracker (one memory-attention layer, 3 memory frames); detection
    thresholds at 0 so random weights still yield instances."""
    from transformers import Sam3VideoConfig
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import (
        Sam3TrackerVideoConfig,
    )

    from segindex.testing.tiny_sam2 import tiny_memory_options

    s, h, g = TINY_SAM3_SIZE, 128, TINY_SAM3_SIZE // 14
    det = sam3_config()
    det.vision_config.fpn_hidden_size = h
    det.text_config.projection_dim = h
    for sub in (det.geometry_encoder_config, det.detr_encoder_config, det.detr_decoder_config,
                det.mask_decoder_config):  # fmt: skip
        sub.hidden_size = h
    tracker = Sam3TrackerVideoConfig(
        vision_config=det.vision_config.to_dict(),
        **tiny_memory_options(s, 14, h),
    )
    return Sam3VideoConfig(
        detector_config=det,
        tracker_config=tracker,
        low_res_mask_size=4 * g,
        score_threshold_detection=0.0,
        new_det_thresh=0.0,
    )


def save_tiny_sam3_video(directory: str | Path) -> Path:
    """Build a seeded random ``Sam3VideoModel`` and its ``Sam3VideoProcessor``; save both to
    ``directory`` (created if needed) and return it."""
    import torch
    from transformers import CLIPTokenizer, Sam3VideoModel, Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam3VideoModel(sam3_video_config()).eval()
    model.save_pretrained(directory)
    s = TINY_SAM3_SIZE
    Sam3VideoProcessor(
        image_processor=_image_processor(s),
        video_processor=Sam2VideoVideoProcessor(size={"height": s, "width": s}),
        tokenizer=CLIPTokenizer(),
        target_size=s,
    ).save_pretrained(directory)
    return directory
