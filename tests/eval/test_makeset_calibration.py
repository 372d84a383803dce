"""The evaluation set stays hard: embedders that only see pixels score near chance on it, and an
oracle that knows every region's class and source instance scores 1.0 through the real
ingest -> evaluate path."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segindex import Index
from segindex.config import CropPolicy
from segindex.embed import EMBEDDERS
from segindex.embed.base import Embedder
from segindex.eval.makeset import make_set
from segindex.eval.ranking import average_precision, chance_average_precision
from segindex.eval.retrieval import RetrievalOptions, evaluate_retrieval
from segindex.formats.coco import load_masks

#: image->region class-level mAP of a pixels-only embedder may exceed chance by at most this
#: (measured on this set: colour fake +0.06, random tiny CLIP +0.06; the set made before
#: augmentation gave a random ViT-B-32 0.84 against a chance of ~0.2)
MARGIN = 0.10
CROP = CropPolicy(min_area_px=1, min_area_frac=0.0)


@pytest.fixture(scope="module")
def evalset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_set(tmp_path_factory.mktemp("cal") / "set", n=24, seed=0, size=(128, 160))


def _evaluate(root: Path, info: dict[str, Any], embedder: str, **options: Any) -> dict[str, Any]:
    with Index.create(
        root / f"{embedder}.segindex",
        segmenter="coco",
        segmenter_options={"annotations": info["panoptic"], "images_root": info["images_root"]},
        embedder=embedder,
        embedder_options=options,
        crop=CROP,
    ) as idx:
        report = idx.ingest(info["images_root"])
        assert report.failed == 0
        opts = RetrievalOptions(images_root=info["images_root"])
        return evaluate_retrieval(idx, load_masks(info["instances"]), opts)


def test_set_has_instances_augmentation_and_distractors(evalset: dict[str, Any]) -> None:
    inst = json.loads(Path(evalset["instances"]).read_text())
    assert all(a["source"] for a in inst["annotations"])
    per = evalset["instances_per_class"]
    assert per["coin"] >= 3 and per["ball"] >= 3 and per["horse"] >= 2
    assert evalset["per_class"]["distractor"] >= 5
    # two pastes of one source instance never repeat the same pixels
    from segindex.formats.coco import load_masks as load
    from segindex.images import load_image

    gt = load(evalset["instances"])
    seen: dict[str, list[np.ndarray]] = {}
    for im in gt.images:
        pixels = load_image(Path(evalset["images_root"]) / im.file_name)
        for ann, mask in zip(gt.annotations(im.id), gt.masks(im.id).regions.masks, strict=True):
            seen.setdefault(ann["source"], []).append(pixels[mask].mean(0))
    repeated = [np.ptp(np.stack(v), axis=0).max() for v in seen.values() if len(v) > 1]
    assert len(repeated) >= 5
    assert min(repeated) > 2.0  # mean colours differ between pastes (colour jitter)


@pytest.mark.parametrize("n, r", [(1, 1), (5, 1), (5, 2), (6, 6), (7, 3)])
def test_chance_ap_is_the_mean_over_all_orders(n: int, r: int) -> None:
    aps = [
        average_precision(np.isin(np.arange(n), pos), r)
        for pos in itertools.permutations(range(n), r)
    ]
    assert chance_average_precision(r, n) == pytest.approx(float(np.mean(aps)))


def test_pixel_embedders_score_near_chance(evalset: dict[str, Any], tmp_path: Path) -> None:
    from segindex.testing.fakes import register_fakes
    from segindex.testing.tiny_clip import save_tiny_open_clip

    register_fakes()
    tiny = save_tiny_open_clip(tmp_path / "tiny")
    for embedder, options in (("fake", {}), ("open_clip", {"model": str(tiny)})):
        r = _evaluate(tmp_path, evalset, embedder, **options)
        s = r["summary"]
        assert r["image_to_region"]["queries"] >= 40
        assert 0.05 < s["image_chance_map"] < 0.3
        assert abs(s["image_map"] - s["image_chance_map"]) <= MARGIN, (embedder, s)
        assert abs(s["instance_map"] - s["instance_chance_map"]) <= MARGIN, (embedder, s)


class OracleEmbedder(Embedder):
    """Knows each ground-truth crop: vector = class one-hot + 0.5 x source-instance one-hot
    (so same instance > same class > anything else); unknown crops get their own axis."""

    name = "oracle"

    def __init__(self, table: dict[str, np.ndarray], dim: int, device: str = "cpu") -> None:
        self.table, self._dim = table, dim

    @property
    def dim(self) -> int:
        return self._dim

    def _embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        unknown = np.eye(self._dim, dtype=np.float32)[-1]
        return np.stack([self.table.get(_digest(im), unknown) for im in images])

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), self._dim), np.float32)


def _digest(im: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(im).tobytes() + str(im.shape).encode()).hexdigest()


def test_oracle_scores_one(evalset: dict[str, Any], tmp_path: Path) -> None:
    from segindex.crop import crop_region
    from segindex.images import load_image

    gt = load_masks(evalset["instances"])
    keys: list[tuple[str, str, str]] = []
    for im in gt.images:
        pixels = load_image(Path(evalset["images_root"]) / im.file_name)
        regions = gt.masks(im.id).regions
        for j, ann in enumerate(gt.annotations(im.id)):
            crop = crop_region(pixels, regions.masks[j], regions.boxes[j], CROP)
            keys.append((_digest(crop), str(regions.labels[j]), ann["source"]))
    classes = sorted({k[1] for k in keys})
    sources = sorted({k[2] for k in keys})
    dim = len(classes) + len(sources) + 1
    table = {}
    for digest, cls, src in keys:
        v = np.zeros(dim, np.float32)
        v[classes.index(cls)] = 1.0
        v[len(classes) + sources.index(src)] = 0.5
        table[digest] = v
    EMBEDDERS.register(
        "oracle", lambda device="cpu": OracleEmbedder(table, dim, device), replace=True
    )
    try:
        r = _evaluate(tmp_path, evalset, "oracle")
    finally:
        EMBEDDERS.unregister("oracle")
    s = r["summary"]
    assert s["image_map"] == pytest.approx(1.0)
    assert s["instance_map"] == pytest.approx(1.0)
    assert s["image_map"] > s["image_chance_map"] + 0.5
    assert r["instance_to_region"]["queries"] >= 30


def test_textless_embedder_gets_image_queries_and_a_report(
    evalset: dict[str, Any], tmp_path: Path
) -> None:
    from segindex.eval.report import write_report
    from segindex.testing.fakes import FakeEmbedder

    class NoText(FakeEmbedder):
        name = "fake_notext"
        embeds_text = False

        def _embed_texts(self, texts: list[str]) -> np.ndarray:
            raise AssertionError("texts must not be embedded")

    EMBEDDERS.register("fake_notext", NoText, replace=True)
    try:
        r = _evaluate(tmp_path, evalset, "fake_notext")
    finally:
        EMBEDDERS.unregister("fake_notext")
    assert "does not embed text" in r["text_skipped"]
    assert r["text_to_region"]["per_class"] == [] and r["summary"]["text_map"] is None
    assert r["summary"]["image_map"] is not None and r["summary"]["instance_map"] is not None
    files = write_report(r, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Text queries skipped" in md and "same source instance" in md
    assert all(f.stat().st_size > 0 for f in files)


def test_cli_make_set_distractors_and_ignore_class(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from segindex.cli import main

    def run(*args: str) -> str:
        res = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    out = tmp_path / "set"
    text = run("eval", "make-set", str(out), "--n", "4", "--size", "96x128",
               "--max-distractors", "0")  # fmt: skip
    assert "source instances:" in text and "distractor" not in text.split(" to ")[0]
    info = json.loads(
        run(
            "eval",
            "make-set",
            str(tmp_path / "d"),
            "--n",
            "4",
            "--size",
            "96x128",
            "--max-distractors",
            "3",
            "--json",
        )  # fmt: skip
    )
    assert info["per_class"]["distractor"] >= 2
    res = CliRunner().invoke(
        main, ["eval", "make-set", str(tmp_path / "x"), "--max-distractors", "-1"]
    )
    assert res.exit_code != 0 and "--max-distractors must be >= 0" in res.output
    d = tmp_path / "d"
    index = tmp_path / "idx"
    run("ingest", str(d / "images"), "--index", str(index), "--segmenter", "coco",
        "--segmenter-option", f"annotations={d / 'panoptic.json'}", "--embedder", "fake",
        "--min-area", "1")  # fmt: skip
    base = ["eval", "retrieval", "--index", str(index), "--gt", str(d / "instances.json"), "--json"]
    default = json.loads(run(*base))
    queried = json.loads(run(*base, "--ignore-class", "none"))
    assert default["instance_chance_map"] is not None
    # distractors become queries (and relevant to each other) only when not ignored
    report = tmp_path / "rep"
    run(*base[:-1], "--ignore-class", "none", "-o", str(report))
    names = {
        r["name"]
        for r in json.loads((report / "result.json").read_text())["image_to_region"]["per_class"]
    }
    assert "distractor" in names and queried["image_map"] != default["image_map"]
