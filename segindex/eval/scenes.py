"""Compositional search quality on a set from :mod:`.makeset_scenes`: does an index find exactly
the images where "red LEFT OF blue", "COUNT(red) >= 3" or "red AND NOT blue" hold?

Each query is asked three ways, each giving a ranked list of images:

    scenes        segindex's compositional search, ``Index.search_scenes(text)``
    whole_image   the same query text against whole-image vectors (``Index.search(text,
                  scope="images")``): what a peer with one vector per image would do
    first_region  single-region search for the query's first object term
                  (``Index.search(term, scope="regions")``), each image ranked by its best region

A video set (:mod:`.makeset_scenes_video`, ``scope`` ``videos``) is searched with
``scope="videos"``; its baselines rank each clip by its best whole sampled frame
(``scope="images"``) and by its best track (``scope="tracks"``).

With ``terms="exemplar"`` (for embedders without a text side, e.g. ``sam_features``) every object
term is an image exemplar instead (:func:`~segindex.eval.makeset_scenes.exemplar`, a square of
the class's colour): the scene query is built with the algebra (``Object(image=..., name=...)``)
and both baselines search by the first term's exemplar image.

and scored against the set's exact relevant images: average precision (mean over queries: mAP),
precision@k and recall@k, per query type, with the chance mAP of a random ranking of the set's
images. Images are matched to the set by file name (relative to the set's ``images`` folder, else
by base name); an indexed image the set does not know is an irrelevant result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.eval.ranking import average_precision, chance_average_precision, mean_metrics

METHODS: tuple[str, ...] = ("scenes", "whole_image", "first_region")


@dataclass(frozen=True)
class SceneEvalOptions:
    """ks: cut-offs of precision@k / recall@k. min_similarity: given to every object term of the
    compositional queries (``red~0.3``); ``None`` keeps the executor's default. methods: which of
    :data:`METHODS` to run. terms: ``text`` (the query texts) or ``exemplar`` (image exemplars
    of the classes)."""

    ks: tuple[int, ...] = (1, 5, 10)
    min_similarity: float | None = None
    methods: tuple[str, ...] = METHODS
    terms: str = "text"


def precision_at_k(rel: np.ndarray, k: int) -> float:
    """Fraction of the first ``k`` ranks that are relevant (a short list counts its missing
    ranks as irrelevant)."""
    return float(np.asarray(rel[:k], dtype=bool).sum() / k)


def query_metrics(ranked: Sequence[str], relevant: set[str], ks: Sequence[int]) -> dict[str, Any]:
    """``ap``, ``r_precision`` (precision at rank R = the number of relevant images: 1.0 when
    the relevant images come first, whatever their number), ``precision@k`` and ``recall@k`` of
    one ranked list of image names (each image counted once, at its first rank)."""
    seen: set[str] = set()
    rel = []
    for name in ranked:
        rel.append(name in relevant and name not in seen)
        seen.add(name)
    r = np.asarray(rel, dtype=bool)
    out: dict[str, Any] = {"ap": average_precision(r, len(relevant)),
                           "r_precision": precision_at_k(r, len(relevant))}  # fmt: skip
    for k in ks:
        out[f"precision@{k}"] = precision_at_k(r, k)
    for k in ks:
        out[f"recall@{k}"] = float(r[:k].sum() / len(relevant))
    return out


def first_object(text: str) -> str:
    """The text of the first object term of a scene query (``COUNT(red) >= 3`` -> ``red``)."""
    from segindex.search.scenes import parse_scene
    from segindex.search.scenes.algebra import objects_of

    for o in objects_of(parse_scene(text)):
        if o.text is not None:
            return o.text
    raise ValueError(f"expected a scene query with a text object term, got {text!r}")


def scene_expr(spec: dict[str, Any], min_similarity: float | None = None) -> Any:
    """The scene query of a set's query ``spec`` built with the algebra, each object term an
    image exemplar (``Object(image=exemplar(c), name=c)``)."""
    from segindex.eval.makeset_scenes import RELATIONS, exemplar
    from segindex.eval.makeset_scenes_video import DURING_S, VIDEO_TYPES, WITHIN_S
    from segindex.search.scenes import algebra as al

    def term(c: str) -> Any:
        return al.Object(image=exemplar(c), name=c, min_similarity=min_similarity)

    relation = {"left_of": al.LeftOf, "right_of": al.RightOf, "above": al.Above,
                "below": al.Below, "inside": al.Inside, "overlaps": al.Overlaps,
                "near": al.Near, "larger_than": al.LargerThan}  # fmt: skip
    t, a = spec["type"], term(spec["a"])
    b = term(spec["b"]) if spec.get("b") is not None else None
    if t in RELATIONS and b is not None:
        return a & b & relation[t](a.part, b.part)
    if t in VIDEO_TYPES and b is not None:
        during = al.During(a.part, b.part, min_overlap_s=0.0 if t == "with" else DURING_S)
        if t == "then":
            return a & b & al.Then(a.part, b.part, within_s=WITHIN_S)
        if t == "during_then":
            c = term(spec["c"])
            return a & b & during & c & al.Then(b.part, c.part, within_s=WITHIN_S)
        return a & b & during
    if t.startswith("count_"):
        bound = {"count_ge": "at_least", "count_eq": "exactly", "count_le": "at_most"}[t]
        count = al.Count(a, **{bound: spec["n"]})
        return count if b is None else b & count
    if b is not None and t in ("and", "or", "and_not"):
        return {"and": a & b, "or": a | b, "and_not": a & ~b}[t]
    raise ValueError(f"expected a query spec of the compositional set, got {spec!r}")


def evaluate_scenes(
    index: Any,
    scene_set: dict[str, Any],
    options: SceneEvalOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate an open :class:`segindex.Index` on ``scene_set`` (from
    :func:`~segindex.eval.makeset_scenes.load_scene_set`)."""
    from segindex.errors import ConfigError

    opts = options or SceneEvalOptions()
    say = progress or (lambda _msg: None)
    ks = tuple(sorted(set(opts.ks)))
    unknown = [m for m in opts.methods if m not in METHODS]
    if unknown or not opts.methods:
        raise ConfigError(f"methods must be some of {list(METHODS)}, got {list(opts.methods)}")
    if opts.terms not in ("text", "exemplar"):
        raise ConfigError(f"terms must be 'text' or 'exemplar', got {opts.terms!r}")
    if "scenes" in opts.methods and not hasattr(index, "search_scenes"):
        raise ConfigError("this segindex has no compositional search (Index.search_scenes)")
    root = Path(scene_set["images_root"]).resolve()
    videos = scene_set["info"].get("scope") == "videos"
    n_set = int(scene_set["info"]["n"])
    indexed = index.store.indexed_images()
    name_of = {int(r.id): _set_name(r.path, root) for r in indexed}
    all_names = {p.name for p in root.iterdir()} if root.is_dir() else set()
    matched = sum(1 for n in name_of.values() if n in all_names)
    n_images = max(len(indexed), 1)
    n_regions = max(int(index.store.counts()["regions"]), 1)
    rows = []
    for q in scene_set["queries"]:
        say(f"query {q['id']}: {q['text']}")
        relevant = set(q["relevant"])
        chance = chance_average_precision(len(relevant), n_set)
        row: dict[str, Any] = {"id": q["id"], "type": q["type"], "text": q["text"],
                               "n_relevant": len(relevant), "chance_ap": chance}  # fmt: skip
        for method in opts.methods:
            try:
                ranked = _ranked(index, method, q, opts, (n_images, n_regions), name_of, videos)
            except Exception as e:  # a query the executor refuses scores 0 and says why
                from segindex.errors import SegindexError

                if not isinstance(e, SegindexError):
                    raise
                row[f"{method}_error"] = f"{type(e).__name__}: {e}"
                ranked = []
            for key, val in query_metrics(ranked, relevant, ks).items():
                row[f"{method}_{key}"] = val
        rows.append(row)
    per_type = []
    for t in dict.fromkeys(r["type"] for r in rows):
        of_t = [r for r in rows if r["type"] == t]
        metrics = [{k: v for k, v in r.items() if k not in ("id", "type", "text")} for r in of_t]
        per_type.append({"type": t, "queries": len(of_t), **mean_metrics(metrics)})
    metrics = [{k: v for k, v in r.items() if k not in ("id", "type", "text")} for r in rows]
    overall = {"type": "all", "queries": len(rows), **mean_metrics(metrics)}
    errors = {m: sum(1 for r in rows if f"{m}_error" in r) for m in opts.methods}
    summary: dict[str, Any] = {"queries": len(rows), "chance_map": overall.get("chance_ap")}
    for m in opts.methods:
        summary[f"{m}_map"] = overall.get(f"{m}_ap")
        summary[f"{m}_r_precision"] = overall.get(f"{m}_r_precision")
        for k in ks:
            summary[f"{m}_precision@{k}"] = overall.get(f"{m}_precision@{k}")
            summary[f"{m}_recall@{k}"] = overall.get(f"{m}_recall@{k}")
        summary[f"{m}_errors"] = errors[m]
    return {
        "kind": "scenes",
        "options": {
            "ks": list(ks),
            "min_similarity": opts.min_similarity,
            "methods": list(opts.methods),
            "terms": opts.terms,
        },
        "images": {"indexed": len(indexed), "in_set": n_set, "matched": matched},
        "summary": summary,
        "per_type": [*per_type, overall],
        "queries": rows,
    }


