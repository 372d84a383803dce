"""Region-retrieval quality of an index against COCO ground truth.

Relevance: each indexed region (kind ``segment``) is matched to the ground-truth instance of
its own image with the highest mask IoU, if that IoU is >= ``iou_threshold`` (0.5). A result is
relevant to a query about class *c* when its region matches an instance of class *c*; a second
result matching the same instance is a duplicate, not relevant (see :mod:`.ranking`).
Classes in ``ignore_classes`` (the evaluation set's ``distractor``) are matched like any other
(so a distractor region is an irrelevant result) but never queried. An embedder that embeds no
text (``embeds_text`` False, e.g. ``sam_features``) gets image queries only.
Rankings are the index's own (``Index.search_vector`` over every region, so FAISS decides the
order), and recall counts ground-truth instances, so a missed segmentation costs recall.

    text_to_region    one query per class, the class name written into each template
    image_to_region   each ground-truth instance, embedded like the index embeds a region of a
                      new image, queries for the other instances of its class (itself
                      excluded); with ``chance``, the expected mAP of a random ranking
    instance_to_region  the same queries, relevant: the other pastes of the same source
                      instance (annotations' ``"source"``, as the evaluation set writes them)
    whole_vs_region   the same text queries asked of whole-image vectors (scope ``images``)
                      and of regions (an image ranked by its best region); relevant images are
                      those holding an instance of the class
    ann               recall@k of the index's search against an exact brute-force search over
                      the same vectors (1.0 for the flat index segindex builds today)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from segindex.eval.image_retrieval import GTInstance as _GTInstance
from segindex.eval.image_retrieval import image_to_region, query_vectors
from segindex.eval.ranking import mean_metrics, precision_recall, ranking_metrics, relevance
from segindex.formats.coco import MaskSet
from segindex.masks import iou_matrix

MAX_SCORES = 20_000  # similarity samples kept for the score-distribution plot


@dataclass(frozen=True)
class RetrievalOptions:
    templates: tuple[str, ...] = ("a photo of a {}.",)
    ks: tuple[int, ...] = (1, 5, 10)
    iou_threshold: float = 0.5
    images_root: str | None = None
    image_queries: bool = True
    ann_k: int = 10
    ignore_classes: tuple[str, ...] = ("distractor",)


def evaluate_retrieval(
    index: Any,
    gt: MaskSet,
    options: RetrievalOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate an open :class:`segindex.Index` against ground truth ``gt``."""
    from segindex import rle as rle_codec

    opts = options or RetrievalOptions()
    say = progress or (lambda _msg: None)
    ks = tuple(sorted(set(opts.ks)))
    say("matching regions to ground truth")
    indexed = index.store.indexed_images()
    gt_of: dict[int, Any] = {}
    for row in indexed:
        info = gt.find(row.path, opts.images_root)
        if info is not None:
            gt_of[int(row.id)] = info
    instances: list[_GTInstance] = []
    by_image: dict[int, list[_GTInstance]] = {}
    paths = {int(r.id): r.path for r in indexed}
    for image_id, info in gt_of.items():
        m = gt.masks(info.id)
        anns = gt.annotations(info.id)
        for j in np.flatnonzero(~m.iscrowd).tolist():
            source = anns[j].get("source") if j < len(anns) else None
            inst = _GTInstance(
                (info.id, int(j)),
                str(m.regions.labels[j]),
                image_id,
                paths[image_id],
                m.regions.masks[j],
                m.regions.boxes[j],
                str(source) if source is not None else None,
            )
            if inst.name not in opts.ignore_classes:
                instances.append(inst)
            by_image.setdefault(image_id, []).append(inst)
    match: dict[int, _GTInstance] = {}  # region id -> instance
    n_segments = 0
    pending: dict[int, list[tuple[int, np.ndarray]]] = {}
    for row in index.store.iter_regions():
        if row.kind != "segment":
            continue
        n_segments += 1
        if int(row.image_id) in by_image:
            rle: rle_codec.RLE = {"size": [int(row.height), int(row.width)], "counts": row.rle}
            pending.setdefault(int(row.image_id), []).append((int(row.id), rle_codec.decode(rle)))
    for image_id, regs in pending.items():
        insts = by_image[image_id]
        ious = iou_matrix(np.stack([m for _, m in regs]), np.stack([i.mask for i in insts]))
        for (rid, _), row_iou in zip(regs, ious, strict=True):
            j = int(row_iou.argmax())
            if row_iou[j] >= opts.iou_threshold:
                match[rid] = insts[j]
    counts: dict[str, int] = {}
    for inst in instances:
        counts[inst.name] = counts.get(inst.name, 0) + 1
    names = sorted(counts)
    found = {id(i) for i in match.values()}
    result: dict[str, Any] = {
        "kind": "retrieval",
        "options": {
            "templates": list(opts.templates),
            "ks": list(ks),
            "iou_threshold": opts.iou_threshold,
        },
        "images": {
            "indexed": len(indexed),
            "matched": len(gt_of),
            "unmatched": len(indexed) - len(gt_of),
        },
        "regions": {
            "indexed": n_segments,
            "matched_to_gt": len(match),
            "gt_instances": len(instances),
            "gt_instances_found": sum(1 for i in instances if id(i) in found),
        },
    }
    emb = index.embedder
    text_names = names if emb.embeds_text else []
    if len(text_names) < len(names):
        result["text_skipped"] = f"embedder {emb.name!r} does not embed text"
    say(f"text queries ({len(text_names)} classes)")
    text_vecs = (
        emb.embed_texts(text_names, templates=list(opts.templates) or None)
        if text_names
        else np.zeros((0, index.dim), np.float32)
    )
    result["text_to_region"], curves, dist = _text_to_region(
        index, text_names, text_vecs, match, counts, n_segments, ks
    )
    result["whole_vs_region"] = _whole_vs_region(index, text_names, text_vecs, by_image, ks)
    queries = [text_vecs]
    if opts.image_queries:
        say(f"image queries ({len(instances)} instances)")
        img_vecs = query_vectors(index, instances)
        modes = image_to_region(index, instances, match, n_segments, ks, img_vecs)
        result["image_to_region"] = modes["class"]
        result["instance_to_region"] = modes["instance"]
        queries.append(img_vecs)
    say("ANN vs exact")
    result["ann"] = ann_recall(index, np.concatenate(queries), opts.ann_k)
    result["summary"] = _summary(result, ks)
    result["curves"] = {"text_pr": curves}
    result["distributions"] = dist
    return result


