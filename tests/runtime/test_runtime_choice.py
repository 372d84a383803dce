"""Choosing the runtime: auto, the environment, a missing OpenVINO, a GPU, the CLI and the index's
record of the runtimes that made its vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import segindex.runtime as rt
from segindex.config import RuntimeOptions
from segindex.errors import ConfigError


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rt.ENV_VAR, raising=False)


@pytest.mark.usefixtures("no_env")
def test_auto_is_openvino_on_cpu_and_torch_elsewhere() -> None:
    assert rt.resolve_runtime("auto", "cpu") == "openvino"
    assert rt.resolve_runtime("auto", "cuda:0") == "torch"
    assert rt.resolve_runtime("torch", "cpu") == "torch"


def test_environment_replaces_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rt.ENV_VAR, "torch")
    assert rt.resolve_runtime("auto", "cpu") == "torch"
    assert rt.resolve_runtime("openvino", "cpu") == "openvino"  # an explicit choice wins
    monkeypatch.setenv(rt.ENV_VAR, "tensorrt")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        rt.resolve_runtime("auto", "cpu")


@pytest.mark.usefixtures("no_env")
def test_missing_openvino_falls_back_to_torch_with_one_notice(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(rt, "available", lambda name: name == "torch")
    monkeypatch.setattr(rt, "_noticed", set())
    assert rt.resolve_runtime("auto", "cpu") == "torch"
    assert rt.resolve_runtime("auto", "cpu") == "torch"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OpenVINO is not installed" in err
    with pytest.raises(ConfigError, match=r"pip install 'segindex\[openvino\]'"):
        rt.resolve_runtime("openvino", "cpu")


def test_bad_choices_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="CPU only"):
        rt.resolve_runtime("openvino", "cuda")
    with pytest.raises(ConfigError, match="onnxruntime is not offered"):
        rt.check_runtime("onnxruntime")
    with pytest.raises(ConfigError, match="runtime must be one of"):
        RuntimeOptions(runtime="tensorrt")
    with pytest.raises(ConfigError, match="fp32 or bf16"):
        rt.openvino_hint("fp16")


def test_auto_precision_by_model_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert rt.auto_precision("segmenter") == "fp32"
    monkeypatch.setattr(rt, "cpu_has_bf16", lambda: True)
    assert rt.auto_precision("embedder") == "bf16"
    monkeypatch.setattr(rt, "cpu_has_bf16", lambda: False)
    assert rt.auto_precision("embedder") == "fp32"


@pytest.mark.parametrize("command", ["ingest", "search", "serve"])
def test_cli_takes_runtime(command: str) -> None:
    from segindex.cli import main

    out = CliRunner().invoke(main, [command, "--help"])
    assert out.exit_code == 0 and "--runtime [auto|torch|openvino]" in out.output


def _photos(root: Path, n: int, offset: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(offset)
    for i in range(n):
        img = np.zeros((48, 64, 3), np.uint8)
        img[:, : 20 + 10 * i] = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(img).save(root / f"p{offset + i}.png")
    return root


def test_index_records_runtimes_and_mixes_within_tolerance(
    tmp_path: Path, tiny_m2f_dir: Path, tiny_clip_dir: Path
) -> None:
    from segindex import Index

    kw = {
        "segmenter": "panoptic",
        "segmenter_options": {"model": str(tiny_m2f_dir), "resolution": 64},
        "embedder": "open_clip",
        "embedder_options": {"model": str(tiny_clip_dir), "pretrained": None},
    }
    path = tmp_path / "idx.segindex"
    compiled = RuntimeOptions(device="cpu", runtime="openvino", precision="fp32")
    with Index.create(path, runtime=compiled, **kw) as idx:  # type: ignore[arg-type]
        idx.ingest(_photos(tmp_path / "a", 2))
        assert idx.info()["embedder_runtimes"] == [
            {
                "runtime": "openvino",
                "precision": "fp32",
                "inference_precision": "f32",
                "runtime_version": rt.ov.version(),
            }
        ]
        ov_hits = idx.search("a dog", k=3)
    with Index.open(path, runtime=RuntimeOptions(device="cpu", runtime="torch")) as idx:
        idx.ingest(_photos(tmp_path / "b", 1, offset=5))  # torch vectors join openvino ones
        runtimes = idx.info()["embedder_runtimes"]
        assert [r["runtime"] for r in runtimes] == ["openvino", "torch"]
        torch_hits = idx.search("a dog", k=3)
    from segindex.cli import main

    out = CliRunner().invoke(main, ["info", "--index", str(path)])
    assert out.exit_code == 0, out.output
    assert "vectors by:  openvino fp32, torch fp32 (mixed: all within cosine" in out.output
    # the openvino-made rows are found alike by a torch query
    ov_scores = {h.region_id: h.score for h in ov_hits}
    for h in torch_hits:
        if h.region_id in ov_scores:
            assert abs(h.score - ov_scores[h.region_id]) < 1e-3


@pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"
)
def test_cuda_keeps_the_torch_path(tiny_clip_dir: Path) -> None:
    from segindex.embed.clip import OpenClipEmbedder

    emb = OpenClipEmbedder(str(tiny_clip_dir), device="cuda")
    assert emb.runtime_info()["runtime"] == "torch" and emb.device.startswith("cuda")
    with pytest.raises(ConfigError, match="CPU only"):
        OpenClipEmbedder(str(tiny_clip_dir), device="cuda", runtime="openvino")
