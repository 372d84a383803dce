"""Device placement and precision: the rule, autocast, pinned transfers, and every torch backend
running its real code path at reduced precision (bf16 on CPU here; CUDA tests run where a GPU is).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from segindex import Index, RuntimeOptions
from segindex.cli import main
from segindex.device import autocast, resolve_precision, to_device
from segindex.embed import EMBEDDERS
from segindex.errors import ConfigError
from segindex.registry import Registry
from segindex.segment import SEGMENTERS
from segindex.testing.tiny_clip import save_tiny_open_clip
from segindex.testing.tiny_models import save_tiny_mask2former

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-precision")
    return {
        "segmenter": save_tiny_mask2former(root / "mask2former"),
        "clip": save_tiny_open_clip(root / "clip"),
    }


def _image(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "device", "expected"),
    [
        ("auto", "cpu", "fp32"),
        ("auto", "mps", "fp32"),
        ("fp32", "cpu", "fp32"),
        ("bf16", "cpu", "bf16"),
        ("fp32", "cuda", "fp32"),
        ("fp16", "cuda:1", "fp16"),
        ("bf16", "cuda", "bf16"),
        ("fp16", "mps", "fp16"),
    ],
)
def test_resolve_precision(precision: str, device: str, expected: str) -> None:
    assert resolve_precision(precision, device) == expected


@pytest.mark.parametrize(("major", "expected"), [(9, "bf16"), (8, "bf16"), (7, "fp16")])
def test_auto_on_cuda_follows_native_bf16(
    monkeypatch: pytest.MonkeyPatch, major: int, expected: str
) -> None:
    asked: list[str] = []
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or (major, 0)
    )
    assert resolve_precision("auto", "cuda:1") == expected
    assert asked == ["cuda:1"]  # the chosen GPU, not the current one
    assert resolve_precision("auto", "cuda:1", cuda_auto="fp16") == "fp16"  # CLIP's choice


@pytest.mark.parametrize(
    ("precision", "device", "match"),
    [
        ("fp16", "cpu", "needs a GPU"),
        ("half", "cpu", "precision must be one of"),
        ("", "cuda", "one of"),
    ],
)
def test_bad_precision_is_a_clear_error(precision: str, device: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_precision(precision, device)


def test_runtime_options_check_precision() -> None:
    assert RuntimeOptions().precision == "auto"
    with pytest.raises(ConfigError, match="precision must be one of"):
        RuntimeOptions(precision="float16")


# -- autocast and transfers --------------------------------------------------------------------


def test_autocast_fp32_is_off_and_bf16_computes_in_bf16() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled("cpu")


def test_to_device_cpu_is_a_plain_move() -> None:
    t = torch.arange(6.0)
    moved = to_device(t, "cpu")
    assert moved is t
    batch = to_device({"pixel_values": t, "n": 3}, "cpu")
    assert batch["pixel_values"] is t and batch["n"] == 3


def test_to_device_keeps_a_batch_feature() -> None:
    from transformers import BatchFeature

    feature = BatchFeature({"pixel_values": torch.zeros(1, 3, 4, 4)})
    moved = to_device(feature, "cpu")
    assert isinstance(moved, BatchFeature) and moved["pixel_values"].shape == (1, 3, 4, 4)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_to_device_cuda_goes_through_pinned_memory() -> None:
    t = torch.arange(1 << 16, dtype=torch.float32)
    moved = to_device(t, "cuda")
    torch.cuda.synchronize()
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), t)


# -- registry: precision reaches the backends that take it -------------------------------------


def test_build_on_passes_precision_only_to_builders_that_name_it() -> None:
    seen: dict[str, dict] = {}

    def with_precision(*, device: str, precision: str = "auto", size: int = 1) -> str:
        seen["a"] = {"device": device, "precision": precision, "size": size}
        return "a"

    def without(*, device: str, **options: object) -> str:
        seen["b"] = {"device": device, **options}
        return "b"

    reg: Registry[str] = Registry("thing", "segindex.no-such-group")
    reg.register("a", with_precision)
    reg.register("b", without)
    reg.build_on("a", {"size": 3}, device="cpu", precision="bf16")
    reg.build_on("b", {"size": 3}, device="cpu", precision="bf16")
    assert seen["a"] == {"device": "cpu", "precision": "bf16", "size": 3}
    assert seen["b"] == {"device": "cpu", "size": 3}  # **options do not receive it
    reg.build_on("a", {"precision": "fp32"}, device="cpu", precision="bf16")
    assert seen["a"]["precision"] == "fp32"  # an explicit backend option wins


# -- the real torch backends at reduced precision ----------------------------------------------


def _linear_output_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    dtypes: list[torch.dtype] = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    return dtypes


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_panoptic_runs_under_the_precision_asked(tiny: dict[str, Path], precision: str) -> None:
    seg = SEGMENTERS.build_on(
        "panoptic",
        {"model": str(tiny["segmenter"]), "resolution": 64},
        device="cpu",
        precision=precision,
    )
    assert seg.precision == precision
    dtypes = _linear_output_dtypes(seg.model)
    out = seg.segment([_image(0), _image(1, 80, 60)], batch_size=2)
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    assert dtypes and set(dtypes) == {expected}
    for regions, (h, w) in zip(out, [(96, 128), (80, 60)], strict=True):
        assert regions.masks.shape[1:] == (h, w) and regions.masks.dtype == bool
        assert regions.scores.dtype == np.float32


def test_panoptic_auto_on_cpu_is_fp32(tiny: dict[str, Path]) -> None:
    seg = SEGMENTERS.build_on("panoptic", {"model": str(tiny["segmenter"])}, device="cpu")
    assert seg.precision == "fp32"


def test_clip_bf16_vectors_are_float32_and_close_to_fp32(tiny: dict[str, Path]) -> None:
    options = {"model": str(tiny["clip"])}
    full = EMBEDDERS.build_on("open_clip", options, device="cpu", precision="fp32")
    half = EMBEDDERS.build_on("open_clip", options, device="cpu", precision="bf16")
    assert (full.precision, half.precision) == ("fp32", "bf16")
    images = [_image(i) for i in range(4)]
    a, b = full.embed_images(images), half.embed_images(images)
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (a * b).sum(axis=1).min() > 0.98  # same direction, bf16 rounding only
    ta, tb = full.embed_texts(["a red umbrella"]), half.embed_texts(["a red umbrella"])
    assert tb.dtype == np.float32 and float((ta * tb).sum()) > 0.98


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_auto_precision_end_to_end(tiny: dict[str, Path]) -> None:
    seg = SEGMENTERS.build_on("panoptic", {"model": str(tiny["segmenter"])}, device="cuda")
    emb = EMBEDDERS.build_on("open_clip", {"model": str(tiny["clip"])}, device="cuda")
    assert seg.precision in ("bf16", "fp16") and emb.precision in ("bf16", "fp16")
    out = seg.segment([_image(0)])
    assert out[0].masks.shape[1:] == (96, 128)
    vecs = emb.embed_images([_image(0)])
    assert vecs.dtype == np.float32 and vecs.shape == (1, emb.dim)


# -- the doors: Python runtime option and the CLI flag -----------------------------------------


def test_index_with_bf16_runtime_ingests_and_searches(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(_image(i)).save(photos / f"{i}.png")
    runtime = RuntimeOptions(device="cpu", precision="bf16")
    with Index.create(
        tmp_path / "idx",
        segmenter_options={"model": str(tiny["segmenter"]), "resolution": 64},
        embedder_options={"model": str(tiny["clip"])},
        runtime=runtime,
    ) as idx:
        assert idx.segmenter.precision == "bf16" and idx.embedder.precision == "bf16"
        report = idx.ingest(photos)
        assert report.indexed == 3 and not report.failures
        hits = idx.search("a photo", k=5)
        assert len(hits) >= 3  # at least the whole-image region of each photo


def test_fakes_without_precision_accept_any_runtime_precision(tmp_path: Path) -> None:
    from PIL import Image

    from segindex.testing.fakes import draw_scene

    photos = tmp_path / "p"
    photos.mkdir()
    Image.fromarray(draw_scene([("red", (10, 10, 60, 50))])).save(photos / "a.png")
    with Index.create(
        tmp_path / "idx",
        segmenter="fake",
        embedder="fake",
        runtime=RuntimeOptions(device="cpu", precision="bf16"),
    ) as idx:
        assert idx.ingest(photos).indexed == 1


def test_cli_precision_flag(tiny: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(_image(5)).save(photos / "x.png")
    models = ["--segmenter-model", str(tiny["segmenter"]), "--clip-model", str(tiny["clip"])]
    runner = CliRunner()

    def run(command: str, first: str, index: str, precision: str, *more: str):  # type: ignore[no-untyped-def]
        args = [command, first, "--index", str(tmp_path / index), "--device", "cpu"]
        return runner.invoke(main, [*args, "--precision", precision, *more])

    bad = run("ingest", str(photos), "a", "fp16", *models)
    assert bad.exit_code != 0 and "needs a GPU" in bad.output
    assert not (tmp_path / "a").exists()  # refused before anything was written
    ok = run("ingest", str(photos), "b", "bf16", *models)
    assert ok.exit_code == 0, ok.output
    found = run("search", "anything", "b", "bf16", "--json")
    assert found.exit_code == 0, found.output


def test_instance_bf16_runs_backbone_only_in_reduced_precision(tmp_path: Path) -> None:
    from segindex.testing.tiny_segmenters import save_tiny_maskrcnn

    weights = save_tiny_maskrcnn(tmp_path / "maskrcnn.pt")
    seg = SEGMENTERS.build_on(
        "instance",
        {"weights": str(weights), "score_threshold": 0.0, "min_size": 64, "max_size": 96},
        device="cpu",
        precision="bf16",
    )
    backbone_dtypes: list[torch.dtype] = []
    head_dtypes: list[torch.dtype] = []
    conv = next(m for m in seg.model.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: backbone_dtypes.append(o.dtype))
    head = next(m for m in seg.model.roi_heads.modules() if isinstance(m, torch.nn.Linear))
    head.register_forward_hook(lambda m, i, o: head_dtypes.append(o.dtype))
    regions = seg.segment([_image(3, 48, 64)])[0]
    assert set(backbone_dtypes) == {torch.bfloat16}
    assert head_dtypes and set(head_dtypes) == {torch.float32}  # boxes at full precision
    assert regions.image_size == (48, 64) and regions.masks.dtype == bool


@pytest.mark.parametrize(
    ("options", "devices", "expected"),
    [
        ({}, ("cpu", "cpu"), (2, 32)),
        ({}, ("mps", "mps"), (2, 32)),
        ({}, ("cuda", "cuda:1"), (8, 256)),
        ({}, ("cpu", "cuda"), (2, 256)),
        ({"segment_batch": 1, "embed_batch": 7}, ("cuda", "cuda"), (1, 7)),
    ],
)
def test_batch_sizes_follow_the_device(options: dict, devices: tuple, expected: tuple) -> None:
    assert RuntimeOptions(**options).batch_sizes(*devices) == expected


def test_ingest_uses_the_embed_batch(make_index, photos: Path) -> None:
    idx = make_index(runtime=RuntimeOptions(embed_batch=3))
    idx.ingest(photos)
    sizes = idx.embedder.image_calls
    assert sizes and max(sizes) == 3  # the crops of the batch went in threes
    with pytest.raises(ConfigError, match="embed_batch must be >= 1"):
        RuntimeOptions(embed_batch=0)