def _text_to_region(
    index: Any,
    names: list[str],
    vecs: np.ndarray,
    match: dict[int, _GTInstance],
    counts: dict[str, int],
    n_segments: int,
    ks: tuple[int, ...],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[float]]]:
    rows, curves = [], {}
    rel_sims: list[float] = []
    irr_sims: list[float] = []
    for name, q in zip(names, vecs, strict=True):
        hits = index.search_vector(q, k=max(n_segments, 1), scope="regions")
        ranked = [
            match[h.region_id].key
            if h.region_id in match and match[h.region_id].name == name
            else None
            for h in hits
        ]
        rel = relevance(ranked)
        for h, r in zip(hits, rel, strict=True):
            (rel_sims if r else irr_sims).append(round(h.similarity, 5))
        rows.append({"name": name, "n_relevant": counts[name],
                     **ranking_metrics(rel, counts[name], ks)})  # fmt: skip
        p, r = precision_recall(rel, counts[name])
        curves[name] = {"precision": np.round(p, 5).tolist(), "recall": np.round(r, 5).tolist()}
    metrics = [{k: v for k, v in r.items() if k not in ("name", "n_relevant")} for r in rows]
    dist = {"relevant": rel_sims[:MAX_SCORES], "irrelevant": irr_sims[:MAX_SCORES]}
    return {"per_class": rows, "mean": mean_metrics(metrics)}, curves, dist


