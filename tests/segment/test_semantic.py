"""Semantic segmentation: class map -> connected components, through a tiny random SegFormer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex.errors import ConfigError, ModelLoadError
from segindex.segment import SEGMENTERS
from segindex.segment.semantic import class_map_components
from segindex.testing.tiny_segmenters import TINY_SEGFORMER_LABELS


def test_components_of_a_known_class_map() -> None:
    classes = np.zeros((10, 12), dtype=np.int64)
    classes[1:4, 1:4] = 2  # component A of class 2 (9 px)
    classes[6:9, 8:11] = 2  # component B of class 2 (9 px)
    classes[5, 5] = 3  # a single pixel of class 3
    classes[4, 4] = 2  # touches A diagonally: 8-connectivity joins it
    conf = np.full(classes.shape, 0.5, dtype=np.float32)
    conf[6:9, 8:11] = 0.9
    masks, ids, scores = class_map_components(classes, conf, min_area=2, ignore_labels=[0])
    assert ids == [2, 2]
    assert sorted(int(m.sum()) for m in masks) == [9, 10]
    assert sorted(round(s, 3) for s in scores) == [0.5, 0.9]
    masks, ids, _ = class_map_components(classes, min_area=1)
    assert sorted(ids) == [0, 2, 2, 3]
    assert masks.sum(axis=0).max() == 1  # components are disjoint


@pytest.fixture(scope="module")
def tiny_segformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_segmenters import save_tiny_segformer

    return save_tiny_segformer(tmp_path_factory.mktemp("tiny-segformer"))


def test_tiny_segformer_end_to_end(tiny_segformer: Path) -> None:
    seg = SEGMENTERS.build("semantic", model=str(tiny_segformer), device="cpu", min_area=1)
    images = [
        (np.random.default_rng(i).random((40 + 10 * i, 60, 3)) * 255).astype(np.uint8)
        for i in range(2)
    ]
    results = seg.segment(images)
    for image, regions in zip(images, results, strict=True):
        assert regions.image_size == image.shape[:2] and len(regions) >= 1
        assert regions.masks.sum(axis=0).max() == 1  # a partition...
        assert regions.masks.any(axis=0).all()  # ...of the whole image
        assert set(regions.labels) <= set(TINY_SEGFORMER_LABELS)
        assert ((regions.scores > 0) & (regions.scores <= 1)).all()
    big = SEGMENTERS.build("semantic", model=str(tiny_segformer), device="cpu", min_area=200)
    assert (big.segment(images[:1])[0].areas >= 200).all()
    assert seg.is_thing(3) and not seg.is_thing(1)  # person vs sky
    assert seg.describe()["min_area"] == 1


def test_semantic_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        SEGMENTERS.build("semantic", model="/never/loaded", device="cpu", min_area=0)
    with pytest.raises(ModelLoadError, match="does not exist"):
        SEGMENTERS.build("semantic", model=str(tmp_path / "nope"), device="cpu")
    with pytest.raises(ModelLoadError, match="could not load segmenter model from directory"):
        SEGMENTERS.build("semantic", model=str(tmp_path), device="cpu")
