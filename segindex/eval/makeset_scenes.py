"""A compositional evaluation set: seeded colour-shape composites whose ground truth records every
paste, and scene queries (``red LEFT OF blue``, ``COUNT(red) >= 3``, ``red AND NOT blue``) with
their exact relevant image sets.

Each image is a gray canvas with 1-6 pastes (rectangles and ellipses) in the colours of
:data:`CLASSES`, which the deterministic colour fakes (:mod:`segindex.testing.fakes`) recognise by
name. Some pastes are placed inside an earlier one, some across one, and some images hold a crowd
of 2-5 pastes of one colour, so every relation and every count from 0 to 5 occurs. A paste's
ground-truth mask is the whole shape (amodal: a later paste may cover part of it, never more than
``1 - MIN_VISIBLE``), so masks overlap and *inside* / *overlaps* can hold.

Relevant sets are computed by brute force on those masks with the definitions of the scene
algebra (:mod:`segindex.search.scenes`), at their default parameters:

    a LEFT OF b      mask centroid x of a < that of b (RIGHT OF, ABOVE, BELOW alike; y grows down)
    a INSIDE b       |a & b| / |a| >= 0.9
    a OVERLAPS b     IoU(a, b) >= 0.1
    a NEAR b         gap between the XYXY boxes / mean box diagonal <= 0.5
    a LARGER THAN b  area(a) > area(b)

A relation query holds in an image when some region of class a and some region of class b (two
distinct pastes) satisfy it. Layouts where a pair of different colours lies close to a decision
boundary (centroids within 1.5 px, containment 0.8-0.97, IoU 0.07-0.13, gap ratio 0.4-0.6 by
Euclidean or per-axis gap, area ratio 0.93-1.07) are redrawn, so the truth does not hinge on a
pixel convention.

Output (``OUT``)::

    images/000000.png ...     the composites (PNG: lossless, so the colours stay exact)
    instances.json            COCO instances (compressed RLE, amodal, overlapping), per paste its
                              class, ``instance`` (1-based within the image), ``z`` (paste
                              order), ``centroid`` [x, y] and ``bbox``; feed it to the ``coco``
                              segmenter for exact regions
    scenes.json               ``queries``: id, type, text, spec, relevant (file names)

The same ``seed`` gives byte-identical files (image ``i`` depends only on ``(seed, i)``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError

CLASSES: tuple[str, ...] = ("red", "green", "blue", "yellow")
BACKGROUND = "gray"
MIN_VISIBLE = 0.75  # every paste keeps this fraction of its mask uncovered by later pastes
MAX_OBJECTS = 6
RELATIONS: dict[str, str] = {
    "left_of": "LEFT OF",
    "right_of": "RIGHT OF",
    "above": "ABOVE",
    "below": "BELOW",
    "inside": "INSIDE",
    "overlaps": "OVERLAPS",
    "near": "NEAR",
    "larger_than": "LARGER THAN",
}
MIN_FRACTION, MIN_IOU, MAX_GAP, RATIO = 0.9, 0.1, 0.5, 1.0  # the algebra's defaults
QUERY_TYPES: tuple[str, ...] = (
    *RELATIONS,
    "count_ge",
    "count_eq",
    "count_le",
    "and",
    "or",
    "and_not",
)
_OPS = {"count_ge": ">=", "count_eq": "=", "count_le": "<="}


@dataclass(frozen=True)
class Paste:
    """One pasted shape: class (a :data:`CLASSES` colour), ``HxW`` bool amodal mask."""

    cls: str
    mask: np.ndarray

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    @property
    def box(self) -> tuple[int, int, int, int]:
        """XYXY pixels, x1/y1 exclusive."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _gap_ratio(a: Paste, b: Paste, euclid: bool = True, inclusive: bool = False) -> float:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    e = 1 if inclusive else 0
    dx = max(0, bx0 - (ax1 - e), ax0 - (bx1 - e))
    dy = max(0, by0 - (ay1 - e), ay0 - (by1 - e))
    gap = float(np.hypot(dx, dy)) if euclid else float(max(dx, dy))
    diag = (np.hypot(ax1 - ax0, ay1 - ay0) + np.hypot(bx1 - bx0, by1 - by0)) / 2
    return gap / float(diag)


