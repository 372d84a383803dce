"""Instance segmentation: torchvision Mask R-CNN v2 from a local state dict (random weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex.errors import ConfigError, ModelLoadError
from segindex.segment import SEGMENTERS
from segindex.testing.tiny_segmenters import TINY_MASKRCNN_CLASSES


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_segmenters import save_tiny_maskrcnn

    return save_tiny_maskrcnn(tmp_path_factory.mktemp("maskrcnn") / "maskrcnn.pt")


def test_maskrcnn_from_local_state_dict(weights: Path) -> None:
    names = ["__background__", "cat", "dog"]
    seg = SEGMENTERS.build(
        "instance", weights=str(weights), device="cpu", score_threshold=0.0,
        min_size=64, max_size=96, categories=names,
    )  # fmt: skip
    images = [
        (np.random.default_rng(i).random((48, 64 + 8 * i, 3)) * 255).astype(np.uint8)
        for i in range(2)
    ]
    results = seg.segment(images)
    for image, regions in zip(images, results, strict=True):
        assert regions.image_size == image.shape[:2]
        assert len(regions) >= 1 and (regions.areas > 0).all()
        assert set(regions.label_ids.tolist()) <= {1, 2}
        assert set(regions.labels) <= {"cat", "dog"}
        assert regions.is_thing.all()
    strict = SEGMENTERS.build(
        "instance", model=str(weights), device="cpu", score_threshold=1.0, min_size=64
    )
    assert len(strict.segment(images[:1])[0]) == 0
    assert strict.describe()["weights"] == str(weights)


def test_maskrcnn_errors(tmp_path: Path, weights: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        SEGMENTERS.build("instance", weights=str(tmp_path / "nope.pt"), device="cpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not read"):
        SEGMENTERS.build("instance", weights=str(bad), device="cpu")
    import torch

    other = tmp_path / "other.pt"
    torch.save({"model": {"x": torch.zeros(1)}}, other)
    with pytest.raises(ModelLoadError, match="not a maskrcnn_resnet50_fpn_v2 state dict"):
        SEGMENTERS.build("instance", weights=str(other), device="cpu")
    with pytest.raises(ConfigError, match=f"all {TINY_MASKRCNN_CLASSES} classes"):
        SEGMENTERS.build("instance", weights=str(weights), device="cpu", categories=["a"])
    with pytest.raises(ConfigError):
        SEGMENTERS.build("instance", weights=str(weights), device="cpu", score_threshold=2)
