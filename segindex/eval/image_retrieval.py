"""Image -> region queries of the retrieval evaluation, by class and by source instance.

Each ground-truth instance becomes a query vector the way the index would embed a region of a
new image: cropped with the index's crop policy and embedded (crop embedders), or pooled from
the full image under its mask (region embedders such as ``sam_features``, see
:attr:`segindex.embed.base.Embedder.embeds_regions`). The query's own region is excluded from
its ranking.

    class     relevant: the other instances of the query's class
    instance  relevant: the other pastes of the query's source instance (the ground truth's
              ``"source"`` of each annotation, e.g. ``"coin/07"``); instances without a source,
              or whose source occurs once, ask no instance query

Both report the mean AP (per class, then over classes), recall@k, nDCG@k, and ``chance``: the
expected AP of a random order of the same ranked lists (:func:`.ranking.chance_average_precision`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from segindex.eval.ranking import (
    chance_average_precision,
    mean_metrics,
    ranking_metrics,
    relevance,
)


@dataclass
class GTInstance:
    key: tuple[int, int]  # (gt image id, index within its image)
    name: str
    index_image_id: int
    path: str
    mask: np.ndarray
    box: np.ndarray
    source: str | None = None


def query_vectors(index: Any, instances: list[GTInstance]) -> np.ndarray:
    """``(Q, D)`` L2-normalised float32 query vectors, one per instance (instances come image
    by image, so each image is read once)."""
    from segindex.crop import crop_region
    from segindex.device import backend_device
    from segindex.images import load_image
    from segindex.regions import Regions

    emb = index.embedder
    groups: list[list[GTInstance]] = []
    for inst in instances:
        if groups and groups[-1][0].index_image_id == inst.index_image_id:
            groups[-1].append(inst)
        else:
            groups.append([inst])
    if emb.embeds_regions:
        parts = [np.zeros((0, index.dim), np.float32)]
        for group in groups:
            regions = Regions.from_masks(np.stack([i.mask for i in group]))
            parts.append(emb.embed_regions(load_image(group[0].path), regions))
        return np.concatenate(parts)
    crops: list[np.ndarray] = []
    for group in groups:
        pixels = load_image(group[0].path)
        crops += [crop_region(pixels, i.mask, i.box, index.settings.crop) for i in group]
    device = backend_device(emb)
    batch = index.runtime.batch_sizes(device, device)[1]
    return emb.embed_images(crops, batch_size=batch)


def image_to_region(
    index: Any,
    instances: list[GTInstance],
    match: dict[int, GTInstance],
    n_segments: int,
    ks: tuple[int, ...],
    vecs: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """``{"class": ..., "instance": ...}`` results, each ``{"per_class", "mean", "queries",
    "chance"}``, for the query vectors ``vecs`` ``(Q, D)`` of ``instances``."""
    counts: dict[str, int] = {}
    sources: dict[str, int] = {}
    for inst in instances:
        counts[inst.name] = counts.get(inst.name, 0) + 1
        if inst.source is not None:
            sources[inst.source] = sources.get(inst.source, 0) + 1
    per: dict[str, dict[str, list[dict[str, float | None]]]] = {"class": {}, "instance": {}}
    for inst, q in zip(instances, vecs, strict=True):
        n_class = counts[inst.name] - 1
        n_inst = sources.get(inst.source, 0) - 1 if inst.source is not None else 0
        if n_class <= 0 and n_inst <= 0:
            continue
        hits = index.search_vector(q, k=max(n_segments, 1), scope="regions")
        found = [match.get(h.region_id) for h in hits]
        found = [m for m in found if m is None or m.key != inst.key]  # the query's own region
        for mode, n_rel in (("class", n_class), ("instance", n_inst)):
            if n_rel <= 0:
                continue
            attr, want = ("name", inst.name) if mode == "class" else ("source", inst.source)
            ranked = [m.key if m is not None and getattr(m, attr) == want else None for m in found]
            rel = relevance(ranked)
            row = ranking_metrics(rel, n_rel, ks)
            hit = int(rel.sum())
            chance = chance_average_precision(hit, len(ranked)) if hit else 0.0
            row["chance"] = (chance or 0.0) * hit / n_rel
            per[mode].setdefault(inst.name, []).append(row)
    return {mode: _summarise(rows) for mode, rows in per.items()}


def _summarise(per_class: dict[str, list[dict[str, float | None]]]) -> dict[str, Any]:
    rows = [{"name": n, "queries": len(v), **mean_metrics(v)} for n, v in sorted(per_class.items())]
    metrics = [{k: v for k, v in r.items() if k not in ("name", "queries")} for r in rows]
    mean = mean_metrics(metrics)
    return {
        "per_class": rows,
        "mean": mean,
        "queries": sum(len(v) for v in per_class.values()),
        "chance": mean.get("chance"),
    }
