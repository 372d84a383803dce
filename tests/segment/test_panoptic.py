"""The panoptic backend, run for real on tiny random checkpoints saved to disk (no network)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segindex.data.coco_panoptic import (
    COCO_PANOPTIC_CATEGORIES,
    COCO_STUFF_NAMES,
    coco_panoptic_id2label,
)
from segindex.errors import ConfigError, ModelLoadError
from segindex.regions import Regions
from segindex.segment.panoptic import PanopticSegmenter

pytest.importorskip("transformers")


def _image(height: int, width: int, seed: int) -> np.ndarray:
    """HxWx3 uint8 RGB: three flat colour blocks plus mild noise."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 2] = (200, 40, 40)
    img[: height // 2, width // 2 :] = (40, 40, 200)
    img[height // 2 :] = (40, 180, 60)
    noise = rng.integers(0, 20, size=img.shape, dtype=np.uint8)
    return img + noise


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_models import save_tiny_mask2former

    return save_tiny_mask2former(tmp_path_factory.mktemp("tiny-mask2former"))


@pytest.fixture(scope="module")
def segmenter(tiny_dir: Path) -> PanopticSegmenter:
    return PanopticSegmenter(model=str(tiny_dir), device="cpu", resolution=64, threshold=0.0)


# --- COCO panoptic reference data -------------------------------------------------------------


def test_coco_panoptic_categories() -> None:
    cats = COCO_PANOPTIC_CATEGORIES
    assert len(cats) == 133
    assert sum(c["isthing"] for c in cats) == 80
    assert all(c["isthing"] for c in cats[:80]) and not any(c["isthing"] for c in cats[80:])
    assert COCO_STUFF_NAMES == {c["name"] for c in cats if not c["isthing"]}
    assert len(COCO_STUFF_NAMES) == 53
    assert len({c["id"] for c in cats}) == len({c["name"] for c in cats}) == 133
    id2label = coco_panoptic_id2label()
    assert (id2label[0], id2label[79], id2label[80], id2label[132]) == (
        "person",
        "toothbrush",
        "banner",
        "rug-merged",
    )
    assert id2label[131] == "wall-other-merged" and cats[131]["id"] == 199


# --- loading ----------------------------------------------------------------------------------


def test_loads_tiny_checkpoint_by_path(segmenter: PanopticSegmenter, tiny_dir: Path) -> None:
    assert segmenter.model.config.model_type == "mask2former"
    assert segmenter.id2label == coco_panoptic_id2label()
    assert segmenter.describe() == {
        "name": "panoptic",
        "model": str(tiny_dir),
        "resolution": 64,
        "threshold": 0.0,
        "mask_threshold": 0.5,
        "overlap_threshold": 0.8,
        "thing_ids": None,
    }


def test_registry_builds_panoptic(tiny_dir: Path) -> None:
    from segindex.segment import SEGMENTERS

    assert "panoptic" in SEGMENTERS.names()
    assert SEGMENTERS.get("panoptic") is PanopticSegmenter
    built = SEGMENTERS.build("panoptic", model=str(tiny_dir), device="cpu", resolution=64)
    assert isinstance(built, PanopticSegmenter)


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys, segindex.segment.panoptic; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "model", ["./no/such/segmenter-model", "/no/such/segmenter-model", "~/no/such/segmenter"]
)
def test_missing_local_path_fails_fast(model: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        PanopticSegmenter(model=model, device="cpu")
    assert model in str(info.value)
    assert time.perf_counter() - start < 5.0  # no hub round trips for a path


def test_missing_tmp_dir_named_in_error(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    with pytest.raises(ModelLoadError, match=str(missing)):
        PanopticSegmenter(model=str(missing), device="cpu")


def test_local_dir_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        PanopticSegmenter(model=str(tmp_path / "file.bin"), device="cpu")
    with pytest.raises(ModelLoadError, match="could not load segmenter model from directory"):
        PanopticSegmenter(model=str(tmp_path), device="cpu")


def test_bogus_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # huggingface_hub reads HF_HUB_OFFLINE once at import; the segmenter must honour it as set now.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = "no-such-org/no-such-panoptic-model"
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        PanopticSegmenter(model=model, device="cpu")
    message = str(info.value)
    assert model in message
    assert "local directory" in message
    assert "--segmenter-model DIR" in message and "segmenter_options" in message
    assert time.perf_counter() - start < 10.0


@pytest.mark.parametrize(
    "options",
    [
        {"resolution": 16},
        {"resolution": "384"},
        {"threshold": 1.5},
        {"mask_threshold": -0.1},
        {"overlap_threshold": 2},
    ],
)
def test_bad_options_rejected_before_loading(options: dict) -> None:
    with pytest.raises(ConfigError):
        PanopticSegmenter(model="/never/loaded", device="cpu", **options)


# --- segmentation -----------------------------------------------------------------------------


def _check_regions(regions: Regions, shape: tuple[int, int], id2label: dict[int, str]) -> None:
    n = len(regions)
    assert regions.image_size == shape
    assert regions.masks.shape == (n, *shape) and regions.masks.dtype == np.bool_
    assert regions.boxes.dtype == np.float32 and regions.scores.dtype == np.float32
    assert regions.label_ids.dtype == np.int64 and regions.is_thing.dtype == np.bool_
    assert regions.masks.any(axis=(1, 2)).all()  # no empty segment
    assert regions.masks.sum(axis=0).max() <= 1  # panoptic: segments do not overlap
    assert ((regions.scores >= 0) & (regions.scores <= 1)).all()
    for label_id, label, thing in zip(
        regions.label_ids, regions.labels, regions.is_thing, strict=True
    ):
        assert isinstance(label, str) and label == id2label[int(label_id)]
        assert bool(thing) == (label not in COCO_STUFF_NAMES)


def test_segment_batch_of_two_sizes(segmenter: PanopticSegmenter) -> None:
    images = [_image(48, 80, seed=1), _image(96, 40, seed=2)]
    results = segmenter.segment(images, batch_size=2)
    assert len(results) == 2
    for img, regions in zip(images, results, strict=True):
        assert len(regions) >= 1
        _check_regions(regions, img.shape[:2], segmenter.id2label)


def test_result_does_not_depend_on_batch_mates(segmenter: PanopticSegmenter) -> None:
    small, tall = _image(60, 100, seed=3), _image(200, 50, seed=4)
    alone = segmenter.segment([small])[0]
    batched = segmenter.segment([small, tall, small], batch_size=3)
    for regions in (batched[0], batched[2]):
        np.testing.assert_array_equal(regions.masks, alone.masks)
        np.testing.assert_array_equal(regions.label_ids, alone.label_ids)
        np.testing.assert_allclose(regions.scores, alone.scores, rtol=1e-5)


def test_threshold_one_gives_empty_regions(tiny_dir: Path) -> None:
    seg = PanopticSegmenter(model=str(tiny_dir), device="cpu", resolution=64, threshold=1.0)
    (regions,) = seg.segment([_image(30, 50, seed=5)])
    assert len(regions) == 0 and regions.image_size == (30, 50)


def test_thing_ids_override(tiny_dir: Path) -> None:
    seg = PanopticSegmenter(
        model=str(tiny_dir), device="cpu", resolution=64, threshold=0.0, thing_ids=[]
    )
    (regions,) = seg.segment([_image(64, 64, seed=6)])
    assert len(regions) >= 1 and not regions.is_thing.any()
    assert seg.describe()["thing_ids"] == []


@pytest.mark.parametrize(
    ("resolution", "expected_hw"),
    [
        (64, (64, 96)),  # shortest edge 64
        (128, (128, 192)),  # shortest edge 128
        (None, (64, 96)),  # the saved processor's own default (shortest edge 64)
        (32, (32, 64)),  # 32 x 48 -> rounded up to multiples of 32 by the processor
    ],
)
def test_resolution_sets_network_input_size(
    tiny_dir: Path, resolution: int | None, expected_hw: tuple[int, int]
) -> None:
    seg = PanopticSegmenter(model=str(tiny_dir), device="cpu", resolution=resolution, threshold=0.0)
    seen: list[tuple[int, ...]] = []
    hook = seg.model.register_forward_pre_hook(
        lambda _module, _args, kwargs: seen.append(tuple(kwargs["pixel_values"].shape)),
        with_kwargs=True,
    )
    try:
        (regions,) = seg.segment([_image(60, 90, seed=7)])
    finally:
        hook.remove()
    assert seen == [(1, 3, *expected_hw)]
    _check_regions(regions, (60, 90), seg.id2label)


def test_oneformer_checkpoint(tmp_path: Path) -> None:
    from segindex.testing.tiny_models import save_tiny_oneformer

    directory = save_tiny_oneformer(tmp_path / "tiny-oneformer")
    seg = PanopticSegmenter(
        model=str(directory),
        device="cpu",
        resolution=64,
        threshold=0.0,
        mask_threshold=0.0,
        overlap_threshold=0.0,
    )
    assert seg.model.config.model_type == "oneformer"
    images = [_image(48, 80, seed=8), _image(90, 40, seed=9)]
    results = seg.segment(images, batch_size=2)
    for img, regions in zip(images, results, strict=True):
        assert len(regions) >= 1
        _check_regions(regions, img.shape[:2], seg.id2label)
