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
from segindex.eval.coco import load_masks
from segindex.eval.makeset import make_set
from segindex.eval.ranking import average_precision, chance_average_precision
from segindex.eval.retrieval import RetrievalOptions, evaluate_retrieval

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
    from segindex.eval.coco import load_masks as load
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
