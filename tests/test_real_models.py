"""The real backends (transformers Mask2Former + open_clip) end to end, with tiny random models
saved to disk and loaded by path exactly as a user's local copy would be: through the Python API
and through the installed ``segindex`` console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex import Index
from segindex.testing.tiny_clip import TINY_EMBED_DIM, save_tiny_open_clip
from segindex.testing.tiny_models import save_tiny_mask2former


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "segmenter": save_tiny_mask2former(root / "mask2former"),
        "clip": save_tiny_open_clip(root / "clip"),
    }


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos bundled with scikit-image, in several formats and modes."""
    from skimage import data

    root = tmp_path_factory.mktemp("real")
    Image.fromarray(data.astronaut()).save(root / "astronaut.jpg", quality=90)
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    Image.fromarray(data.chelsea()).convert("P").save(root / "chelsea.gif")
    Image.fromarray(data.camera()).save(root / "camera.webp")  # grayscale
    return root


def test_index_with_real_backends(tiny, real_photos: Path, tmp_path: Path) -> None:
    idx = Index.create(
        tmp_path / "real.segindex",
        segmenter_options={"model": str(tiny["segmenter"]), "resolution": 64},
        embedder_options={"model": str(tiny["clip"]), "pretrained": None},
    )
    report = idx.ingest(real_photos)
    assert (report.indexed, report.failed) == (4, 0)
    assert idx.dim == TINY_EMBED_DIM
    counts = idx.store.counts()
    assert counts["whole_image_regions"] == 4
    assert counts["regions"] == report.regions
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    # labels come from the checkpoint's id2label, thing/stuff from the COCO names
    from segindex.data.coco_panoptic import COCO_STUFF_NAMES, coco_panoptic_id2label

    names = set(coco_panoptic_id2label().values())
    for r in idx.store.iter_regions():
        if r.kind == "segment":
            assert r.label in names and r.is_thing == (r.label not in COCO_STUFF_NAMES)
    # text and image search return well-formed hits whose masks fit their image
    for hits in (
        idx.search("a cat", k=3, scope="all"),
        idx.search(image=real_photos / "coffee.png", k=3, scope="all"),
    ):
        assert 1 <= len(hits) <= 3
        sims = [h.similarity for h in hits]
        assert sims == sorted(sims, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in sims)
        for h in hits:
            with Image.open(h.image_path) as im:
                assert h.mask().shape == (im.height, im.width)
            assert h.mask().sum() == h.area
    # vectors stored are unit-norm float32 of the embedder's dimension
    for _, vecs in idx.store.iter_vectors():
        assert vecs.dtype == np.float32 and vecs.shape[1] == TINY_EMBED_DIM
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    idx.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("segindex") or str(Path(sys.executable).parent / "segindex")
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=300, env=env or os.environ.copy()
    )


def test_cli_end_to_end_with_local_models(tiny, real_photos: Path, tmp_path: Path) -> None:
    index = tmp_path / "cli.segindex"
    r = _cli(
        "ingest",
        str(real_photos),
        "--index",
        str(index),
        "--segmenter-model",
        str(tiny["segmenter"]),
        "--segmenter-option",
        "resolution=64",
        "--clip-model",
        str(tiny["clip"]),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["indexed"] == 4 and report["failed"] == 0
    r = _cli(
        "search", "a red umbrella", "--index", str(index), "-k", "2", "--scope", "all", "--json"
    )
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert len(hits) == 2 and all(Path(h["image_path"]).parent == real_photos for h in hits)
    r = _cli(
        "search",
        "--image",
        str(real_photos / "astronaut.jpg"),
        "--index",
        str(index),
        "--scope",
        "images",
        "-k",
        "1",
        "--json",
    )
    assert r.returncode == 0 and Path(json.loads(r.stdout)[0]["image_path"]).name == "astronaut.jpg"
    r = _cli("info", "--index", str(index))
    assert r.returncode == 0 and "4 indexed" in r.stdout and "open_clip" in r.stdout


def test_missing_weights_give_one_clear_cli_error(tmp_path: Path, real_photos: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    # default models, unreachable hub: one line naming the model and how to pass a local copy
    r = _cli("ingest", str(real_photos), "--index", str(tmp_path / "a.segindex"), env=env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1
    assert "ViT-B-32" in err[0] and "laion2b_s34b_b79k" in err[0] and "--clip-" in err[0]
    # a wrong local path for the segmenter names that path
    clip = save_tiny_open_clip(tmp_path / "clip")
    r = _cli(
        "ingest",
        str(real_photos),
        "--index",
        str(tmp_path / "b.segindex"),
        "--clip-model",
        str(clip),
        "--segmenter-model",
        str(tmp_path / "no-such-model"),
        env=env,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no-such-model" in r.stderr and r.stderr.count("error:") == 1
    # an unreachable hub id for the segmenter names the id and the local-directory option
    r = _cli(
        "ingest",
        str(real_photos),
        "--index",
        str(tmp_path / "c.segindex"),
        "--clip-model",
        str(clip),
        env=env,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "facebook/mask2former-swin-tiny-coco-panoptic" in r.stderr
    assert "--segmenter-model" in r.stderr
