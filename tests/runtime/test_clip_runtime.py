"""The CLIP towers on OpenVINO give the torch path's vectors, and are found without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segindex.embed.clip import OpenClipEmbedder
from segindex.runtime import cache, ov
from segindex.runtime.clip_towers import load_cached

TEXTS = ["a dog", "a red car on a street", "x", ""]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (30 + 9 * i, 50 - 4 * i, 3), dtype=np.uint8) for i in range(6)]


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    return float((a * b).sum(axis=1).min())


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 0.99999), ("bf16", 0.999)])
def test_openvino_vectors_match_torch(
    tiny_clip_dir: Path, precision: str, tolerance: float
) -> None:
    torch_emb = OpenClipEmbedder(str(tiny_clip_dir), device="cpu", runtime="torch")
    ov_emb = OpenClipEmbedder(
        str(tiny_clip_dir), device="cpu", runtime="openvino", precision=precision
    )
    assert ov_emb.describe() == torch_emb.describe()  # the runtime is not the vector space
    info = ov_emb.runtime_info()
    assert info["runtime"] == "openvino" and info["precision"] == precision
    assert info["inference_precision"] in ("f32", "bf16")
    assert _min_cosine(torch_emb.embed_images(_images()), ov_emb.embed_images(_images())) >= (
        tolerance
    )
    assert _min_cosine(torch_emb.embed_texts(TEXTS), ov_emb.embed_texts(TEXTS)) >= tolerance
    assert (
        _min_cosine(
            torch_emb.embed_texts(TEXTS, templates=None), ov_emb.embed_texts(TEXTS, templates=None)
        )
        >= tolerance
    )


def test_towers_load_without_torch(tiny_clip_dir: Path, tmp_path: Path) -> None:
    emb = OpenClipEmbedder(str(tiny_clip_dir), device="cpu", runtime="openvino", precision="fp32")
    tokens = emb._tokenizer(TEXTS).numpy()
    expected = emb.embed_texts(TEXTS, templates=None)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "expected.npy", expected)
    script = f"""
import sys, numpy as np
from segindex.runtime.clip_towers import load_cached
text, image = load_cached({str(tiny_clip_dir)!r}, None, runtime="openvino", precision="fp32")
assert text is not None and image is not None, (text, image)
got = text(np.load({str(tmp_path / "tokens.npy")!r}))
want = np.load({str(tmp_path / "expected.npy")!r})
assert float((got * want).sum(1).min()) > 0.99999
s = image.image_size
out = image(np.zeros((3, 3, s, s), np.float32))
assert out.shape == (3, text.dim) and out.dtype == np.float32
assert "torch" not in sys.modules, "torch was imported"
print("ok", image.preprocess["mean"])
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")


def test_changed_weights_are_not_used(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    from segindex.testing.tiny_clip import save_tiny_open_clip

    model = save_tiny_open_clip(tmp_path / "clip")
    OpenClipEmbedder(str(model), device="cpu", runtime="openvino", precision="fp32")
    text, image = load_cached(str(model), None)
    assert text is not None and image is not None

    weights = model / "open_clip_model.safetensors"
    state = load_file(str(weights))
    name = next(k for k in state if k.endswith("ln_final.weight"))
    state[name] = state[name] * 2
    save_file(state, str(weights))
    assert load_cached(str(model), None) == (None, None)  # never a stale export


def test_other_runtime_version_is_not_used(
    tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    OpenClipEmbedder(str(tiny_clip_dir), device="cpu", runtime="openvino", precision="fp32")
    assert load_cached(str(tiny_clip_dir), None)[0] is not None
    monkeypatch.setattr(ov, "version", lambda: "0.0.0-other")
    assert load_cached(str(tiny_clip_dir), None) == (None, None)


def test_entry_that_does_not_match_its_key_is_rebuilt(tiny_clip_dir: Path) -> None:
    emb = OpenClipEmbedder(str(tiny_clip_dir), device="cpu", runtime="openvino", precision="fp32")
    assert emb._towers is not None
    where = emb._towers[0].where
    manifest = json.loads((where / cache.MANIFEST).read_text())
    manifest["key"]["weights"] = "0" * 64  # an entry in the key's place made from other weights
    (where / cache.MANIFEST).write_text(json.dumps(manifest))
    assert load_cached(str(tiny_clip_dir), None)[0] is None
    assert not where.exists()  # removed, to be exported again
    again = OpenClipEmbedder(str(tiny_clip_dir), device="cpu", runtime="openvino", precision="fp32")
    assert again._towers is not None and again._towers[0].where == where and where.exists()


def test_random_weights_have_no_torch_free_export() -> None:
    assert load_cached("ViT-B-32", None) == (None, None)
    assert load_cached(str(Path("nowhere").resolve()), "x.bin") == (None, None)