def _set_name(path: str, root: Path) -> str:
    p = Path(path)
    try:
        return p.resolve().relative_to(root).as_posix()
    except ValueError:
        return p.name


def _ranked(
    index: Any,
    method: str,
    q: dict[str, Any],
    opts: SceneEvalOptions,
    sizes: tuple[int, int],
    name_of: dict[int, str],
    videos: bool = False,
) -> list[str]:
    """The images (videos) ``method`` ranks for query ``q``, best first, as set file names.
    ``sizes``: how many images (videos) and regions are indexed."""
    from segindex.eval.makeset_scenes import exemplar, render
    from segindex.eval.makeset_scenes_video import render_video

    n_images, n_regions = sizes
    if method == "scenes":
        if opts.terms == "exemplar":
            query: Any = scene_expr(q["spec"], opts.min_similarity)
        elif videos:
            query = render_video(q["spec"], opts.min_similarity)
        else:
            query = render(q["spec"], opts.min_similarity)
        hits = index.search_scenes(query, k=n_images, scope="videos" if videos else "images")
        return [name_of.get(int(h.image_id), h.image_path) for h in hits]
    # videos: whole sampled frames, and tracks, each video ranked by its best one
    scope = "images" if method == "whole_image" else "tracks" if videos else "regions"
    k = n_images if scope == "images" and not videos else n_regions
    if opts.terms == "exemplar":
        hits = index.search(image=exemplar(first_object(q["text"])), scope=scope, k=k)
    elif method == "whole_image":
        hits = index.search(q["text"], scope=scope, k=k)
    else:
        hits = index.search(first_object(q["text"]), scope=scope, k=k)
    out: list[str] = []
    for h in hits:
        name = name_of.get(int(h.image_id), h.image_path)
        if name not in out:
            out.append(name)
    return out


