"""Property tests (hypothesis) for query parameter validation and filtered search: any input is
either a valid query or a QueryError (never another exception), and a valid filtered search
returns only matching regions, k of them whenever k match, and they are the brute-force best
(through the Index, and for any filter on every vector index kind)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segindex.errors import QueryError
from segindex.search import Filters, make_query
from segindex.store import filtered
from segindex.testing.fakes import PALETTE, draw_scene, register_fakes
from tests.store.test_filtered_search import (
    IDS,
    N,
    check_row,
    clustered,
    frozen,
    index,
    least_similar,
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.text(max_size=4), max_size=3),
)
labels = st.lists(st.sampled_from([*PALETTE, "image", "nonesuch"]), max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    labels=anything,
    exclude=anything,
    min_score=anything,
    min_area=anything,
    max_area=anything,
    prefix=anything,
    thing=anything,
)
def test_filters_validate_or_raise_query_error(
    labels, exclude, min_score, min_area, max_area, prefix, thing
) -> None:
    try:
        f = Filters(
            labels=labels,
            exclude_labels=exclude,
            min_score=min_score,
            min_area=min_area,
            max_area=max_area,
            path_prefix=prefix,
            thing=thing,
        )
    except QueryError:
        return
    assert f.min_area is None or f.min_area >= 0
    assert f.min_area is None or f.max_area is None or f.min_area <= f.max_area


@settings(max_examples=300, deadline=None)
@given(
    text=anything, k=anything, offset=anything, scope=anything, min_sim=anything, weight=anything
)
def test_query_validate_or_raise_query_error(text, k, offset, scope, min_sim, weight) -> None:
    try:
        q = make_query(
            text,
            k=k,
            offset=offset,
            scope=scope,
            min_similarity=min_sim,
            negative="blue" if isinstance(weight, float) else None,
            negative_weight=weight if isinstance(weight, float) else 0.5,
        )
    except QueryError:
        return
    assert isinstance(q.k, int) and q.k >= 1 and q.offset >= 0


@functools.lru_cache(maxsize=1)
def _index():  # type: ignore[no-untyped-def]
    """One fake-backed index of 12 random scenes, shared by the examples."""
    from segindex import Index

    register_fakes()
    root = Path(tempfile.mkdtemp(prefix="segindex-props-"))
    rng = np.random.default_rng(0)
    colours = [c for c in PALETTE if c != "gray"]
    for i in range(12):
        shapes = []
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = int(rng.integers(0, 90)), int(rng.integers(0, 60))
            w, h = int(rng.integers(8, 40)), int(rng.integers(8, 36))
            shapes.append((str(rng.choice(colours)), (x0, y0, x0 + w, y0 + h)))
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(draw_scene(shapes)).save(sub / f"{i}.png")
    idx = Index.create(root / "idx.segindex", segmenter="fake", embedder="fake")
    idx.ingest(root)
    return idx, root


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    labels=labels,
    exclude=labels,
    min_score=st.one_of(st.none(), st.floats(0, 1)),
    min_area=st.one_of(st.none(), st.integers(0, 3000)),
    span=st.one_of(st.none(), st.integers(0, 10000)),
    thing=st.one_of(st.none(), st.booleans()),
    sub=st.sampled_from([None, "a", "b"]),
    k=st.integers(1, 30),
    scope=st.sampled_from(["regions", "images", "all"]),
)
def test_filtered_search_returns_exactly_the_matching_regions(
    labels, exclude, min_score, min_area, span, thing, sub, k, scope
) -> None:
    idx, root = _index()
    max_area = None if span is None else (min_area or 0) + span
    prefix = None if sub is None else str(root / sub) + "/"
    f = Filters(
        labels=labels,
        exclude_labels=exclude,
        min_score=min_score,
        min_area=min_area,
        max_area=max_area,
        path_prefix=prefix,
        thing=thing,
    )
    hits = idx.search("red", k=k, scope=scope, filters=f)
    kinds = {"regions": {"segment"}, "images": {"image"}, "all": {"segment", "image"}}[scope]

    def ok(r) -> bool:  # type: ignore[no-untyped-def]
        return (
            r.kind in kinds
            and (not labels or r.label in labels)
            and r.label not in exclude
            and (min_score is None or r.score >= min_score)
            and (min_area is None or r.area >= min_area)
            and (max_area is None or r.area <= max_area)
            and (prefix is None or r.path.startswith(prefix))
            and (thing is None or bool(r.is_thing) == thing)
        )

    matching = [r for r in idx.store.iter_regions() if ok(r)]
    assert len(hits) == min(k, len(matching))
    ids = {r.id for r in matching}
    assert all(h.region_id in ids for h in hits)
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)
    # recall against brute force over the matching regions: the hits are the best k (ties
    # aside: equal similarities may come in either order)
    vec, _ = idx.embed_query(make_query("red", k=k, scope=scope, filters=f))
    stored = idx.store.region_vectors([r.id for r in matching])
    best = sorted((float(v @ vec) for v in stored.values()), reverse=True)[: len(hits)]
    np.testing.assert_allclose(sims, best, atol=1e-5)


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    kind=st.sampled_from(["flat", "hnsw", "ivfpq"]),
    adversarial=st.booleans(),
    share=st.floats(0.0005, 0.99),
    k=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    direct=st.booleans(),
)
def test_filtered_vector_search_finds_the_brute_force_best(
    kind, adversarial, share, k, seed, direct
) -> None:
    """Any filter (random, or the ids least similar to the query), any share, any k: the hits
    are allowed, k of them whenever k are allowed, best first, and they are the brute-force best
    (recall against exact search over the allowed ids; IVF-PQ against its own quantised
    scores). ``direct=False`` sends even small sets down the ANN path."""
    vi = index(kind)
    queries = clustered(4, seed + 10)
    m = max(1, int(share * N))
    recalls = []
    with pytest.MonkeyPatch.context() as mp:
        if not direct:
            mp.setattr(filtered, "EXACT_MIN_IDS", 0)
            mp.setattr(filtered, "EXACT_MAX_IDS", 0)
        for q in queries:
            if adversarial:
                allowed = least_similar(q, m / N)
            else:
                allowed = frozen(np.random.default_rng(seed).choice(IDS, m, replace=False))
            sims, got = vi.search(q[None], k, allowed_ids=allowed)
            recalls.append(check_row(kind, q, sims[0], got[0], allowed))
    assert np.mean(recalls) >= 0.95, recalls