def holds(relation: str, a: Paste, b: Paste) -> bool:
    """Brute-force truth of ``a <relation> b`` (a :data:`RELATIONS` key) at the default
    parameters (see the module docstring)."""
    if relation in ("left_of", "right_of", "above", "below"):
        (ax, ay), (bx, by) = a.centroid, b.centroid
        return {"left_of": ax < bx, "right_of": ax > bx, "above": ay < by, "below": ay > by}[
            relation
        ]
    inter = int((a.mask & b.mask).sum())
    if relation == "inside":  # against b's mask with its holes filled, as the search does
        from scipy.ndimage import binary_fill_holes

        return int((a.mask & binary_fill_holes(b.mask)).sum()) / a.area >= MIN_FRACTION
    if relation == "overlaps":
        return inter / (a.area + b.area - inter) >= MIN_IOU
    if relation == "near":
        return _gap_ratio(a, b) <= MAX_GAP
    if relation == "larger_than":
        return a.area > RATIO * b.area
    raise ValueError(f"relation must be one of {sorted(RELATIONS)}, got {relation!r}")


def ambiguous(a: Paste, b: Paste) -> bool:
    """True when a pair of pastes lies near a relation's decision boundary (see the module
    docstring), where a different pixel convention could flip the answer."""
    (ax, ay), (bx, by) = a.centroid, b.centroid
    if abs(ax - bx) < 1.5 or abs(ay - by) < 1.5:
        return True
    inter = int((a.mask & b.mask).sum())
    if any(0.8 <= inter / p.area <= 0.97 for p in (a, b)):
        return True
    if 0.07 <= inter / (a.area + b.area - inter) <= 0.13:
        return True
    ratios = [_gap_ratio(a, b, e, i) for e in (True, False) for i in (False, True)]
    if any(0.4 <= r <= 0.6 for r in ratios) or len({r <= MAX_GAP for r in ratios}) > 1:
        return True
    return 0.93 <= a.area / b.area <= 1.07


