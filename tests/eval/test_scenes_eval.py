"""The compositional evaluation set and `eval scenes`: the set's truth is consistent (relevant sets
recomputed here from the stored masks with independent brute-force relations; the pixels are the
pastes; seeded output is byte-identical), the metrics are right on hand-made rankings, the colour
fakes can tell every paste's colour, and with exact masks and the colour embedder the
compositional search is exact while the whole-image and single-region baselines are not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segindex.config import CropPolicy
from segindex.eval.makeset_scenes import (
    BACKGROUND,
    CLASSES,
    MIN_VISIBLE,
    QUERY_TYPES,
    ambiguous,
    load_pastes,
    load_scene_set,
    make_scene_set,
)
from segindex.eval.scenes import SceneEvalOptions, evaluate_scenes, markdown, query_metrics
from segindex.testing.fakes import PALETTE
from tests.search.test_scenes_relations import filled

CROP = CropPolicy(min_area_px=1, min_area_frac=0.0)


@pytest.fixture(scope="module")
def scene_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_scene_set(tmp_path_factory.mktemp("scenes") / "set", n=60, seed=0)


def _relation(t: str, a: np.ndarray, b: np.ndarray) -> bool:
    """Independent brute force: centroids from coordinate grids, boxes from projections."""
    h, w = a.shape
    yy, xx = np.mgrid[:h, :w]
    ca = np.array([xx[a].sum(), yy[a].sum()]) / a.sum()
    cb = np.array([xx[b].sum(), yy[b].sum()]) / b.sum()
    if t in ("left_of", "right_of", "above", "below"):
        axis, sign = {"left_of": (0, 1), "right_of": (0, -1), "above": (1, 1), "below": (1, -1)}[t]
        return bool(sign * (cb[axis] - ca[axis]) > 0)
    if t == "inside":
        return np.logical_and(a, b).sum() >= 0.9 * a.sum()
    if t == "overlaps":
        return np.logical_and(a, b).sum() >= 0.1 * np.logical_or(a, b).sum()
    if t == "larger_than":
        return bool(a.sum() > b.sum())
    assert t == "near", t

    def box(m: np.ndarray) -> tuple[int, int, int, int]:
        xs, ys = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
        return xs[0], ys[0], xs[-1] + 1, ys[-1] + 1

    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = box(a), box(b)
    gap = np.hypot(max(0, bx0 - ax1, ax0 - bx1), max(0, by0 - ay1, ay0 - by1))
    diag = (np.hypot(ax1 - ax0, ay1 - ay0) + np.hypot(bx1 - bx0, by1 - by0)) / 2
    return bool(gap <= 0.5 * diag)


def _relevant(spec: dict[str, Any], pastes: list[tuple[str, np.ndarray]]) -> bool:
    t, a, b = spec["type"], spec["a"], spec.get("b")
    of_a = [m for c, m in pastes if c == a]
    of_b = [m for c, m in pastes if c == b]
    if t in ("count_ge", "count_eq", "count_le"):
        ok = {"count_ge": len(of_a) >= spec["n"], "count_eq": len(of_a) == spec["n"],
              "count_le": len(of_a) <= spec["n"]}[t]  # fmt: skip
        return ok and (b is None or len(of_b) > 0)
    if t == "and":
        return bool(of_a and of_b)
    if t == "or":
        return bool(of_a or of_b)
    if t == "and_not":
        return bool(of_a) and not of_b
    return any(_relation(t, x, y) for x in of_a for y in of_b)


def _raw_pastes(root: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    from segindex.rle import decode

    data = json.loads((root / "instances.json").read_text())
    cats = {c["id"]: c["name"] for c in data["categories"]}
    names = {im["id"]: im["file_name"] for im in data["images"]}
    out: dict[str, list[tuple[str, np.ndarray]]] = {n: [] for n in names.values()}
    for a in sorted(data["annotations"], key=lambda a: (a["image_id"], a["z"])):
        out[names[a["image_id"]]].append((cats[a["category_id"]], decode(a["segmentation"])))
    return out


def test_relevant_sets_agree_with_brute_force_on_the_stored_masks(
    scene_set: dict[str, Any],
) -> None:
    root = Path(scene_set["out"])
    pastes = _raw_pastes(root)
    data = load_scene_set(root)
    assert len(pastes) == 60 and scene_set["pastes"] >= 120
    assert [q["type"] for q in data["queries"]] == [t for t in QUERY_TYPES for _ in range(6)]
    for q in data["queries"]:
        truth = sorted(n for n, p in pastes.items() if _relevant(q["spec"], p))
        assert q["relevant"] == truth, q["text"]
        assert 0 < len(truth) < 60
    counts = {q["spec"]["n"] for q in data["queries"] if q["type"].startswith("count")}
    assert counts == {0, 1, 2, 3, 4, 5}
    texts = {q["text"] for q in data["queries"]}
    assert len(texts) == len(data["queries"])
    assert any(" AND COUNT(" in t for t in texts)  # counts that allow zero carry an anchor


def test_pixels_are_the_pastes_and_no_pair_is_borderline(scene_set: dict[str, Any]) -> None:
    from PIL import Image

    root = Path(scene_set["out"])
    for name, pastes in load_pastes(root).items():
        pixels = np.asarray(Image.open(root / "images" / name).convert("RGB"))
        expected = np.empty_like(pixels)
        expected[:] = PALETTE[BACKGROUND]
        for p in pastes:
            expected[p.mask] = PALETTE[p.cls]
        np.testing.assert_array_equal(pixels, expected, err_msg=name)
        for i, p in enumerate(pastes):
            later = np.zeros_like(p.mask)
            for q in pastes[i + 1 :]:
                later |= q.mask
            assert (p.mask & ~later).sum() >= MIN_VISIBLE * p.area
            assert not any(q.cls != p.cls and ambiguous(p, q) for q in pastes[:i])


def test_seeded_output_is_byte_identical(tmp_path: Path) -> None:
    a = make_scene_set(tmp_path / "a", n=8, seed=3, per_type=2)
    b = make_scene_set(tmp_path / "b", n=8, seed=3, per_type=2)
    c = make_scene_set(tmp_path / "c", n=8, seed=4, per_type=2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 8 + 2
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a/instances.json").read_bytes() != (
        tmp_path / "c/instances.json"
    ).read_bytes()
    assert a["query_types"] == b["query_types"] and c["images"] == 8


def test_query_texts_parse_to_their_objects(scene_set: dict[str, Any]) -> None:
    from segindex.eval.makeset_scenes import render
    from segindex.search.scenes import parse_scene
    from segindex.search.scenes.algebra import objects_of

    for q in load_scene_set(scene_set["out"])["queries"]:
        words = {q["spec"]["a"], q["spec"].get("b")} - {None}
        assert {o.text for o in objects_of(parse_scene(q["text"]))} == words, q["text"]
        sims = {o.min_similarity for o in objects_of(parse_scene(render(q["spec"], 0.3)))}
        assert sims == {0.3}


def test_query_metrics_hand_computed() -> None:
    m = query_metrics(["a", "x", "a", "b"], {"a", "b", "c"}, (1, 2, 4))
    assert m["ap"] == pytest.approx((1 + 2 / 4) / 3)
    assert m["precision@1"] == 1.0 and m["precision@2"] == 0.5 and m["precision@4"] == 0.5
    assert m["recall@1"] == pytest.approx(1 / 3) and m["recall@4"] == pytest.approx(2 / 3)
    assert m["r_precision"] == pytest.approx(1 / 3)  # one of the first three is new and relevant
    empty = query_metrics([], {"a"}, (5,))
    assert empty == {"ap": 0.0, "r_precision": 0.0, "precision@5": 0.0, "recall@5": 0.0}


def test_colour_fake_tells_every_paste_apart(scene_set: dict[str, Any]) -> None:
    """Each paste's crop (occluders included, as the index crops it) is nearest its own colour
    by a wide margin, so one similarity threshold separates every part exactly."""
    from segindex.crop import crop_region
    from segindex.images import load_image
    from segindex.masks import boxes_from_masks
    from segindex.testing.fakes import FakeEmbedder

    emb = FakeEmbedder()
    texts = emb.embed_texts(list(CLASSES), templates=None)
    own: list[float] = []
    other: list[float] = []
    for name, pastes in load_pastes(scene_set["out"]).items():
        image = load_image(Path(scene_set["images_root"]) / name)
        crops = [
            crop_region(image, p.mask, boxes_from_masks(p.mask[None])[0], CROP) for p in pastes
        ]
        for p, sims in zip(pastes, emb.embed_images(crops) @ texts.T, strict=True):
            i = CLASSES.index(p.cls)
            own.append(sims[i])
            other.extend(np.delete(sims, i))
    assert min(own) > 0.6 and max(other) < 0.1


def _oracle_index(scene_set: dict[str, Any], make_index: Any) -> Any:
    idx = make_index(
        segmenter="coco",
        segmenter_options={
            "annotations": scene_set["instances"],
            "images_root": scene_set["images_root"],
        },
        crop=CROP,
    )
    report = idx.ingest(scene_set["images_root"])
    assert report.failed == 0 and report.regions == scene_set["pastes"]
    return idx


def test_baselines_are_not_exact(scene_set: dict[str, Any], make_index: Any) -> None:
    idx = _oracle_index(scene_set, make_index)
    opts = SceneEvalOptions(methods=("whole_image", "first_region"))
    r = evaluate_scenes(idx, load_scene_set(scene_set["out"]), opts)
    s = r["summary"]
    assert r["images"] == {"indexed": 60, "in_set": 60, "matched": 60}
    assert s["chance_map"] < s["whole_image_map"] < 0.6 and s["first_region_map"] < 0.7
    rows = {row["type"]: row for row in r["per_type"]}
    assert rows["left_of"]["first_region_ap"] < 0.6 and rows["all"]["queries"] == 84
    md = markdown(r)
    assert "| left_of | 6 |" in md and "whole_image_ap" in md and "scenes_ap" not in md


def test_compositional_search_is_exact_with_the_oracle(
    scene_set: dict[str, Any], make_index: Any
) -> None:
    from segindex import Index

    if not hasattr(Index, "search_scenes"):
        pytest.skip("Index.search_scenes (segindex.search.scenes executor) is not in this build")
    idx = _oracle_index(scene_set, make_index)
    r = evaluate_scenes(idx, load_scene_set(scene_set["out"]), SceneEvalOptions(min_similarity=0.5))
    s = r["summary"]
    bad = [(q["text"], q["scenes_ap"], q.get("scenes_error")) for q in r["queries"]
           if q["scenes_ap"] != pytest.approx(1.0)]  # fmt: skip
    assert not bad
    assert s["scenes_map"] == pytest.approx(1.0) and s["scenes_errors"] == 0
    assert all(q["scenes_r_precision"] == 1.0 for q in r["queries"])
    # image exemplars instead of texts (what an embedder without text gets): exact too
    opts = SceneEvalOptions(terms="exemplar", ks=(5,))
    ex = evaluate_scenes(idx, load_scene_set(scene_set["out"]), opts)["summary"]
    assert ex["scenes_map"] == pytest.approx(1.0) and ex["scenes_errors"] == 0
    assert ex["whole_image_map"] < 0.6 and ex["first_region_map"] < 0.7
    assert s["whole_image_map"] < 0.6 and s["first_region_map"] < 0.7


def test_cli_make_set_compositional_and_eval_scenes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from segindex.cli import main

    def run(*args: str) -> str:
        res = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    out = tmp_path / "set"
    info = json.loads(run("eval", "make-set", str(out), "--compositional", "--n", "12",
                          "--queries-per-type", "2", "--json"))  # fmt: skip
    assert info["images"] == 12 and set(info["query_types"]) <= set(QUERY_TYPES)
    assert (out / "scenes.json").exists() and len(list((out / "images").glob("*.png"))) == 12
    index = tmp_path / "idx"
    run("ingest", str(out / "images"), "--index", str(index), "--segmenter", "coco",
        "--segmenter-option", f"annotations={out / 'instances.json'}", "--embedder", "fake",
        "--min-area", "1")  # fmt: skip
    base = ["eval", "scenes", str(out), "--index", str(index), "--method", "whole_image"]
    text = run(*base, "-k", "3", "-o", str(tmp_path / "rep"))
    assert "| type | queries | n_relevant | chance_ap | whole_image_ap |" in text
    assert "whole_image_precision@3" in text
    data = json.loads(run(*base, "--json", "--terms", "exemplar"))
    assert data["images"]["matched"] == 12 and data["summary"]["whole_image_map"] is not None
    assert json.loads((tmp_path / "rep" / "result.json").read_text())["kind"] == "scenes"
    video = json.loads(run("eval", "make-set", str(tmp_path / "v"), "--compositional", "--video",
                           "--n", "6", "--queries-per-type", "1", "--json"))  # fmt: skip
    assert video["videos"] == 6 and (tmp_path / "v" / "youtube_vis.json").exists()


# -- videos: tracks over time ----------------------------------------------------------------


@pytest.fixture(scope="module")
def video_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from segindex.eval.makeset_scenes_video import make_video_scene_set

    return make_video_scene_set(tmp_path_factory.mktemp("vscenes") / "set", n=24, per_type=3)


def _video_relevant(spec: dict[str, Any], spans: dict[str, tuple[float, float]]) -> bool:
    """Independent truth from track spans in seconds: WITH/DURING overlap, THEN start lag."""

    def overlap(a: str, b: str) -> float:
        return min(spans[a][1], spans[b][1]) - max(spans[a][0], spans[b][0])

    def then(a: str, b: str) -> bool:
        return 0 < spans[b][0] - spans[a][0] <= 3.0

    t, a, b, c = spec["type"], spec["a"], spec["b"], spec.get("c")
    if a not in spans or b not in spans:
        return False
    if t == "with":
        return overlap(a, b) >= 0
    if t == "during":
        return overlap(a, b) >= 2.0
    if t == "then":
        return then(a, b)
    return overlap(a, b) >= 2.0 and c in spans and then(b, c)


def test_video_relevant_sets_agree_with_the_stored_tracks(video_set: dict[str, Any]) -> None:
    from segindex.formats.youtube_vis import load_youtube_vis
    from segindex.search.scenes import parse_scene

    gt = load_youtube_vis(video_set["gt"])
    cats = {c["id"]: c["name"] for c in gt.categories}
    spans: dict[str, dict[str, tuple[float, float]]] = {}
    for v in gt.videos:
        assert v.times_s is not None and v.file_name is not None
        of_v = spans.setdefault(Path(v.file_name).name, {})
        for tr in gt.tracks_of(v.id):
            present = [f for f, seg in enumerate(tr.segmentations) if seg is not None]
            assert present == list(range(present[0], present[-1] + 1))  # one contiguous run
            assert cats[tr.category_id] not in of_v  # one track per colour and clip
            of_v[cats[tr.category_id]] = (v.times_s[present[0]], v.times_s[present[-1]])
    data = load_scene_set(video_set["out"])
    assert data["info"]["scope"] == "videos" and len(spans) == 24
    assert {q["type"] for q in data["queries"]} >= {"with", "during", "then"}
    for q in data["queries"]:
        truth = sorted(n for n, s in spans.items() if _video_relevant(q["spec"], s))
        assert q["relevant"] == truth and 0 < len(truth) < 24, q["text"]
        parse_scene(q["text"])


def test_video_compositional_search_is_exact_with_the_oracle(
    video_set: dict[str, Any], make_index: Any
) -> None:
    from segindex import Index
    from segindex.config import VideoOptions

    if not hasattr(Index, "search_scenes"):
        pytest.skip("Index.search_scenes (segindex.search.scenes executor) is not in this build")
    idx = make_index(
        segmenter="youtube_vis",
        segmenter_options={"annotations": video_set["gt"]},
        crop=CROP,
        video=VideoOptions(fps=4.0, dedup_threshold=0.0),
    )
    report = idx.ingest(video_set["videos_root"])
    assert report.failed == 0 and report.videos == 24
    data = load_scene_set(video_set["out"])
    for terms in ("text", "exemplar"):
        r = evaluate_scenes(idx, data, SceneEvalOptions(terms=terms))
        s = r["summary"]
        assert r["images"]["matched"] == 24
        assert s["scenes_map"] == pytest.approx(1.0) and s["scenes_errors"] == 0, terms
        assert s["whole_image_map"] < 0.7 and s["first_region_map"] < 0.7


# -- the executor's relations against brute-force definitions (hypothesis) --------------------

_SIZE = (24, 32)


@st.composite
def _masks(draw: st.DrawFn) -> np.ndarray:
    """A rectangle, an ellipse or a random blob (a rectangle with random pixels cleared)."""
    h, w = _SIZE
    y0, x0 = draw(st.integers(0, h - 2)), draw(st.integers(0, w - 2))
    y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
    m = np.zeros(_SIZE, bool)
    kind = draw(st.sampled_from(["rect", "ellipse", "blob"]))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    if kind == "rect":
        m[y0:y1, x0:x1] = True
    elif kind == "ellipse":
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        m[y0:y1, x0:x1] = ((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1
    else:
        seed = draw(st.integers(0, 2**16))
        m[y0:y1, x0:x1] = np.random.default_rng(seed).random((y1 - y0, x1 - x0)) < 0.6
    assume(m.any())
    return m


def _hit(rid: int, m: np.ndarray) -> Any:
    from segindex.masks import boxes_from_masks
    from segindex.rle import encode
    from segindex.search.hits import Hit

    x0, y0, x1, y1 = (float(v) for v in boxes_from_masks(m[None])[0])
    return Hit(region_id=rid, image_id=1, image_path="x.png", kind="segment", label="",
               label_id=0, score=1.0, is_thing=True, bbox=(x0, y0, x1, y1), area=int(m.sum()),
               rle=encode(m), similarity=1.0)  # fmt: skip


def _brute(kind: str, a: np.ndarray, b: np.ndarray, p: float, mode: str) -> tuple[float, float]:
    """``(value, bound)``: the relation holds when ``value < bound`` (directions) or
    ``value >= bound`` (the others), straight from the definitions."""
    h, w = a.shape
    yy, xx = np.mgrid[:h, :w]
    ca = (xx[a].mean(), yy[a].mean())
    cb = (xx[b].mean(), yy[b].mean())
    inter = float(np.logical_and(a, b).sum())
    if kind == "left_of":
        return ca[0] + p * w, cb[0]
    if kind == "right_of":
        return cb[0] + p * w, ca[0]
    if kind == "above":
        return ca[1] + p * h, cb[1]
    if kind == "below":
        return cb[1] + p * h, ca[1]
    if kind == "inside":  # against b with its holes filled
        return float(np.logical_and(a, filled(b)).sum()) / a.sum(), p
    if kind == "overlaps":
        den = min(a.sum(), b.sum()) if mode == "smaller" else np.logical_or(a, b).sum()
        return inter / den, p
    if kind == "larger_than":
        return float(a.sum()), p * float(b.sum())

    def box(m: np.ndarray) -> tuple[int, int, int, int]:
        xs, ys = np.flatnonzero(m.any(0)), np.flatnonzero(m.any(1))
        return xs[0], ys[0], xs[-1] + 1, ys[-1] + 1

    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = box(a), box(b)
    gap = np.hypot(max(0, bx0 - ax1, ax0 - bx1), max(0, by0 - ay1, ay0 - by1))
    diag = (np.hypot(ax1 - ax0, ay1 - ay0) + np.hypot(bx1 - bx0, by1 - by0)) / 2
    return p * diag, float(gap)  # near: gap <= p * diag


_KINDS = ("left_of", "right_of", "above", "below", "inside", "overlaps", "near", "larger_than")


@settings(max_examples=300, deadline=None)
@given(a=_masks(), b=_masks(), kind=st.sampled_from(_KINDS),
       p=st.floats(0.0, 1.0), mode=st.sampled_from(["iou", "smaller"]))  # fmt: skip
def test_relations_match_brute_force(
    a: np.ndarray, b: np.ndarray, kind: str, p: float, mode: str
) -> None:
    relations = pytest.importorskip("segindex.search.scenes.relations")
    from segindex.search.scenes import algebra

    value, bound = _brute(kind, a, b, p, mode)
    assume(abs(value - bound) > 1e-6)  # an exact tie depends on float rounding, not the rule
    directional = kind in ("left_of", "right_of", "above", "below")
    if kind in ("inside", "overlaps", "larger_than"):
        assume(p > 0)  # thresholds of 0 are refused by the algebra
    cls = {"left_of": algebra.LeftOf, "right_of": algebra.RightOf, "above": algebra.Above,
           "below": algebra.Below, "inside": algebra.Inside, "overlaps": algebra.Overlaps,
           "near": algebra.Near, "larger_than": algebra.LargerThan}[kind]  # fmt: skip
    params = {"left_of": "margin", "right_of": "margin", "above": "margin", "below": "margin",
              "inside": "min_fraction", "overlaps": "min_iou", "near": "max_gap",
              "larger_than": "ratio"}  # fmt: skip
    extra = {"mode": mode} if kind == "overlaps" else {}
    rel = cls("a", "b", **{params[kind]: p}, **extra)
    expected = value < bound if directional else value >= bound
    got = relations.holds(rel, _hit(1, a), _hit(2, b), relations.Geometry())
    assert got == expected, (kind, p, mode, value, bound)
