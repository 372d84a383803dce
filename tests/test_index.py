"""The core pipeline end to end with deterministic fakes: exact expectations."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex import Index
from segindex.errors import IndexExistsError, IndexMismatchError, IndexNotFoundError, QueryError
from segindex.testing.fakes import draw_scene
from tests.conftest import SCENES, scene_truth


def brute_force(idx: Index, query: np.ndarray, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
    """All stored vectors' cosine to ``query``, sorted descending: (ids, sims)."""
    kinds = {r.id: r.kind for r in idx.store.iter_regions()}
    ids, vecs = [], []
    for i, v in idx.store.iter_vectors():
        ids.append(i)
        vecs.append(v)
    all_ids, all_vecs = np.concatenate(ids), np.concatenate(vecs)
    keep = np.array([kind is None or kinds[int(i)] == kind for i in all_ids])
    all_ids, all_vecs = all_ids[keep], all_vecs[keep]
    sims = all_vecs @ query
    order = np.argsort(-sims, kind="stable")
    return all_ids[order], sims[order]


def test_ingest_indexes_every_region_exactly(make_index, photos: Path) -> None:
    idx = make_index()
    report = idx.ingest([photos])
    assert (report.seen, report.indexed, report.skipped, report.failed) == (4, 4, 0, 0)
    expected_regions = sum(len(scene_truth(n)) for n in SCENES)
    assert report.regions == expected_regions
    assert set(report.stage_seconds) >= {"decode", "segment", "crop", "embed", "write"}
    counts = idx.store.counts()
    assert counts == {
        "images_indexed": 4,
        "images_failed": 0,
        "regions": expected_regions,
        "whole_image_regions": 4,
    }
    # every region's mask, box and area are exactly the drawn truth
    by_path = {}
    for row in idx.store.iter_regions():
        by_path.setdefault(Path(row.path).relative_to(photos).as_posix(), []).append(row)
    for name in SCENES:
        truth = scene_truth(name)
        rows = [r for r in by_path[name] if r.kind == "segment"]
        assert sorted(r.label for r in rows) == sorted(truth)
        for r in rows:
            m = truth[r.label]
            ys, xs = np.nonzero(m)
            assert (r.x0, r.y0, r.x1, r.y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert r.area == m.sum()
    # FAISS holds exactly the SQL ids
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())


