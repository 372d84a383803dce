"""Query features of the Python API with exact expectations from the fake backends: filters
inside the search, negative and weighted terms, min similarity, grouping, pages, similar-to-region
and region-of-a-new-image queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex import Index
from segindex.embed.base import l2_normalise
from segindex.errors import ImageDecodeError, NotFoundError, QueryError
from segindex.regions import Regions
from segindex.search import Filters, RegionPrompt, Term, make_query
from segindex.testing.fakes import FakeSegmenter, draw_scene, quantise
from tests.conftest import scene_truth


@pytest.fixture
def idx(make_index, photos: Path) -> Index:
    index = make_index()
    index.ingest(photos)
    return index


def name(photos: Path, hit) -> str:  # type: ignore[no-untyped-def]
    path = hit.image_path if hasattr(hit, "image_path") else hit.path
    return Path(path).relative_to(photos).as_posix()


def ranked_truth(idx: Index, query: np.ndarray, keep) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    """Brute force over SQL: (region id, cosine) of rows passing ``keep``, by (-cosine, id)."""
    rows = {r.id: r for r in idx.store.iter_regions()}
    out = []
    for ids, vecs in idx.store.iter_vectors():
        for i, v in zip(ids, vecs, strict=True):
            if keep(rows[int(i)]):
                out.append((int(i), float(v @ query)))
    return sorted(out, key=lambda p: (-p[1], p[0]))


SEGMENT = {  # (scene, label) of every segment region, by area
    ("a.png", "red"): 1200,
    ("a.png", "blue"): 2400,
    ("a.png", "gray"): 96 * 128 - 3600,
    ("b.png", "green"): 2200,
    ("b.png", "red"): 1800,
    ("b.png", "white"): 96 * 128 - 4000,
    ("sub/c.png", "yellow"): 2800,
    ("sub/c.png", "gray"): 96 * 128 - 2800,
    ("sub/deeper/d.bmp", "blue"): 1600,
    ("sub/deeper/d.bmp", "orange"): 3300,
    ("sub/deeper/d.bmp", "gray"): 96 * 128 - 4900,
}
STUFF = {"gray", "white"}


@pytest.mark.parametrize(
    "filters,expected",
    [
        (Filters(labels=("blue",)), {("a.png", "blue"), ("sub/deeper/d.bmp", "blue")}),
        (Filters(exclude_labels=("gray", "white")), {k for k in SEGMENT if k[1] not in STUFF}),
        (Filters(min_score=0.8), {k for k in SEGMENT if k[1] not in STUFF}),
        (Filters(thing=False), {k for k in SEGMENT if k[1] in STUFF}),
        (Filters(thing=True, labels=("red", "gray")), {("a.png", "red"), ("b.png", "red")}),
        (
            Filters(min_area=2400, max_area=3300),
            {k for k, a in SEGMENT.items() if 2400 <= a <= 3300},
        ),
        (Filters(path_prefix="{photos}/sub/"), {k for k in SEGMENT if k[0].startswith("sub/")}),
        (Filters(path_prefix="{photos}/%"), set()),  # literal prefix: % is no wildcard
        (Filters(path_prefix="{photos}/_.png"), set()),
        (Filters(labels=("no such label",)), set()),
    ],
)
@pytest.mark.parametrize("query", ["red", "gray"])
def test_filters_inside_the_search_return_k_whenever_k_match(idx, photos, filters, expected, query):
    if filters.path_prefix:
        filters = Filters(path_prefix=filters.path_prefix.format(photos=photos))
    hits = idx.search(query, k=100, filters=filters)
    assert {(name(photos, h), h.label) for h in hits} == expected
    qvec = idx.embedder.embed_texts([query])[0]
    allowed = {r.id for r in idx.store.iter_regions() if (name(photos, r), r.label) in expected}
    truth = ranked_truth(idx, qvec, lambda r: r.id in allowed)
    for k in range(1, len(expected) + 1):  # a filtered query gives k hits whenever k match
        page = idx.search(query, k=k, filters=filters)
        assert [h.region_id for h in page] == [i for i, _ in truth[:k]]
        np.testing.assert_allclose(
            [h.similarity for h in page], [s for _, s in truth[:k]], atol=1e-6
        )


def test_filters_apply_with_scope(idx, photos) -> None:
    whole = idx.search(
        "red", k=10, scope="images", filters=Filters(path_prefix=str(photos / "sub"))
    )
    assert sorted(name(photos, h) for h in whole) == ["sub/c.png", "sub/deeper/d.bmp"]
    assert all(h.kind == "image" for h in whole)
    both = idx.search("red", k=100, scope="all", filters=Filters(thing=False))
    assert {h.label for h in both} == {"gray", "white", "image"}


def test_negative_text_lowers_the_regions_it_names(idx) -> None:
    plain = {h.region_id: h for h in idx.search("red", k=100)}
    neg = idx.search("red", negative="orange", k=100)
    orange = next(h.region_id for h in neg if h.label == "orange")
    assert neg[-1].region_id == orange  # from third place to last
    assert [h.label for h in idx.search("red", k=3)][2] == "orange"
    assert neg[0].label == neg[1].label == "red"
    assert {h.region_id: h for h in neg}[orange].similarity < plain[orange].similarity - 0.4
    # exactly the normalised weighted sum
    red, org = idx.embedder.embed_texts(["red", "orange"])
    expected = l2_normalise((red - 0.5 * org)[None])[0]
    truth = ranked_truth(idx, expected, lambda r: r.kind == "segment")
    assert [h.region_id for h in neg] == [i for i, _ in truth]
    np.testing.assert_allclose([h.similarity for h in neg], [s for _, s in truth], atol=1e-6)
    stronger = idx.search("red", negative=["orange"], negative_weight=1.0, k=100)
    assert {h.region_id: h for h in stronger}[orange].similarity < neg[-1].similarity


def test_weighted_terms(idx, photos) -> None:
    hits = idx.search(terms=[("red", 1.0), ("blue", 1.0)], k=4)
    assert sorted(h.label for h in hits) == ["blue", "blue", "red", "red"]
    assert hits[0].similarity == pytest.approx(hits[3].similarity, abs=1e-6)
    tilted = idx.search(terms=[Term(text="red", weight=1.0), Term(text="blue", weight=0.3)], k=4)
    assert [h.label for h in tilted] == ["red", "red", "blue", "blue"]
    # an indexed region as a term, mixed with text
    red_a = next(h.region_id for h in hits if h.label == "red" and name(photos, h) == "a.png")
    mixed = idx.search(terms=[Term(region_id=red_a), Term(text="blue", weight=1.0)], k=3)
    assert red_a not in {h.region_id for h in mixed}  # the query region itself is left out
    assert sorted(h.label for h in mixed) == ["blue", "blue", "red"]
    with pytest.raises(QueryError, match="cancel out"):
        idx.search(terms=[("red", 1.0), ("red", -1.0)])
    with pytest.raises(QueryError, match="positive term"):
        idx.search(terms=[("red", -1.0)])


def test_min_similarity(idx) -> None:
    hits = idx.search("red", k=100, min_similarity=0.01)
    assert [h.label for h in hits] == ["red", "red", "orange", "yellow", "white"]
    assert all(h.similarity >= 0.01 for h in hits)
    assert idx.search("red", k=100, min_similarity=0.99, offset=1)[0].label == "red"
    assert idx.search("red", k=100, min_similarity=0.99, offset=2) == []


def test_group_by_image_best_region_per_image_with_counts(idx, photos) -> None:
    hits = idx.search("blue", k=10, group_by_image=True)
    assert [name(photos, h) for h in hits[:2]] == ["a.png", "sub/deeper/d.bmp"]
    assert [h.label for h in hits[:2]] == ["blue", "blue"]
    assert len({h.image_id for h in hits}) == len(hits) == 4
    counts = {name(photos, h): h.image_matches for h in hits}
    assert counts == {"a.png": 3, "b.png": 3, "sub/c.png": 2, "sub/deeper/d.bmp": 3}
    # counts follow the filters and the threshold
    thr = idx.search("red", k=10, group_by_image=True, min_similarity=0.005)
    assert {name(photos, h): h.image_matches for h in thr} == {
        "a.png": 2,  # red, gray (0.0058)
        "b.png": 2,  # red, white
        "sub/c.png": 2,  # yellow, gray
        "sub/deeper/d.bmp": 2,  # orange, gray
    }
    things = idx.search("red", k=10, group_by_image=True, filters=Filters(thing=True))
    assert {name(photos, h): h.image_matches for h in things} == {
        "a.png": 2,
        "b.png": 2,
        "sub/c.png": 1,
        "sub/deeper/d.bmp": 2,
    }
    assert hits[0].to_dict()["image_matches"] == 3


@pytest.mark.parametrize("group", [False, True])
@pytest.mark.parametrize("scope", ["regions", "all"])
@pytest.mark.parametrize("page_size", [1, 2, 3, 5])
def test_pages_concatenate_to_the_full_list(idx, group, scope, page_size) -> None:
    full = idx.search("gray", k=100, scope=scope, group_by_image=group)
    got = []
    offset: int | None = 0
    while offset is not None:
        page = idx.query(
            make_query("gray", k=page_size, offset=offset, scope=scope, group_by_image=group)
        )
        assert len(page.hits) <= page_size
        got.extend(page.hits)
        offset = page.next_offset
    assert [(h.region_id, h.image_matches) for h in got] == [
        (h.region_id, h.image_matches) for h in full
    ]
    assert len(full) == (4 if group else 11 if scope == "regions" else 15)
    assert idx.search("gray", k=5, offset=len(full), scope=scope, group_by_image=group) == []


def test_similar_to_an_indexed_region(idx, photos) -> None:
    red_a = next(h for h in idx.search("red", k=2) if name(photos, h) == "a.png")
    hits = idx.search(similar_to=red_a.region_id, k=3)
    assert red_a.region_id not in {h.region_id for h in hits}  # excluded by default
    assert (name(photos, hits[0]), hits[0].label) == ("b.png", "red")
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    itself = idx.search(similar_to=red_a.region_id, k=2, exclude_query_regions=False)
    assert [h.region_id for h in itself] == sorted(h.region_id for h in idx.search("red", k=2))
    filtered = idx.search(similar_to=red_a.region_id, k=5, filters=Filters(labels=("red",)))
    assert [name(photos, h) for h in filtered] == ["b.png"]
    with pytest.raises(NotFoundError, match="no region with id 999"):
        idx.search(similar_to=999)


def test_region_of_a_new_image_by_box_gives_the_colour_inside_the_box(idx, photos) -> None:
    image = draw_scene([("green", (10, 10, 50, 50)), ("yellow", (60, 10, 100, 50))])
    for box, colour, scene in [
        ((10, 10, 50, 50), "green", "b.png"),
        ((60, 10, 100, 50), "yellow", "sub/c.png"),
    ]:
        page = idx.query(make_query(region=RegionPrompt(image, box=box), k=1))
        hit = page.hits[0]
        assert (hit.label, name(photos, hit)) == (colour, scene)
        assert hit.similarity == pytest.approx(1.0, abs=1e-5)
        (found,) = page.query_regions
        assert found.method == "box"  # the fake segmenter is not promptable
        assert found.box.tolist() == list(box)
        assert found.mask.sum() == 40 * 40
    # fractional boxes round outwards, and a box partly outside the image is clipped
    clipped = idx.query(make_query(region=RegionPrompt(image, box=(59.5, -20, 100.2, 50)), k=1))
    assert clipped.query_regions[0].box.tolist() == [59, 0, 101, 50]
    with pytest.raises(QueryError, match="outside"):
        idx.search(region=RegionPrompt(image, box=(500, 500, 600, 600)))


def test_region_by_points_and_by_mask(idx, photos) -> None:
    image = draw_scene([("green", (10, 10, 50, 50)), ("yellow", (60, 10, 100, 50))])
    page = idx.query(make_query(region=RegionPrompt(image, points=[[20, 20]]), k=1))
    assert page.hits[0].label == "green" and page.query_regions[0].method == "segment"
    assert page.query_regions[0].mask.sum() == 40 * 40
    neg = RegionPrompt(image, points=[[70, 20], [20, 20]], point_labels=[1, 0])
    assert idx.search(region=neg, k=1)[0].label == "yellow"
    mask = np.zeros(image.shape[:2], bool)
    mask[12:30, 65:90] = True
    page = idx.query(make_query(region=RegionPrompt(image, mask=mask), k=1))
    assert page.hits[0].label == "yellow" and page.query_regions[0].method == "mask"
    for bad, match in [
        ({}, "box, points or a mask"),
        ({"box": (5, 5, 1, 1)}, "x1 > x0"),
        ({"box": (1, 2, 3)}, "4 finite"),
        ({"points": [[1, 2]], "point_labels": [0]}, "foreground"),
        ({"points": [[1, 2]], "point_labels": [7]}, "point_labels"),
        ({"mask": np.zeros((4, 4), bool)}, "empty"),
        ({"mask": np.ones((4, 4), np.uint8)}, "HxW bool"),
    ]:
        with pytest.raises(QueryError, match=match):
            RegionPrompt(image, **bad)
    with pytest.raises(QueryError, match="like the image"):
        idx.search(region=RegionPrompt(image, mask=np.ones((4, 4), bool)))


class PromptableFake(FakeSegmenter):
    """Promptable: the mask is the palette colour most present inside the box."""

    promptable = True
    name = "fake_prompt"

    def prompt(self, image, *, boxes=None, points=None, point_labels=None) -> Regions:  # type: ignore[no-untyped-def]
        q = quantise(image)
        x0, y0, x1, y1 = (int(v) for v in boxes[0])
        colour = np.bincount(q[y0:y1, x0:x1].ravel()).argmax()
        return Regions.from_masks((q == colour)[None])


def test_promptable_segmenter_turns_the_box_into_a_mask(make_index, photos) -> None:
    from segindex.segment import SEGMENTERS

    SEGMENTERS.register("fake_prompt", PromptableFake, replace=True)
    try:
        idx = make_index("prompt.segindex", segmenter="fake_prompt")
        idx.ingest(photos)
        image = draw_scene([("green", (10, 10, 50, 50))])
        loose = RegionPrompt(image, box=(5, 5, 52, 52))  # green plus a gray border
        page = idx.query(make_query(region=loose, k=1))
        assert page.query_regions[0].method == "prompt"
        assert page.query_regions[0].box.tolist() == [10, 10, 50, 50]
        assert page.hits[0].label == "green"
        assert page.hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    finally:
        SEGMENTERS.unregister("fake_prompt")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"text": "red", "offset": -1}, "offset"),
        ({"text": "red", "min_similarity": 2}, r"\[-1, 1\]"),
        ({"text": "red", "similar_to": 3}, "exactly one"),
        ({"terms": [("red", 0)]}, "weight"),
        ({"terms": ["red"]}, "pairs"),
        ({"text": "red", "negative": [""]}, "negative"),
    ],
)
def test_bad_query_parameters(idx, kwargs, match) -> None:
    with pytest.raises(QueryError, match=match):
        idx.search(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"min_score": "high"}, "number"),
        ({"min_area": 1.5}, "integer"),
        ({"max_area": -1}, ">= 0"),
        ({"labels": [" "]}, "non-empty"),
        ({"thing": "yes"}, "true, false"),
        ({"min_area": 10, "max_area": 5}, "larger"),
    ],
)
def test_bad_filters(kwargs, match) -> None:
    with pytest.raises(QueryError, match=match):
        Filters(**kwargs)


def test_add_image_bytes_and_delete(idx, photos, tmp_path) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(draw_scene([("cyan", (0, 0, 30, 30))])).save(buf, "PNG")
    image_id = idx.add_image_bytes(buf.getvalue())
    assert idx.add_image_bytes(buf.getvalue()) == image_id  # same bytes, same image
    file = idx.image_file(image_id)
    assert file.parent == idx.path / "uploads" and file.suffix == ".png"
    hit = idx.search("cyan", k=1)[0]
    assert hit.image_id == image_id and hit.label == "cyan"
    row, regions = idx.image(image_id)
    assert row.id == image_id and sorted(r.label for r in regions) == ["cyan", "gray", "image"]
    assert idx.region(hit.region_id).label == "cyan"
    with pytest.raises(ImageDecodeError):
        idx.add_image_bytes(b"not an image")
    # delete: rows, vectors and the kept upload go
    ntotal = idx.vectors.ntotal
    assert idx.delete_images([image_id]) == 3
    assert idx.vectors.ntotal == ntotal - 3
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert not file.exists()
    assert all(h.label != "cyan" for h in idx.search("cyan", k=100))
    for fn in (idx.image, idx.image_file):
        with pytest.raises(NotFoundError):
            fn(image_id)
    with pytest.raises(NotFoundError):
        idx.region(hit.region_id)
    # a user's own files are never deleted
    a = next(r for r in idx.store.indexed_images() if r.path.endswith("a.png"))
    idx.delete_images([a.id])
    assert Path(a.path).exists()


def test_searches_never_see_half_an_image_while_writing(idx, photos) -> None:
    """Searches run in threads while images are replaced, added and deleted; every image a
    search returns comes with all its regions (k exceeds the index)."""
    import threading

    from PIL import Image

    expected = {
        n: len(scene_truth(n)) + 1 for n in ["a.png", "b.png", "sub/c.png", "sub/deeper/d.bmp"]
    }
    extra = photos / "extra.png"
    stop = threading.Event()
    problems: list[str] = []
    searches = 0

    def reader() -> None:
        nonlocal searches
        while not stop.is_set():
            hits = idx.search("red", k=1000, scope="all")
            by_image: dict[str, int] = {}
            for h in hits:
                by_image[h.image_path] = by_image.get(h.image_path, 0) + 1
            for path, n in by_image.items():
                rel = Path(path).relative_to(photos).as_posix()
                want = {3, 4} if rel in ("a.png", "extra.png") else {expected[rel]}
                if n not in want:
                    problems.append(f"{rel}: {n} regions")
            searches += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(12):
            # a.png alternates between 2 and 1 coloured shapes (4 or 3 regions with the whole)
            shapes = [("red", (10, 10, 50, 40))] + ([("blue", (60, 50, 120, 90))] if i % 2 else [])
            Image.fromarray(draw_scene(shapes)).save(photos / "a.png")
            Image.fromarray(draw_scene(shapes)).save(extra)
            idx.ingest([photos / "a.png", extra])
            gone = idx.store.image_id_for_path(str(extra))
            idx.delete_images([gone])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert searches > 0 and not problems, problems[:5]
    assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
