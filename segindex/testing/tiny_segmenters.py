"""Tiny, randomly initialised SAM, SegFormer and Mask R-CNN written to disk, for offline tests.

Same idea as :mod:`segindex.testing.tiny_models`: each ``save_tiny_*`` builds the real
architecture from a small config with seeded weights (``torch.manual_seed`` inside a forked RNG),
writes it in the layout the backend loads (hub-style directory, or a torchvision state-dict file),
and returns the path, so the backend's real loading code is the code under test.

* :func:`save_tiny_sam`: ``SamModel`` (ViT width 32, 2 layers, 128 px input, 8 px patches) and its
  ``SamProcessor`` (longest edge 128). Load with ``SamSegmenter(model=str(dir))``.
* :func:`save_tiny_segformer`: ``SegformerForSemanticSegmentation`` (2 stages, widths 16/32,
  :data:`TINY_SEGFORMER_LABELS` classes) and its image processor (64 x 64).
  Load with ``SemanticSegmenter(model=str(dir))``.
* :func:`save_tiny_maskrcnn`: a state dict of torchvision ``maskrcnn_resnet50_fpn_v2`` built with
  ``weights=None``, ``weights_backbone=None``, :data:`TINY_MASKRCNN_CLASSES` classes.
  Torchvision has no width knob for this model, so it is real-size (~46 M parameters, 180 MB);
  build it once per test session. Load with ``InstanceSegmenter(weights=path, num_classes=...)``.
"""

from __future__ import annotations

from pathlib import Path

#: labels of the tiny SegFormer
TINY_SEGFORMER_LABELS = ("background", "sky", "grass", "person")
#: classes (background included) of the tiny Mask R-CNN
TINY_MASKRCNN_CLASSES = 3
TINY_SAM_SIZE = 128


def save_tiny_sam(directory: str | Path) -> Path:
    """Build the tiny ``SamModel`` + ``SamProcessor``; save both to ``directory``."""
    import torch
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    size, patch, width = TINY_SAM_SIZE, 8, 32
    config = SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=width,
            output_channels=width,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=size,
            patch_size=patch,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=width // 2,
            mlp_dim=64,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=width, image_size=size, patch_size=patch, mask_input_channels=4
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=width,
            mlp_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            iou_head_hidden_dim=32,
        ),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SamModel(config).eval()
    model.save_pretrained(directory)
    processor = SamProcessor(
        image_processor=SamImageProcessor(
            size={"longest_edge": size},
            pad_size={"height": size, "width": size},
            mask_size={"longest_edge": size // 4},
            mask_pad_size={"height": size // 4, "width": size // 4},
        )
    )
    processor.save_pretrained(directory)
    return directory


def save_tiny_segformer(directory: str | Path) -> Path:
    """Build the tiny SegFormer + ``SegformerImageProcessor``; save both to ``directory``."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    id2label = dict(enumerate(TINY_SEGFORMER_LABELS))
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[16, 32],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=32,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SegformerForSemanticSegmentation(config).eval()
    model.save_pretrained(directory)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(directory)
    return directory


def save_tiny_maskrcnn(path: str | Path) -> Path:
    """Save a seeded random ``maskrcnn_resnet50_fpn_v2`` state dict (see module doc) to ``path``."""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = maskrcnn_resnet50_fpn_v2(
            weights=None, weights_backbone=None, num_classes=TINY_MASKRCNN_CLASSES
        ).eval()
    torch.save(model.state_dict(), path)
    return path


__all__ = [
    "TINY_MASKRCNN_CLASSES",
    "TINY_SAM_SIZE",
    "TINY_SEGFORMER_LABELS",
    "save_tiny_maskrcnn",
    "save_tiny_sam",
    "save_tiny_segformer",
]