def test_text_search_finds_the_right_regions_with_masks(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    hits = idx.search("red", k=2)
    assert [h.label for h in hits] == ["red", "red"]
    assert {Path(h.image_path).name for h in hits} == {"a.png", "b.png"}
    for h in hits:
        truth = scene_truth(Path(h.image_path).relative_to(photos).as_posix())["red"]
        assert h.mask().dtype == bool and np.array_equal(h.mask(), truth)
        assert h.similarity == pytest.approx(1.0, abs=1e-5)
        assert h.kind == "segment" and h.is_thing
        assert h.rle["size"] == list(truth.shape)
    assert hits[0].similarity >= hits[1].similarity


@pytest.mark.parametrize("scope,kind", [("regions", "segment"), ("images", "image"), ("all", None)])
@pytest.mark.parametrize("query", ["red", "blue", "an umbrella", "orange cat"])
def test_search_equals_brute_force_cosine(make_index, photos: Path, scope, kind, query) -> None:
    idx = make_index()
    idx.ingest(photos)
    k = 5
    hits = idx.search(query, k=k, scope=scope)
    qvec = idx.embedder.embed_texts([query])[0]
    ids, sims = brute_force(idx, qvec, kind)
    assert len(hits) == min(k, len(ids))
    np.testing.assert_allclose([h.similarity for h in hits], sims[:k], rtol=1e-5, atol=1e-6)
    # ids equal up to ties in similarity
    for h, i, s in zip(hits, ids[:k], sims[:k], strict=True):
        assert h.region_id == i or abs(h.similarity - s) < 1e-6
    assert all(kind is None or h.kind == kind for h in hits)


def test_image_search(make_index, photos: Path, tmp_path: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    q = draw_scene([], background="yellow")  # an all-yellow query image
    for query in (q, Image.fromarray(q), _save(tmp_path / "q.png", q)):
        hits = idx.search(image=query, k=1)
        assert hits[0].label == "yellow"
        assert Path(hits[0].image_path).name == "c.png"
    whole = idx.search(
        image=draw_scene(SCENES["b.png"][0], background="white"), scope="images", k=1
    )
    assert Path(whole[0].image_path).name == "b.png" and whole[0].kind == "image"


def _save(p: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr).save(p)
    return p


def test_reingest_is_a_noop(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    ids_before = idx.store.region_ids()
    calls = idx.segmenter.calls
    report = idx.ingest([photos, photos / "a.png"])  # same files, one named twice
    assert (report.seen, report.indexed, report.skipped) == (4, 0, 4)
    assert idx.segmenter.calls == calls  # no model ran
    assert np.array_equal(idx.store.region_ids(), ids_before)


def test_changed_file_replaces_its_regions(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    old_ids = {h.region_id for h in idx.search("blue", k=50) if h.image_path.endswith("a.png")}
    Image.fromarray(draw_scene([("magenta", (0, 0, 30, 30))])).save(photos / "a.png")
    report = idx.ingest(photos)
    assert (report.indexed, report.skipped) == (1, 3)
    a_labels = sorted(r.label for r in idx.store.iter_regions() if r.path.endswith("a.png"))
    assert a_labels == ["gray", "image", "magenta"]
    assert not old_ids & set(idx.store.region_ids().tolist())
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert idx.search("magenta", k=1)[0].image_path.endswith("a.png")


def test_corrupt_image_recorded_and_run_goes_on(make_index, photos: Path) -> None:
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (photos / "empty.png").write_bytes(b"")
    idx = make_index()
    report = idx.ingest(photos)
    assert report.indexed == 4 and report.failed == 2
    failed = dict(idx.store.failed_images())
    assert set(Path(p).name for p in failed) == {"broken.jpg", "empty.png"}
    assert all("cannot decode" in r or "empty" in r for r in failed.values())
    # unchanged failures are not retried unless asked
    assert idx.ingest(photos).failed == 0
    assert idx.ingest(photos, retry_failed=True).failed == 2
    # fixing the file indexes it
    Image.fromarray(draw_scene([("cyan", (0, 0, 20, 20))])).save(photos / "broken.jpg", "PNG")
    assert idx.ingest(photos).indexed == 1
    assert idx.search("cyan", k=1)[0].image_path.endswith("broken.jpg")


def test_sources_files_folders_globs(make_index, photos: Path) -> None:
    idx = make_index()
    report = idx.ingest([photos / "a.png", str(photos / "**" / "*.bmp")])
    assert report.indexed == 2
    assert {Path(r.path).name for r in idx.store.indexed_images()} == {"a.png", "d.bmp"}


def test_reopen_and_embedder_mismatch_refused(make_index, photos: Path, tmp_path: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    expected = [h.region_id for h in idx.search("green", k=3)]
    idx.close()
    with Index.open(tmp_path / "idx.segindex") as again:
        assert [h.region_id for h in again.search("green", k=3)] == expected
    with pytest.raises(IndexMismatchError, match="built with embedder 'fake'"):
        Index.open(tmp_path / "idx.segindex", embedder="open_clip")
    with pytest.raises(IndexMismatchError, match="variant"):
        Index.open(tmp_path / "idx.segindex", embedder="fake", embedder_options={"variant": "v2"})
    with pytest.raises(IndexNotFoundError):
        Index.open(tmp_path / "nowhere")
    with pytest.raises(IndexExistsError):
        Index.create(tmp_path / "idx.segindex", segmenter="fake", embedder="fake")


def test_missing_or_stale_vector_file_is_rebuilt_from_sql(make_index, photos: Path, tmp_path):
    idx = make_index()
    idx.ingest(photos)
    expected = [(h.region_id, round(h.similarity, 5)) for h in idx.search("blue", k=4)]
    idx.close()
    path = tmp_path / "idx.segindex"
    (path / "vectors.faiss").unlink()
    with Index.open(path) as again:
        assert [
            (h.region_id, round(h.similarity, 5)) for h in again.search("blue", k=4)
        ] == expected
    # a stale file (from a smaller index) is detected and rebuilt too
    small = make_index("small.segindex")
    small.ingest(photos / "a.png")
    small.close()
    shutil.copy(tmp_path / "small.segindex" / "vectors.faiss", path / "vectors.faiss")
    with Index.open(path) as again:
        assert np.array_equal(again.vectors.ids(), again.store.region_ids())
        assert [
            (h.region_id, round(h.similarity, 5)) for h in again.search("blue", k=4)
        ] == expected


def test_export_coco_round_trips_through_pycocotools(make_index, photos: Path, tmp_path) -> None:
    import json

    from pycocotools.coco import COCO

    idx = make_index()
    idx.ingest(photos)
    data = idx.export_coco()
    out = tmp_path / "coco.json"
    out.write_text(json.dumps(data))
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == idx.store.counts()["regions"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        img = coco.loadImgs(ann["image_id"])[0]
        name = Path(img["file_name"]).relative_to(photos).as_posix()
        label = coco.loadCats(ann["category_id"])[0]["name"]
        assert np.array_equal(coco.annToMask(ann).astype(bool), scene_truth(name)[label])
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and ann["area"] == scene_truth(name)[label].sum()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "exactly one"),
        ({"text": "red", "image": np.zeros((4, 4, 3), np.uint8)}, "exactly one"),
        ({"text": "   "}, "non-empty"),
        ({"text": "red", "k": 0}, "positive"),
        ({"text": "red", "k": -3}, "positive"),
        ({"text": "red", "scope": "galaxies"}, "scope"),
        ({"image": np.zeros((4, 4), np.uint8)}, "HxWx3"),
    ],
)
def test_bad_queries_are_clear_errors(make_index, photos: Path, kwargs, match) -> None:
    idx = make_index()
    idx.ingest(photos / "a.png")
    with pytest.raises(QueryError, match=match):
        idx.search(**kwargs)


def test_k_larger_than_index_and_empty_index(make_index, photos: Path) -> None:
    idx = make_index()
    assert idx.search("red", k=5) == []
    idx.ingest(photos / "a.png")
    assert len(idx.search("red", k=1000)) == 3  # red, blue, gray
    assert len(idx.search("red", k=1000, scope="all")) == 4


def test_min_area_and_whole_image_policy(make_index, photos: Path) -> None:
    from segindex.config import CropPolicy

    idx = make_index(crop=CropPolicy(min_area_px=1300, whole_image=False))
    idx.ingest(photos / "a.png")  # red is 40x30=1200 px, blue 60x40=2400 px
    labels = sorted(r.label for r in idx.store.iter_regions())
    assert labels == ["blue", "gray"]


def test_moved_file_is_relinked_without_running_models(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    before = {h.region_id for h in idx.search("yellow", k=1)}
    calls = idx.segmenter.calls
    (photos / "sub" / "c.png").rename(photos / "moved_c.png")
    report = idx.ingest(photos)
    assert (report.indexed, report.relinked, report.skipped) == (0, 1, 3)
    assert idx.segmenter.calls == calls  # no model ran
    hit = idx.search("yellow", k=1)[0]
    assert hit.region_id in before and Path(hit.image_path).name == "moved_c.png"
    assert {Path(r.path).name for r in idx.store.indexed_images()} == {
        "a.png",
        "b.png",
        "moved_c.png",
        "d.bmp",
    }
    # a copy (the original still exists) is indexed as an image of its own
    import shutil

    shutil.copy(photos / "a.png", photos / "copy_of_a.png")
    report = idx.ingest(photos)
    assert (report.indexed, report.relinked) == (1, 0)


def test_delete_images_removes_rows_and_vectors(make_index, photos: Path) -> None:
    idx = make_index()
    idx.ingest(photos)
    victim = next(r for r in idx.store.indexed_images() if r.path.endswith("a.png"))
    removed = idx.delete_images([victim.id])
    assert removed == 4  # red, blue, gray, whole image
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert all(not h.image_path.endswith("a.png") for h in idx.search("blue", k=20, scope="all"))
    assert idx.check().clean
