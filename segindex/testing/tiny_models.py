"""Tiny, randomly initialised panoptic models written to disk, so tests load them offline.

:func:`save_tiny_mask2former` writes a directory in the layout of a hub checkpoint
(``config.json``, ``model.safetensors``, ``preprocessor_config.json``), so
``PanopticSegmenter(model=str(directory))`` loads it through exactly the code path a downloaded
``facebook/mask2former-swin-tiny-coco-panoptic`` takes.

Backbone: Swin, embed dim 16, depths ``[1, 1, 1, 1]``, window 4. Pixel decoder and transformer
decoder: hidden size 32, 1 encoder / 2 decoder layers, :data:`TINY_NUM_QUERIES` queries. Labels:
the 133 COCO-panoptic classes with their real names (``config.id2label``), so thing/stuff logic
sees real class names. About 0.36 M parameters (1.5 MB), built and saved in a fraction of a second.

Weights are seeded (``torch.manual_seed(0)`` inside a forked RNG, so the caller's RNG state is
untouched): the same call always writes the same model. The class and mask heads are then made
confident (see ``_make_confident``), so the model yields a handful (typically 3-7) of panoptic
segments, things and stuff, covering most of any image, even at the default thresholds; pass
``threshold=0.0`` to be sure of at least one.

:func:`save_tiny_oneformer` does the same for OneFormer (text-conditioned on the task), so its
``task_inputs`` path is exercised too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segindex.data.coco_panoptic import coco_panoptic_id2label

TINY_NUM_QUERIES = 8
#: default inference size of the saved processor (shortest edge, longest edge)
TINY_SIZE = {"shortest_edge": 64, "longest_edge": 107}
# Random weights give class scores ~1/134 and mask probabilities ~0.5 everywhere, and
# transformers' panoptic post-processing binarises score-weighted mask probabilities, so such a
# model never yields a segment. These gains make it confident; see _make_confident.
_CLASS_HEAD_GAIN = 100.0
_MASK_HEAD_GAIN = 40.0
_MASK_LOGIT_OFFSET = 2.5


def save_tiny_mask2former(directory: str | Path) -> Path:
    """Build the tiny Mask2Former and its ``Mask2FormerImageProcessor``; save both to ``directory``.

    Returns the directory (created if needed) as a ``Path``.
    """
    import torch
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    id2label = coco_panoptic_id2label()
    config = Mask2FormerConfig(
        backbone_config=_tiny_swin(),
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        num_queries=TINY_NUM_QUERIES,
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Mask2FormerForUniversalSegmentation(config).eval()
    _make_confident(model)
    model.save_pretrained(directory)
    Mask2FormerImageProcessor(size=dict(TINY_SIZE)).save_pretrained(directory)
    return directory


def save_tiny_oneformer(directory: str | Path) -> Path:
    """Build a tiny random OneFormer and its ``OneFormerProcessor``; save both to ``directory``.

    Same backbone, sizes and labels as :func:`save_tiny_mask2former`; its text side (task
    encoder, tokenizer) exists only so the OneFormer ``task_inputs`` path is exercised. The
    tokenizer is a ``CLIPTokenizer`` with an empty BPE vocabulary (every word -> unknown token),
    since the real CLIP vocabulary would need a download. Heads are left random (no
    ``_make_confident``): use ``threshold=0``, ``mask_threshold=0``, ``overlap_threshold=0`` to get
    segments.
    """
    import torch
    from transformers import (
        CLIPTokenizer,
        OneFormerConfig,
        OneFormerForUniversalSegmentation,
        OneFormerImageProcessor,
        OneFormerProcessor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    id2label = coco_panoptic_id2label()
    config = OneFormerConfig(
        backbone_config=_tiny_swin(),
        conv_dim=32,
        mask_dim=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        text_encoder_width=32,
        text_encoder_num_layers=1,
        num_queries=TINY_NUM_QUERIES,
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = OneFormerForUniversalSegmentation(config).eval()
    model.save_pretrained(directory)
    processor = OneFormerProcessor(
        image_processor=OneFormerImageProcessor(size=dict(TINY_SIZE)), tokenizer=CLIPTokenizer()
    )
    processor.save_pretrained(directory)
    return directory


def _tiny_swin() -> Any:
    from transformers import SwinConfig

    return SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],  # type: ignore[call-arg]  # read from **kwargs
    )


def _make_confident(model: Any) -> None:
    """Scale the heads of a random Mask2Former so it yields a few segments on any image.

    Class logits are scaled up (scores near 1 instead of ~1/134), mask logits are scaled up and
    shifted down by a constant (pixel-embedding channel 0 made constant 1, the query embeddings'
    channel 0 made ``-offset``), so each query is confident on a smaller region of its own.
    """
    import torch

    pixel_projection = model.model.pixel_level_module.decoder.mask_projection  # Conv2d 1x1
    mask_head = model.model.transformer_module.decoder.mask_predictor.mask_embedder
    last = next(m for m in mask_head.layers[-1].modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        model.class_predictor.weight.mul_(_CLASS_HEAD_GAIN)
        model.class_predictor.bias.mul_(_CLASS_HEAD_GAIN)
        last.weight.mul_(_MASK_HEAD_GAIN)
        last.bias.mul_(_MASK_HEAD_GAIN)
        pixel_projection.weight[0].zero_()
        pixel_projection.bias[0] = 1.0
        last.weight[0].zero_()
        last.bias[0] = -_MASK_LOGIT_OFFSET


__all__ = ["TINY_NUM_QUERIES", "TINY_SIZE", "save_tiny_mask2former", "save_tiny_oneformer"]