def markdown(result: dict[str, Any]) -> str:
    """Two per-type tables (mAP of each method beside chance, and R-precision; precision@k and
    recall@k at the largest k) and the images line, as Markdown."""
    from segindex.eval.report import markdown_table

    methods = result["options"]["methods"]
    k = result["options"]["ks"][-1]
    cols = ["type", "queries", "n_relevant", "chance_ap", *(f"{m}_ap" for m in methods)]
    cols += [f"{m}_r_precision" for m in methods]
    lines = markdown_table("Compositional search: mAP and R-precision", result["per_type"], cols)
    cols = ["type", *(f"{m}_{x}@{k}" for m in methods for x in ("precision", "recall"))]
    lines += markdown_table(f"Precision and recall at {k}", result["per_type"], cols)
    im = result["images"]
    lines.append(f"Images: {im['indexed']} indexed, {im['matched']} of the set's {im['in_set']} "
                 "matched. Per type: means over its queries (`_ap`: mAP; `n_relevant`: relevant "
                 "images per query).")  # fmt: skip
    errs = {m: result["summary"][f"{m}_errors"] for m in methods}
    if any(errs.values()):
        lines.append("Queries refused (scored 0): "
                     + ", ".join(f"{m} {n}" for m, n in errs.items() if n))  # fmt: skip
    return "\n".join([*lines, ""])


def write_scene_report(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``result.json`` and ``report.md`` in ``out_dir``; returns the files."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text("# segindex compositional search evaluation\n\n"
                                   + markdown(result))  # fmt: skip
    return [out / "result.json", out / "report.md"]
