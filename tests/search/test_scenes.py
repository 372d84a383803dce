"""Scene search over images with known ground truth: each relation, AND/OR/NOT, counts, the
choice of a weaker region that satisfies a relation, and deepening past the first batch.

Scenes are painted palette rectangles on grey; a test segmenter gives one region per connected
component of each colour (holes filled, so a square painted on a larger one lies INSIDE it; grey
background left out), and the fake embedder makes "red" match red regions (cosine ~1.0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from segindex import (
    Above,
    And,
    Count,
    Index,
    LeftOf,
    Not,
    Object,
    Or,
    Overlaps,
    SceneHit,
    Then,
)
from segindex.errors import QueryError
from segindex.regions import Regions
from segindex.search.scenes import executor
from segindex.segment import SEGMENTERS
from segindex.segment.base import Segmenter
from segindex.testing.fakes import PALETTE_NAMES, draw_scene, quantise, register_fakes


class ComponentSegmenter(Segmenter):
    """One region per connected component of each palette colour but grey, holes filled."""

    name = "fake_components"

    def __init__(self, device: str = "cpu") -> None:
        pass

    def _segment_batch(self, images: list[np.ndarray]) -> list[Regions]:
        return [self._one(im) for im in images]

    def _one(self, image: np.ndarray) -> Regions:
        q = quantise(image)
        masks, ids = [], []
        for i, colour in enumerate(PALETTE_NAMES):
            if colour == "gray":
                continue
            comp, n = ndimage.label(q == i)
            for c in range(1, n + 1):
                masks.append(ndimage.binary_fill_holes(comp == c))
                ids.append(i)
        stack = np.stack(masks) if masks else np.zeros((0, *q.shape), bool)
        return Regions.from_masks(
            stack,
            label_ids=ids,
            labels=[PALETTE_NAMES[i] for i in ids],
            scores=[0.9] * len(ids),
            is_thing=[True] * len(ids),
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def register() -> None:
    register_fakes()
    SEGMENTERS.register("fake_components", ComponentSegmenter, replace=True)


SHADE = (200, 45, 45)  # still "red" to the segmenter, a little less red to the embedder

SCENES: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = {
    "lr0": [("red", (10, 30, 40, 60)), ("blue", (80, 30, 110, 60))],
    "lr1": [("red", (5, 5, 25, 25)), ("blue", (60, 60, 90, 90))],
    "rl0": [("blue", (10, 30, 40, 60)), ("red", (80, 30, 110, 60))],
    "ab0": [("red", (50, 5, 80, 25)), ("blue", (50, 60, 80, 90))],
    "near0": [("red", (30, 30, 50, 50)), ("blue", (55, 30, 75, 50))],
    "in0": [("yellow", (20, 10, 100, 80)), ("red", (40, 30, 60, 50))],
    "in1": [("yellow", (20, 10, 100, 80)), ("red", (40, 25, 70, 55))],
    "big0": [("red", (10, 10, 70, 70)), ("blue", (90, 10, 100, 20))],
    # a pure red right of the blue, and a shaded red left of it: the relation needs the weaker
    "two": [("red", (100, 40, 120, 60)), ("blue", (50, 40, 70, 60)), ("shade", (5, 45, 15, 55))],
    **{
        f"g{n}": [("magenta", (100, 5, 120, 20))]
        + [("green", (5 + 25 * j, 40, 17 + 25 * j, 52)) for j in range(n)]
        for n in range(5)
    },
}


def paint(shapes: list[tuple[str, tuple[int, int, int, int]]]) -> np.ndarray:
    im = draw_scene([(c, b) for c, b in shapes if c != "shade"])
    for c, (x0, y0, x1, y1) in shapes:
        if c == "shade":
            im[y0:y1, x0:x1] = SHADE
    return im


@pytest.fixture(scope="module")
def idx(tmp_path_factory: pytest.TempPathFactory) -> Any:
    register()
    root = tmp_path_factory.mktemp("scenes")
    for name, shapes in SCENES.items():
        Image.fromarray(paint(shapes)).save(root / f"{name}.png")
    index = Index.create(
        tmp_path_factory.mktemp("idx") / "s.segindex", segmenter="fake_components", embedder="fake"
    )
    index.ingest(root)
    yield index
    index.close()


def names(hits: list[SceneHit]) -> list[str]:
    return [Path(h.image_path).stem for h in hits]


def check_order(hits: list[SceneHit]) -> None:
    keys = [(-h.score, h.image_id) for h in hits]
    assert keys == sorted(keys)


CASES = [
    ("red LEFT OF blue", {"lr0", "lr1", "near0", "big0", "two"}),
    ("red RIGHT OF blue", {"rl0", "two"}),
    ("blue LEFT OF red", {"rl0", "two"}),
    ("red ABOVE blue", {"lr1", "ab0"}),
    ("red BELOW blue", {"big0"}),
    ("blue ABOVE red", {"big0"}),
    ("red INSIDE yellow", {"in0", "in1"}),
    ("yellow INSIDE red", set()),
    ("red OVERLAPS yellow", {"in1"}),
    ("red NEAR blue", {"near0", "big0"}),
    ("red LARGER THAN blue", {"big0"}),
    ("blue LARGER THAN red", {"lr1", "ab0", "two"}),
    ("red LEFT OF blue AND red NEAR blue", {"near0", "big0"}),
    ("red AND NOT blue", {"in0", "in1"}),
    ("red AND NOT yellow", {"lr0", "lr1", "rl0", "ab0", "near0", "big0", "two"}),
    ("red WITH blue", {"lr0", "lr1", "rl0", "ab0", "near0", "big0", "two"}),
    ("COUNT(green) >= 3", {"g3", "g4"}),
    ("COUNT(green) > 3", {"g4"}),
    ("COUNT(green) = 2", {"g2"}),
    ("COUNT(green) <= 1 AND magenta", {"g0", "g1"}),
    ("magenta AND NOT COUNT(green) >= 2", {"g0", "g1"}),
    ("yellow OR green", {"in0", "in1", "g1", "g2", "g3", "g4"}),
    ("(yellow OR green) AND NOT magenta", {"in0", "in1"}),
    ("red LEFT OF blue OR red INSIDE yellow", {"lr0", "lr1", "near0", "big0", "two", "in0", "in1"}),
    ("red~0.9999 LEFT OF blue", {"lr0", "lr1", "near0", "big0"}),  # the shaded red is too weak
    ("cyan", set()),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_scene_text(idx, text, expected):
    hits = idx.search_scenes(text, k=50)
    assert set(names(hits)) == expected
    assert len(hits) == len(expected)
    check_order(hits)


def test_python_algebra(idx):
    red, blue = Object("red"), Object("blue")
    either = red & blue & (LeftOf("red", "blue") | Above("red", "blue"))
    assert set(names(idx.search_scenes(either, k=50))) == {
        "lr0",
        "lr1",
        "near0",
        "big0",
        "two",
        "ab0",
    }
    smaller = Object("red") & Object("yellow") & Overlaps("red", "yellow", mode="smaller")
    assert set(names(idx.search_scenes(smaller))) == {"in0", "in1"}
    neither = red & blue & ~LeftOf("red", "blue") & ~Above("red", "blue")
    assert set(names(idx.search_scenes(neither))) == {"rl0", "two"}
    counted = Count(Object("green"), at_least=2) & ~Count(Object("green"), at_least=4)
    assert names(idx.search_scenes(counted)) == ["g2", "g3"]
    named = Object("red", name="thing") & Object("blue") & LeftOf("thing", "blue", margin=0.3)
    assert set(names(idx.search_scenes(named))) == {"lr0", "lr1", "big0", "two"}


def test_relation_picks_the_region_that_satisfies_it(idx):
    hits = {Path(h.image_path).stem: h for h in idx.search_scenes("red LEFT OF blue", k=50)}
    two = hits["two"]
    assert two.parts["red"][0].bbox == (5.0, 45.0, 15.0, 55.0)  # the shaded one, left of blue
    assert two.score == pytest.approx(two.parts["red"][0].similarity)
    assert two.score < hits["lr0"].score == pytest.approx(1.0, abs=1e-5)
    assert names(idx.search_scenes("red LEFT OF blue", k=50))[-1] == "two"  # weakest last
    right = {Path(h.image_path).stem: h for h in idx.search_scenes("red RIGHT OF blue", k=50)}
    assert right["two"].parts["red"][0].bbox == (100.0, 40.0, 120.0, 60.0)
    for h in hits.values():  # two parts are always two different regions
        assert h.parts["red"][0].region_id != h.parts["blue"][0].region_id


def test_scores_and_parts(idx):
    hits = idx.search_scenes(Count(Object("green"), at_least=3), k=5)
    assert names(hits) == ["g3", "g4"]
    assert [len(h.parts["green"]) for h in hits] == [3, 3]
    hit = idx.search_scenes("red INSIDE yellow")[0]
    assert hit.score == pytest.approx(min(p[0].similarity for p in hit.parts.values()))
    assert hit.kind == "image" and hit.start_s is None
    data = json.loads(json.dumps(hit.to_dict()))
    assert set(data["parts"]) == {"red", "yellow"}
    assert data["parts"]["red"][0]["rle"]["size"] == [96, 128]
    assert data["image_id"] == hit.image_id


def test_k_cuts_the_ranked_list(idx):
    every = idx.search_scenes("red LEFT OF blue", k=50)
    for k in (1, 2, 4):
        assert [h.image_id for h in idx.search_scenes("red LEFT OF blue", k=k)] == [
            h.image_id for h in every[:k]
        ]


def test_bad_queries(idx):
    with pytest.raises(QueryError, match="videos"):
        idx.search_scenes(Object("a") & Object("b") & Then("a", "b"))
    with pytest.raises(QueryError, match="videos"):
        idx.search_scenes("red WITH blue DURING 2s")
    with pytest.raises(QueryError, match="scope"):
        idx.search_scenes("red", scope="regions")
    with pytest.raises(QueryError, match="k must"):
        idx.search_scenes("red", k=0)
    with pytest.raises(QueryError, match="at character 13") as err:
        idx.search_scenes("red AND (blue")
    assert err.value.position == 13
    with pytest.raises(QueryError, match="names part"):
        idx.search_scenes(And((Object("red"), LeftOf("red", "blue"))))
    with pytest.raises(QueryError, match="at least one object"):
        idx.search_scenes(Not(Object("red")))
    assert idx.search_scenes(Or((Object("cyan"), Object("black")))) == []


# -- deepening: more candidates than the first batch --------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """30 images, each a red square of its own shade (image i less red as i grows), a blue
    square left of it in every third image, right of it in the others."""
    register()
    root = tmp_path_factory.mktemp("many")
    for i in range(30):
        im = draw_scene([])
        im[40:60, 60:80] = (220 - i, 30 + i, 30)
        bx = 10 if i % 3 == 0 else 100
        im[40:60, bx : bx + 15] = (30, 60, 220)
        Image.fromarray(im).save(root / f"m{i:02d}.png")
    index = Index.create(
        tmp_path_factory.mktemp("idx") / "m.segindex", segmenter="fake_components", embedder="fake"
    )
    index.ingest(root)
    yield index
    index.close()


def test_deepening_finds_every_image(many, monkeypatch):
    calls = []
    real = executor._Run._deepen

    def counting(self: Any, part: Any, batch: int) -> None:
        calls.append(batch)
        real(self, part, batch)

    monkeypatch.setattr(executor._Run, "_deepen", counting)
    wide = many.search_scenes("blue LEFT OF red", k=20)
    assert names(wide) == [f"m{i:02d}" for i in range(0, 30, 3)]  # most red first
    monkeypatch.setattr(executor, "FIRST_BATCH", 1)
    calls.clear()
    for k in (1, 3, 10, 20):
        assert many.search_scenes("blue LEFT OF red", k=k) == wide[:k]
    assert max(calls) >= 16  # the lists were deepened (1, 2, 4, ...)
    calls.clear()
    top = many.search_scenes("red AND blue AND blue LEFT OF red", k=2)
    assert names(top) == ["m00", "m03"]
    assert len(calls) > 2


@pytest.fixture(scope="module")
def random_index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """300 images of 8 random boxes each, clustered random vectors (many near-ties across
    images, so lists are long), written straight to the store."""
    import json as json_
    from datetime import datetime, timezone

    from sqlalchemy import insert

    from segindex import rle as rle_codec
    from segindex.store.schema import images
    from segindex.store.sql import bump_generation

    register()
    index = Index.create(
        tmp_path_factory.mktemp("idx") / "r.segindex", segmenter="fake_components", embedder="fake"
    )
    rng = np.random.default_rng(7)
    n_images, per, dim = 300, 8, index.dim
    centres = rng.normal(size=(6, dim))
    n = n_images * per
    vecs = centres[rng.integers(0, 6, n)] + 0.5 * rng.normal(size=(n, dim))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    now = datetime.now(timezone.utc)
    crop = json_.dumps(index.settings.crop.to_dict(), sort_keys=True)
    rows = []
    for j in range(n):
        x, y = (int(v) for v in rng.integers(0, 48, 2))
        m = np.zeros((64, 64), bool)
        m[y : y + 16, x : x + 16] = True
        rows.append(
            dict(id=j + 1, image_id=j // per + 1, kind="segment", label_id=0, label="x",
                 score=0.9, is_thing=True, x0=float(x), y0=float(y), x1=float(x + 16),
                 y1=float(y + 16), area=256, rle=rle_codec.encode(m)["counts"], crop=crop)
        )  # fmt: skip
    with index.store.transaction() as tx:
        conn = tx.conn
        conn.execute(
            insert(images),
            [
                dict(id=i + 1, path=f"/r/{i}.png", sha256=None, width=64, height=64,
                     status="indexed", error=None, n_regions=per, created_at=now, updated_at=now)
                for i in range(n_images)
            ],
        )  # fmt: skip
        tx.insert(rows, vecs)
        bump_generation(conn)
    yield index
    index.close()


@pytest.mark.parametrize("seed", range(6))
def test_deepening_equals_evaluating_everything(random_index, monkeypatch, seed):
    rng = np.random.default_rng(seed)
    a, b, c = (int(v) for v in rng.integers(1, 2400, 3))
    thr = float(rng.choice([0.3, 0.6, 0.8]))
    parts = [
        Object(region_id=r, name=n, min_similarity=thr) for r, n in ((a, "a"), (b, "b"), (c, "c"))
    ]
    queries = [
        parts[0] & parts[1] & LeftOf("a", "b"),
        parts[0] & parts[1] & parts[2] & LeftOf("a", "b") & Above("c", "b"),
        (parts[0] & ~parts[2]) | (parts[1] & Count(parts[2], at_least=2)),
    ]
    monkeypatch.setattr(executor, "FIRST_BATCH", 10**6)  # everything in the first batch
    full = [random_index.search_scenes(q, k=300) for q in queries]
    assert all(full) and len(full[0]) > 20  # non-trivial answers
    monkeypatch.setattr(executor, "FIRST_BATCH", 1)
    for q, every in zip(queries, full, strict=True):
        for k in (1, 5, 20):
            got = random_index.search_scenes(q, k=k)
            assert [(h.image_id, h.score) for h in got] == [
                (h.image_id, h.score) for h in every[:k]
            ]
