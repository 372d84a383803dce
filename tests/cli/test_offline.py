"""A first command on a machine that cannot reach the Hugging Face Hub: one quiet error line in
seconds (not a minute of retries and library warnings), and models in the local Hub cache still
load with no network and no probe."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex.testing.tiny_clip import save_tiny_open_clip
from segindex.testing.tiny_models import save_tiny_mask2former

SEGINDEX = [sys.executable, "-c", "from segindex.cli import main; main()"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: connection refused


def _unreachable_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        HF_HOME=str(tmp_path / "hf-home"),  # an empty cache: nothing to fall back on
        HF_HUB_CACHE=str(tmp_path / "hf-home" / "hub"),
        PYTHONWARNINGS="default",  # warnings on, as a user's shell may have them
    )
    env.pop("SEGINDEX_DEBUG", None)
    return env


def _timed(
    args: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    return time.perf_counter() - t0, out


@pytest.fixture(scope="module")
def import_seconds(tmp_path_factory) -> float:  # type: ignore[no-untyped-def]
    """What starting Python and importing the model libraries costs here, measured the same way,
    so the test bounds the time the loading path adds (the part segindex controls)."""
    env = _unreachable_env(tmp_path_factory.mktemp("imports"))
    code = "import segindex.cli, torch, transformers, open_clip, segindex.index"
    return _timed([sys.executable, "-c", code], env, Path.cwd())[0]


@pytest.mark.parametrize("which", ["clip", "segmenter"])
def test_unreachable_hub_fails_fast_and_quietly(
    tmp_path: Path, which: str, import_seconds: float
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(photos / "a.png")
    args = [*SEGINDEX, "ingest", "photos", "--index", "x.segindex"]
    if which == "segmenter":  # CLIP from a local directory: the segmenter is what needs the Hub
        args += ["--clip-model", str(save_tiny_open_clip(tmp_path / "clip"))]
    seconds, out = _timed(args, _unreachable_env(tmp_path), tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    model = "ViT-B-32" if which == "clip" else "facebook/mask2former-swin-tiny-coco-panoptic"
    assert model in lines[0] and "cannot be reached" in lines[0]
    assert ("--clip-pretrained" if which == "clip" else "--segmenter-model DIR") in lines[0]
    for noise in ("WARNING", "Retrying", "Traceback", "thrown while requesting"):
        assert noise not in text
    # the Hub client alone retried for 55 s here; the probe is bounded at about 3 s
    assert seconds - import_seconds < 5.0, (seconds, import_seconds)


def _put_in_hub_cache(cache: Path, repo: str, files: Path) -> None:
    """Lay ``files`` out as huggingface_hub's cache holds a downloaded repository."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    shutil.copytree(files, folder / "snapshots" / commit)


def test_cached_models_load_offline_without_a_probe(tmp_path: Path) -> None:
    env = _unreachable_env(tmp_path)
    cache = Path(env["HF_HUB_CACHE"])
    _put_in_hub_cache(cache, "segindex-test/tiny-m2f", save_tiny_mask2former(tmp_path / "m2f"))
    _put_in_hub_cache(cache, "segindex-test/tiny-clip", save_tiny_open_clip(tmp_path / "clip"))
    script = textwrap.dedent(
        """
        import time
        import segindex.hub as hub
        probes = []
        hub._probe = lambda url: probes.append(url) or "probe called"
        from segindex.embed.clip import OpenClipEmbedder
        from segindex.segment.panoptic import PanopticSegmenter
        t0 = time.perf_counter()
        seg = PanopticSegmenter(model="segindex-test/tiny-m2f")
        emb = OpenClipEmbedder(model="hf-hub:segindex-test/tiny-clip")
        print(len(probes), emb.dim, round(time.perf_counter() - t0, 2))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    probes, dim, _seconds = out.stdout.split()
    assert probes == "0" and int(dim) > 0