def _shape(rng: np.random.Generator, size: tuple[int, int], h: int, w: int) -> np.ndarray:
    """``h x w`` bool: a filled rectangle or ellipse."""
    if rng.random() < 0.5:
        return np.ones((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    return ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1.0


def _place(
    rng: np.random.Generator, size: tuple[int, int], placed: list[Paste], cls: str, mode: str
) -> Paste | None:
    """A new paste of ``cls``: ``free`` (anywhere), ``small`` (a crowd member), ``inside`` or
    ``across`` an earlier paste; None when 20 tries find no valid layout."""
    H, W = size
    side = min(H, W)
    for _ in range(20):
        host = placed[int(rng.integers(len(placed)))] if placed and mode != "free" else None
        if mode == "inside" and host is not None:
            x0, y0, x1, y1 = host.box
            f = np.sqrt(rng.uniform(0.08, 0.18))
            h, w = max(8, int((y1 - y0) * f)), max(8, int((x1 - x0) * f))
            if h >= y1 - y0 or w >= x1 - x0:
                continue
            top = int(rng.integers(y0, y1 - h + 1))
            left = int(rng.integers(x0, x1 - w + 1))
        else:
            lo, hi = (0.08, 0.16) if mode == "small" else (0.15, 0.45)
            h = max(10, int(rng.uniform(lo, hi) * side))
            w = max(10, int(h * rng.uniform(0.6, 1.6)))
            w = min(w, W - 1)
            if mode == "across" and host is not None:
                ys, xs = np.nonzero(host.mask)
                k = int(rng.integers(len(ys)))
                top = int(np.clip(ys[k] - h // 2, 0, H - h))
                left = int(np.clip(xs[k] - w // 2, 0, W - w))
            else:
                top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        mask = np.zeros(size, bool)
        mask[top : top + h, left : left + w] = _shape(rng, size, h, w)
        if mask.sum() < 80:
            continue
        new = Paste(cls, mask)
        if any(_visible(p, [*placed, new], i) < MIN_VISIBLE * p.area
               for i, p in enumerate(placed)):  # fmt: skip
            continue
        if any(p.cls != cls and ambiguous(p, new) for p in placed):
            continue
        return new
    return None


def _visible(p: Paste, placed: list[Paste], i: int) -> int:
    """Pixels of ``placed[i]`` not covered by the pastes after it."""
    cover = np.zeros_like(p.mask)
    for q in placed[i + 1 :]:
        cover |= q.mask
    return int((p.mask & ~cover).sum())


def compose(
    rng: np.random.Generator, size: tuple[int, int] = (128, 160)
) -> tuple[np.ndarray, list[Paste]]:
    """One composite: ``HxWx3`` uint8 RGB and its pastes in paste order (later on top)."""
    from segindex.testing.fakes import PALETTE

    placed: list[Paste] = []
    plan: list[tuple[str, str]] = []
    if rng.random() < 0.3:  # a crowd of one colour
        crowd = CLASSES[int(rng.integers(len(CLASSES)))]
        plan += [(crowd, "small")] * int(rng.integers(2, 6))
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1)) - len(plan)):
        mode = ["free", "free", "inside", "inside", "across"][int(rng.integers(5))]
        plan.append((CLASSES[int(rng.integers(len(CLASSES)))], mode))
    for cls, mode in plan:
        p = _place(rng, size, placed, cls, mode)
        if p is not None:
            placed.append(p)
    canvas = np.empty((*size, 3), np.uint8)
    canvas[:] = PALETTE[BACKGROUND]
    for p in placed:
        canvas[p.mask] = PALETTE[p.cls]
    return canvas, placed


def exemplar(cls: str, side: int = 48) -> np.ndarray:
    """An image exemplar of a class: a ``side x side x 3`` uint8 RGB square of its colour (what
    the index crops of a paste look like, its background filled with the paste's colour)."""
    from segindex.testing.fakes import PALETTE

    if cls not in CLASSES:
        raise ValueError(f"class must be one of {list(CLASSES)}, got {cls!r}")
    out = np.empty((side, side, 3), np.uint8)
    out[:] = PALETTE[cls]
    return out


def render(spec: dict[str, Any], min_similarity: float | None = None) -> str:
    """The scene-syntax text of a query ``spec``; with ``min_similarity``, every object word
    carries it (``red~0.3``)."""

    def word(c: str) -> str:
        return c if min_similarity is None else f"{c}~{min_similarity:g}"

    t, a = spec["type"], spec["a"]
    if t in RELATIONS:
        return f"{word(a)} {RELATIONS[t]} {word(spec['b'])}"
    if t in _OPS:
        count = f"COUNT({word(a)}) {_OPS[t]} {spec['n']}"
        return count if spec.get("b") is None else f"{word(spec['b'])} AND {count}"
    if t == "and_not":
        return f"{word(a)} AND NOT {word(spec['b'])}"
    return f"{word(a)} {t.upper()} {word(spec['b'])}"


def truth(spec: dict[str, Any], pastes: list[Paste]) -> bool:
    """Whether an image with ``pastes`` is relevant to the query ``spec`` (brute force)."""
    t, a, b = spec["type"], spec["a"], spec.get("b")
    of_a = [p for p in pastes if p.cls == a]
    of_b = [p for p in pastes if p.cls == b]
    if t in RELATIONS:
        return any(holds(t, p, q) for p in of_a for q in of_b if p is not q)
    if t in _OPS:
        n = spec["n"]
        anchor = b is None or bool(of_b)
        return anchor and {"count_ge": len(of_a) >= n, "count_eq": len(of_a) == n,
                           "count_le": len(of_a) <= n}[t]  # fmt: skip
    if t == "and":
        return bool(of_a) and bool(of_b)
    if t == "or":
        return bool(of_a) or bool(of_b)
    if t == "and_not":
        return bool(of_a) and not of_b
    raise ValueError(f"query type must be one of {QUERY_TYPES}, got {t!r}")


def candidate_specs() -> list[dict[str, Any]]:
    """Every query the set can ask: each relation and boolean for each ordered pair of colours
    (``or``/``and``: unordered), counts ``>= 1..5``, ``= 0..5``, ``<= 0..4`` per colour. A count
    that allows zero is anchored to another colour (``blue AND COUNT(red) <= 1``): a scene query
    must name something to look for."""
    specs: list[dict[str, Any]] = []
    for a, b in itertools.permutations(CLASSES, 2):
        specs += [{"type": t, "a": a, "b": b} for t in RELATIONS]
        specs.append({"type": "and_not", "a": a, "b": b})
        if a < b:
            specs += [{"type": "and", "a": a, "b": b}, {"type": "or", "a": a, "b": b}]
    for a in CLASSES:
        specs += [{"type": "count_ge", "a": a, "n": n} for n in range(1, 6)]
        specs += [{"type": "count_eq", "a": a, "n": n} for n in range(1, 6)]
        for b in CLASSES:
            if b != a:
                specs.append({"type": "count_eq", "a": a, "n": 0, "b": b})
                specs += [{"type": "count_le", "a": a, "n": n, "b": b} for n in range(5)]
    return specs


def make_scene_set(
    out: str | Path,
    n: int = 60,
    seed: int = 0,
    size: tuple[int, int] = (128, 160),
    per_type: int = 6,
) -> dict[str, Any]:
    """Write ``n`` composites, their ground truth and up to ``per_type`` queries of each type
    (those with at least one relevant and one irrelevant image, drawn with ``seed``) under
    ``out``; returns a summary dict."""
    from PIL import Image

    from segindex.rle import encode

    if n < 2:
        raise ConfigError(f"n must be >= 2, got {n}")
    if per_type < 1:
        raise ConfigError(f"per_type must be >= 1, got {per_type}")
    if min(size) < 48:
        raise ConfigError(f"size must be at least 48x48, got {size[0]}x{size[1]}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    scenes: list[tuple[str, list[Paste]]] = []
    for i in range(n):
        canvas, pastes = compose(np.random.default_rng([seed, i]), size)
        name = f"{i:06d}.png"
        Image.fromarray(canvas).save(out / "images" / name)
        images.append({"id": i + 1, "file_name": name, "height": size[0], "width": size[1]})
        for z, p in enumerate(pastes):
            x0, y0, x1, y1 = p.box
            anns.append({"id": len(anns) + 1, "image_id": i + 1,
                         "category_id": CLASSES.index(p.cls) + 1, "instance": z + 1, "z": z,
                         "segmentation": dict(encode(p.mask)), "area": p.area, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "centroid": [round(c, 3) for c in p.centroid]})  # fmt: skip
        scenes.append((name, pastes))
    rng = np.random.default_rng([seed, n, 1])
    by_type: dict[str, list[dict[str, Any]]] = {}
    for spec in candidate_specs():
        relevant = [name for name, pastes in scenes if truth(spec, pastes)]
        if 0 < len(relevant) < n:
            by_type.setdefault(spec["type"], []).append({"spec": spec, "relevant": relevant})
    queries: list[dict[str, Any]] = []
    for t in QUERY_TYPES:
        pool = by_type.get(t, [])
        order = rng.permutation(len(pool)).tolist()
        if t in _OPS:  # spread the counts: one per n first, then a second per n, ...
            seen: dict[int, int] = {}
            rank = {}
            for j in order:
                n_j = pool[j]["spec"]["n"]
                rank[j] = seen[n_j] = seen.get(n_j, -1) + 1
            order.sort(key=lambda j: rank[j])
        for j in sorted(order[:per_type]):
            q = pool[j]
            queries.append({"id": len(queries), "type": t, "text": render(q["spec"]), **q})
    cats = [{"id": k + 1, "name": c, "isthing": 1, "supercategory": "colour"}
            for k, c in enumerate(CLASSES)]  # fmt: skip
    info = {"description": "segindex compositional evaluation set", "seed": seed, "n": n,
            "size": list(size), "classes": list(CLASSES), "background": BACKGROUND,
            "min_visible": MIN_VISIBLE}  # fmt: skip
    gt = {"info": info, "images": images, "annotations": anns, "categories": cats}
    _write_json(out / "instances.json", gt)
    _write_json(out / "scenes.json", {"info": info, "queries": queries})
    types: dict[str, int] = {}
    for q in queries:
        types[q["type"]] = types.get(q["type"], 0) + 1
    return {"out": str(out), "images": n, "pastes": len(anns), "queries": len(queries),
            "query_types": types, "instances": str(out / "instances.json"),
            "scenes": str(out / "scenes.json"), "images_root": str(out / "images")}  # fmt: skip


def load_scene_set(root: str | Path) -> dict[str, Any]:
    """``scenes.json`` of a set written by :func:`make_scene_set` (``root``: its folder or the
    file; a video set's too), with ``root`` and ``images_root`` (the folder of its images or
    videos) added."""
    path = Path(root)
    if path.is_dir():
        path = path / "scenes.json"
    if not path.exists():
        raise ConfigError(f"expected a compositional set (scenes.json) at {root}, found none")
    data: dict[str, Any] = json.loads(path.read_text())
    data["root"] = str(path.parent)
    data["images_root"] = str(path.parent / data["info"].get("media", "images"))
    return data


def load_pastes(root: str | Path) -> dict[str, list[Paste]]:
    """File name -> its pastes in paste order, decoded from ``instances.json``."""
    from segindex.rle import decode

    data = json.loads((Path(root) / "instances.json").read_text())
    names = {im["id"]: im["file_name"] for im in data["images"]}
    out: dict[str, list[Paste]] = {n: [] for n in names.values()}
    for a in sorted(data["annotations"], key=lambda a: (a["image_id"], a["z"])):
        out[names[a["image_id"]]].append(Paste(CLASSES[a["category_id"] - 1],
                                               decode(a["segmentation"])))  # fmt: skip
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