def _whole_vs_region(
    index: Any,
    names: list[str],
    vecs: np.ndarray,
    by_image: dict[int, list[_GTInstance]],
    ks: tuple[int, ...],
) -> dict[str, Any]:
    n_images = max(len(index.store.indexed_images()), 1)
    n_regions = max(int(index.store.counts()["regions"]), 1)
    rows = []
    for name, q in zip(names, vecs, strict=True):
        holders = {i for i, insts in by_image.items() if any(x.name == name for x in insts)}
        whole = [h.image_id for h in index.search_vector(q, k=n_images, scope="images")]
        region: list[int] = []
        for h in index.search_vector(q, k=n_regions, scope="regions"):
            if h.image_id not in region:
                region.append(h.image_id)
        row: dict[str, Any] = {"name": name, "n_relevant": len(holders)}
        for tag, order in (("whole", whole), ("region", region)):
            rel = relevance([i if i in holders else None for i in order])
            for key, val in ranking_metrics(rel, len(holders), ks).items():
                if not key.startswith("ndcg"):
                    row[f"{tag}_{key}"] = val
        rows.append(row)
    metrics = [{k: v for k, v in r.items() if k not in ("name", "n_relevant")} for r in rows]
    return {"per_class": rows, "mean": mean_metrics(metrics)}


def ann_recall(index: Any, queries: np.ndarray, k: int = 10) -> dict[str, Any]:
    """Recall@k of the index's search vs exact inner-product search over the same vectors.

    A returned region counts as correct when its similarity is at least the exact k-th best
    (minus 1e-6), so ties broken differently are not errors. Any FAISS index kind plugged in
    behind ``Index.search_vector`` is measured the same way.
    """
    ids_all, vecs_all = [], []
    segments = set(index.store.region_ids("segment").tolist())
    for ids, vecs in index.store.iter_vectors():
        keep = np.isin(ids, list(segments))
        ids_all.append(ids[keep])
        vecs_all.append(vecs[keep])
    kind = index.vectors.kind
    if not ids_all or sum(len(i) for i in ids_all) == 0 or len(queries) == 0:
        return {"index_kind": kind, "k": k, "recall": None, "queries": 0}
    vecs = np.concatenate(vecs_all)
    kk = min(k, len(vecs))
    sims = queries.astype(np.float32) @ vecs.T
    kth = -np.sort(-sims, axis=1)[:, kk - 1]
    recalls = []
    for q, t in zip(queries, kth, strict=True):
        hits = index.search_vector(q, k=kk, scope="regions")
        recalls.append(sum(1 for h in hits if h.similarity >= t - 1e-6) / kk)
    return {"index_kind": kind, "k": kk, "recall": float(np.mean(recalls)),
            "queries": len(recalls)}  # fmt: skip


def _summary(result: dict[str, Any], ks: tuple[int, ...]) -> dict[str, Any]:
    t = result["text_to_region"]["mean"]
    w = result["whole_vs_region"]["mean"]
    s: dict[str, Any] = {"text_map": t.get("ap")}
    for k in ks:
        s[f"text_recall@{k}"] = t.get(f"recall@{k}")
    s[f"text_ndcg@{ks[-1]}"] = t.get(f"ndcg@{ks[-1]}")
    if "image_to_region" in result:
        for tag, key in (("image", "image_to_region"), ("instance", "instance_to_region")):
            i = result[key]["mean"]
            s[f"{tag}_map"] = i.get("ap")
            s[f"{tag}_chance_map"] = result[key]["chance"]
            for k in ks:
                s[f"{tag}_recall@{k}"] = i.get(f"recall@{k}")
    s["whole_image_map"] = w.get("whole_ap")
    s["region_image_map"] = w.get("region_ap")
    s[f"ann_recall@{result['ann']['k']}"] = result["ann"]["recall"]
    return s
