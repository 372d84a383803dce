"""The open_clip embedder, run for real on a tiny randomly initialised CLIP saved to disk."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from segindex.embed.base import DEFAULT_TEMPLATES
from segindex.embed.clip import OpenClipEmbedder
from segindex.errors import ConfigError, ModelLoadError
from segindex.testing.tiny_clip import (
    TINY_EMBED_DIM,
    TINY_MODEL_NAME,
    save_tiny_open_clip,
    save_tiny_open_clip_checkpoint,
)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may reach the network or a real Hub cache."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read once, at import
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf-cache")))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_open_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def emb(tiny_dir: Path) -> OpenClipEmbedder:
    return OpenClipEmbedder(model=str(tiny_dir), device="cpu")


def _images(seed: int = 0) -> list[np.ndarray]:
    """Random HxWx3 uint8 RGB images of assorted sizes and aspect ratios."""
    rng = np.random.default_rng(seed)
    sizes = [(32, 32), (50, 20), (17, 90), (200, 120), (8, 8)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _assert_unit_rows(v: np.ndarray, n: int) -> None:
    assert v.shape == (n, TINY_EMBED_DIM)
    assert v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# -- the tiny model and loading ---------------------------------------------------------------


def test_tiny_model_saves_fast_in_local_dir_format(tmp_path: Path) -> None:
    import open_clip  # noqa: F401  (import time is not the model's)
    import safetensors.torch  # noqa: F401
    import torch

    state = torch.random.get_rng_state()
    t0 = time.perf_counter()
    out = save_tiny_open_clip(tmp_path / "m")
    assert time.perf_counter() - t0 < 3.0
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched
    config = json.loads((out / "open_clip_config.json").read_text())
    assert set(config) == {"model_cfg", "preprocess_cfg"}
    assert config["model_cfg"]["embed_dim"] == TINY_EMBED_DIM
    assert (out / "open_clip_model.safetensors").is_file()


def test_import_is_cheap() -> None:
    code = (
        "import sys, segindex.embed.clip; print('torch' in sys.modules, 'open_clip' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_loads_directory(emb: OpenClipEmbedder, tiny_dir: Path) -> None:
    assert emb.dim == TINY_EMBED_DIM
    assert emb.model == str(tiny_dir.resolve())
    assert emb.pretrained is None  # ignored for directory models
    assert emb.device == "cpu"


def test_local_dir_prefix_is_the_same_model(emb: OpenClipEmbedder, tiny_dir: Path) -> None:
    other = OpenClipEmbedder(model=f"local-dir:{tiny_dir}", pretrained="ignored", device="cpu")
    assert other.describe() == emb.describe()
    np.testing.assert_allclose(other.embed_images(_images()), emb.embed_images(_images()))


@pytest.mark.parametrize("suffix", [".bin", ".safetensors"])
def test_model_name_with_local_checkpoint_file(
    emb: OpenClipEmbedder, tmp_path: Path, suffix: str
) -> None:
    name, path = save_tiny_open_clip_checkpoint(tmp_path / f"weights{suffix}")
    e = OpenClipEmbedder(model=name, pretrained=str(path), device="cpu")
    assert e.describe() == {
        "name": "open_clip",
        "model": TINY_MODEL_NAME,
        "pretrained": str(path.resolve()),
        "dim": TINY_EMBED_DIM,
    }
    # Same seeded weights as the directory model -> same vectors.
    np.testing.assert_allclose(e.embed_images(_images()), emb.embed_images(_images()), atol=1e-6)
    np.testing.assert_allclose(e.embed_texts(["dog"]), emb.embed_texts(["dog"]), atol=1e-6)


def test_paths_accepted_as_pathlike(emb: OpenClipEmbedder, tiny_dir: Path, tmp_path: Path) -> None:
    assert OpenClipEmbedder(model=tiny_dir, device="cpu").describe() == emb.describe()
    name, path = save_tiny_open_clip_checkpoint(tmp_path / "w.bin")
    e = OpenClipEmbedder(model=name, pretrained=path, device="cpu")
    assert e.describe()["pretrained"] == str(path.resolve())


def test_random_init_with_pretrained_none(tmp_path: Path) -> None:
    name, _ = save_tiny_open_clip_checkpoint(tmp_path / "w.bin")  # registers the architecture
    e = OpenClipEmbedder(model=name, pretrained=None, device="cpu")
    assert e.describe()["pretrained"] is None
    _assert_unit_rows(e.embed_texts(["cat"]), 1)


# -- images -----------------------------------------------------------------------------------


def test_embed_images_any_size_unit_float32(emb: OpenClipEmbedder) -> None:
    v = emb.embed_images(_images())
    _assert_unit_rows(v, 5)
    assert not np.allclose(v[0], v[1])  # different images, different vectors


def test_embed_images_empty(emb: OpenClipEmbedder) -> None:
    v = emb.embed_images([])
    assert v.shape == (0, TINY_EMBED_DIM) and v.dtype == np.float32


def test_batching_matches_one_batch(emb: OpenClipEmbedder) -> None:
    imgs = _images()
    np.testing.assert_allclose(
        emb.embed_images(imgs, batch_size=2), emb.embed_images(imgs, batch_size=32), atol=1e-5
    )


def test_deterministic_across_calls_and_instances(emb: OpenClipEmbedder, tiny_dir: Path) -> None:
    imgs = _images(seed=3)
    first = emb.embed_images(imgs)
    np.testing.assert_array_equal(first, emb.embed_images(imgs))
    again = OpenClipEmbedder(model=str(tiny_dir), device="cpu")
    np.testing.assert_allclose(again.embed_images(imgs), first, atol=1e-6)
    np.testing.assert_allclose(again.embed_texts(["a cat"]), emb.embed_texts(["a cat"]), atol=1e-6)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((8, 8), dtype=np.uint8), "HxWx3"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "HxWx3"),
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "empty"),
        ([[1, 2, 3]], "HxWx3"),
    ],
)
def test_bad_images_rejected(emb: OpenClipEmbedder, bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        emb.embed_images([bad])  # type: ignore[list-item]


# -- texts ------------------------------------------------------------------------------------


def test_embed_texts_with_templates(emb: OpenClipEmbedder) -> None:
    v = emb.embed_texts(["dog", "red car", "a very long text " * 40])  # truncated, not an error
    _assert_unit_rows(v, 3)
    assert not np.allclose(v[0], v[1])


def test_embed_texts_verbatim(emb: OpenClipEmbedder) -> None:
    verbatim = emb.embed_texts(["dog", "cat"], templates=None)
    _assert_unit_rows(verbatim, 2)
    one_template = emb.embed_texts(["dog", "cat"], templates=["{}"])
    np.testing.assert_allclose(one_template, verbatim, atol=1e-5)
    assert not np.allclose(emb.embed_texts(["dog"], templates=DEFAULT_TEMPLATES)[0], verbatim[0])


def test_embed_texts_deterministic(emb: OpenClipEmbedder) -> None:
    np.testing.assert_array_equal(emb.embed_texts(["dog"]), emb.embed_texts(["dog"]))


def test_non_string_text_rejected(emb: OpenClipEmbedder) -> None:
    with pytest.raises(ValueError, match="text 1 must be a str"):
        emb.embed_texts(["dog", 3], templates=None)  # type: ignore[list-item]


# -- identity ---------------------------------------------------------------------------------


def test_describe_is_stable_and_device_free(emb: OpenClipEmbedder, tiny_dir: Path) -> None:
    d = emb.describe()
    assert d == {
        "name": "open_clip",
        "model": str(tiny_dir.resolve()),
        "pretrained": None,
        "dim": 16,
    }
    assert "device" not in d
    assert json.loads(json.dumps(d)) == d
    assert OpenClipEmbedder(model=str(tiny_dir), device="cpu").describe() == d
    assert "OpenClipEmbedder(" in repr(emb)


def test_registry_entry_point() -> None:
    from segindex.embed import EMBEDDERS

    assert EMBEDDERS.get("open_clip") is OpenClipEmbedder
    assert "open_clip" in EMBEDDERS.names()


# -- load failures ----------------------------------------------------------------------------


def test_unknown_model_name() -> None:
    with pytest.raises(ModelLoadError, match="'ViT-B-3'") as info:
        OpenClipEmbedder(model="ViT-B-3", device="cpu")
    assert "ViT-B-32" in str(info.value)  # close-match hint
    assert "list_models()" in str(info.value)


def test_unknown_model_name_without_close_match() -> None:
    with pytest.raises(ModelLoadError, match="unknown CLIP model 'no-such-clip-xyz'"):
        OpenClipEmbedder(model="no-such-clip-xyz", device="cpu")


def test_missing_model_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelLoadError, match="does not exist"):
        OpenClipEmbedder(model=str(missing), device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        OpenClipEmbedder(model=f"local-dir:{missing}", device="cpu")


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no open_clip_config.json"):
        OpenClipEmbedder(model=str(tmp_path), device="cpu")


def test_directory_without_weights(tmp_path: Path, tiny_dir: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text(
        (tiny_dir / "open_clip_config.json").read_text()
    )
    with pytest.raises(ModelLoadError, match="could not load CLIP model from directory"):
        OpenClipEmbedder(model=str(tmp_path), device="cpu")


def test_missing_pretrained_file(tmp_path: Path) -> None:
    missing = tmp_path / "open_clip_pytorch_model.bin"
    with pytest.raises(ModelLoadError) as info:
        OpenClipEmbedder(model="ViT-B-32", pretrained=str(missing), device="cpu")
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_unknown_pretrained_tag() -> None:
    with pytest.raises(ModelLoadError, match="unknown weights 'no_such_tag'") as info:
        OpenClipEmbedder(model="ViT-B-32", pretrained="no_such_tag", device="cpu")
    assert "laion2b_s34b_b79k" in str(info.value)  # lists the known tags


def test_corrupt_checkpoint_file(tmp_path: Path) -> None:
    name, _ = save_tiny_open_clip_checkpoint(tmp_path / "good.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not load weights file") as info:
        OpenClipEmbedder(model=name, pretrained=str(bad), device="cpu")
    assert str(bad) in str(info.value)


def test_offline_hub_tag_fails_fast_with_local_copy_hint() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        OpenClipEmbedder(model="ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu")
    assert time.perf_counter() - t0 < 10.0
    msg = str(info.value)
    assert "'ViT-B-32'" in msg and "'laion2b_s34b_b79k'" in msg
    assert "--clip-pretrained /path/to/open_clip_pytorch_model.bin" in msg
    assert "--clip-model DIR" in msg
    assert "embedder_options={'model': 'ViT-B-32', 'pretrained': '/path/to/" in msg


def test_offline_hf_hub_model() -> None:
    t0 = time.perf_counter()
    repo = "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    with pytest.raises(ModelLoadError, match="Hugging Face Hub") as info:
        OpenClipEmbedder(model=repo, device="cpu")
    assert time.perf_counter() - t0 < 10.0
    assert repo in str(info.value) and "--clip-model DIR" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"precision": "fp8"}, "precision"),
        ({"device": "tpu"}, "device"),
        ({"pretrained": 3}, "pretrained"),
    ],
)
def test_bad_runtime_options(tiny_dir: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OpenClipEmbedder(model=str(tiny_dir), **kwargs)  # type: ignore[arg-type]


def test_bf16_precision_close_to_fp32(emb: OpenClipEmbedder, tiny_dir: Path) -> None:
    low = OpenClipEmbedder(model=str(tiny_dir), device="cpu", precision="bf16")
    assert low.describe() == emb.describe()  # same vector space
    v = low.embed_images(_images())
    _assert_unit_rows(v, 5)
    assert np.all((v * emb.embed_images(_images())).sum(axis=1) > 0.99)
