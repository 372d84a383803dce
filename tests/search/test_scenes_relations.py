"""The spatial relations against brute-force definitions on random masks (hypothesis): the box
shortcuts must never change an answer the masks give."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from segindex import rle as rle_codec
from segindex.masks import boxes_from_masks
from segindex.search.hits import Hit
from segindex.search.scenes import Above, Below, Inside, LargerThan, LeftOf, Near, Overlaps, RightOf
from segindex.search.scenes.relations import Geometry, holds

H, W = 12, 16
_ids = iter(range(1, 10**9))


def region(mask: np.ndarray) -> Hit:
    box = boxes_from_masks(mask[None])[0]
    return Hit(
        region_id=next(_ids),
        image_id=1,
        image_path="x.png",
        kind="segment",
        label="x",
        label_id=0,
        score=1.0,
        is_thing=True,
        bbox=tuple(float(v) for v in box),  # type: ignore[arg-type]
        area=int(mask.sum()),
        rle=rle_codec.encode(mask),
        similarity=1.0,
    )


def centroid(m: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(m)
    return xs.mean() + 0.5, ys.mean() + 0.5


def filled(m: np.ndarray) -> np.ndarray:
    """``m`` with its holes filled: every pixel that no 4-connected path of pixels outside ``m``
    joins to the border (a flood fill from the border)."""
    h, w = m.shape
    outside = np.zeros_like(m)
    todo = [(y, x) for y in range(h) for x in (0, w - 1)] + [
        (y, x) for y in (0, h - 1) for x in range(w)
    ]
    while todo:
        y, x = todo.pop()
        if 0 <= y < h and 0 <= x < w and not m[y, x] and not outside[y, x]:
            outside[y, x] = True
            todo += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    return ~outside


def brute(rel, a: np.ndarray, b: np.ndarray) -> bool:  # type: ignore[no-untyped-def]
    (ax, ay), (bx, by) = centroid(a), centroid(b)
    inter = int((a & b).sum())
    if isinstance(rel, LeftOf):
        return ax + rel.margin * W < bx
    if isinstance(rel, RightOf):
        return bx + rel.margin * W < ax
    if isinstance(rel, Above):
        return ay + rel.margin * H < by
    if isinstance(rel, Below):
        return by + rel.margin * H < ay
    if isinstance(rel, Inside):  # against b with its holes filled
        return int((a & filled(b)).sum()) / a.sum() >= rel.min_fraction
    if isinstance(rel, Overlaps):
        if rel.mode == "smaller":
            return inter / min(a.sum(), b.sum()) >= rel.min_iou
        return inter / (a | b).sum() >= rel.min_iou
    if isinstance(rel, Near):  # gap between the pixel boxes, over the mean box diagonal
        ya, xa = np.nonzero(a)
        yb, xb = np.nonzero(b)
        boxes = [(x.min(), y.min(), x.max() + 1, y.max() + 1) for x, y in ((xa, ya), (xb, yb))]
        (a0, a1, a2, a3), (b0, b1, b2, b3) = boxes
        dx, dy = max(0, b0 - a2, a0 - b2), max(0, b1 - a3, a1 - b3)
        diag = (math.hypot(a2 - a0, a3 - a1) + math.hypot(b2 - b0, b3 - b1)) / 2
        return math.hypot(dx, dy) <= rel.max_gap * diag
    if isinstance(rel, LargerThan):
        return a.sum() > rel.ratio * b.sum()
    raise AssertionError(rel)


def blob() -> st.SearchStrategy[np.ndarray]:
    """A random mask, dense inside a random box (so boxes vary and often overlap)."""

    @st.composite
    def make(draw):  # type: ignore[no-untyped-def]
        x0 = draw(st.integers(0, W - 1))
        y0 = draw(st.integers(0, H - 1))
        x1 = draw(st.integers(x0 + 1, W))
        y1 = draw(st.integers(y0 + 1, H))
        inner = draw(arrays(np.bool_, (y1 - y0, x1 - x0)))
        m = np.zeros((H, W), bool)
        m[y0:y1, x0:x1] = inner
        if not m.any():
            m[y0, x0] = True
        return m

    return make()


fractions = st.floats(0.01, 1.0)
relations = st.one_of(
    st.builds(LeftOf, st.just("a"), st.just("b"), margin=st.floats(0, 0.5)),
    st.builds(RightOf, st.just("a"), st.just("b"), margin=st.floats(0, 0.5)),
    st.builds(Above, st.just("a"), st.just("b"), margin=st.floats(0, 0.5)),
    st.builds(Below, st.just("a"), st.just("b"), margin=st.floats(0, 0.5)),
    st.builds(Inside, st.just("a"), st.just("b"), min_fraction=fractions),
    st.builds(
        Overlaps,
        st.just("a"),
        st.just("b"),
        min_iou=fractions,
        mode=st.sampled_from(["iou", "smaller"]),
    ),
    st.builds(Near, st.just("a"), st.just("b"), max_gap=st.floats(0, 2)),
    st.builds(LargerThan, st.just("a"), st.just("b"), ratio=st.floats(0.1, 3)),
)


@settings(max_examples=400, deadline=None)
@given(relations, blob(), blob())
def test_relations_match_brute_force(rel, a, b):
    assert holds(rel, region(a), region(b), Geometry()) == brute(rel, a, b)


def test_boxes_decide_without_masks():
    geo = Geometry()
    left = np.zeros((H, W), bool)
    left[2:5, 1:4] = True
    right = np.zeros((H, W), bool)
    right[2:5, 10:14] = True
    a, b = region(left), region(right)
    assert holds(LeftOf("a", "b"), a, b, geo) and not holds(RightOf("a", "b"), a, b, geo)
    assert not holds(Inside("a", "b"), a, b, geo) and not holds(Overlaps("a", "b"), a, b, geo)
    assert geo.decoded == 0
    assert not holds(Above("a", "b"), a, b, geo)  # same rows: the centroids decide
    assert geo.decoded == 2


def test_inside_a_panoptic_hole():
    """Panoptic masks are disjoint: a cup on a table is a hole in the table's mask. It is inside
    the table when the table surrounds it, not when it sits on the table's edge."""
    table = np.zeros((H, W), bool)
    table[2:12, 2:14] = True
    cup = np.zeros((H, W), bool)
    cup[5:8, 6:9] = True
    geo = Geometry()
    assert holds(Inside("cup", "table"), region(cup), region(table & ~cup), geo)
    assert not holds(Overlaps("cup", "table"), region(cup), region(table & ~cup), geo)
    edge = np.zeros((H, W), bool)
    edge[5:8, 12:16] = True  # half on the table, half beyond its right side
    assert not holds(Inside("cup", "table"), region(edge), region(table & ~edge), Geometry())
