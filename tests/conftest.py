"""Shared fixtures: fake backends through the real registries and scenes with known truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex.testing.fakes import draw_scene, register_fakes

# Never reach for a model hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The suite tests the torch path of the models; tests/runtime/ asks for OpenVINO explicitly (the
# default runtime, auto, would otherwise export every tiny model it meets: segindex.runtime).
os.environ.setdefault("SEGINDEX_RUNTIME", "torch")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# name -> (shapes, background, format). Shapes are (colour, XYXY box), drawn in order.
SCENES: dict[str, tuple[list[tuple[str, tuple[int, int, int, int]]], str, str]] = {
    "a.png": ([("red", (10, 10, 50, 40)), ("blue", (60, 50, 120, 90))], "gray", "PNG"),
    "b.png": ([("green", (5, 5, 45, 60)), ("red", (70, 20, 100, 80))], "white", "PNG"),
    "sub/c.png": ([("yellow", (20, 30, 90, 70))], "gray", "PNG"),
    "sub/deeper/d.bmp": ([("blue", (0, 0, 40, 40)), ("orange", (50, 40, 110, 95))], "gray", "BMP"),
}


def scene_truth(name: str) -> dict[str, np.ndarray]:
    """label -> HxW bool ground-truth mask for a scene (background label included)."""
    shapes, background, _ = SCENES[name]
    img = draw_scene(shapes, background=background)
    from segindex.testing.fakes import PALETTE

    out = {}
    for label, rgb in PALETTE.items():
        m = (img == np.array(rgb, dtype=np.uint8)).all(-1)
        if m.any():
            out[label] = m
    return out


@pytest.fixture(autouse=True)
def _fakes() -> None:
    register_fakes()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of synthetic scenes (nested) whose regions are known exactly."""
    root = tmp_path / "photos"
    for name, (shapes, background, fmt) in SCENES.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_scene(shapes, background=background)).save(p, fmt)
    return root


@pytest.fixture
def make_index(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory of fake-backed indexes in tmp_path; closes them at teardown."""
    from segindex import Index

    made = []

    def make(name: str = "idx.segindex", **kw):  # type: ignore[no-untyped-def]
        kw.setdefault("segmenter", "fake")
        kw.setdefault("embedder", "fake")
        idx = Index.create(tmp_path / name, **kw)
        made.append(idx)
        return idx

    yield make
    for idx in made:
        idx.close()
