"""Ranking metrics over one query's ranked list.

A ranking is given as the ground-truth item each ranked result finds, best first: an id (any
hashable) when the result is relevant, ``None`` when it is not. A result that finds an item an
earlier result already found counts as not relevant (a duplicate), so every measure below is
about distinct ground-truth items found, out of ``n_relevant``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np


def relevance(ranked: Sequence[Hashable | None]) -> np.ndarray:
    """``(R,)`` bool: True where a result finds a ground-truth item for the first time."""
    seen: set[Hashable] = set()
    out = np.zeros(len(ranked), dtype=bool)
    for i, item in enumerate(ranked):
        if item is not None and item not in seen:
            seen.add(item)
            out[i] = True
    return out


def recall_at_k(rel: np.ndarray, n_relevant: int, k: int) -> float | None:
    """Fraction of the ``n_relevant`` items found in the first ``k`` results (None if none)."""
    if n_relevant <= 0:
        return None
    return float(np.asarray(rel[:k]).sum() / n_relevant)


def average_precision(rel: np.ndarray, n_relevant: int) -> float | None:
    """Mean over the ``n_relevant`` items of the precision at the rank each is found (0 for an
    item never found)."""
    if n_relevant <= 0:
        return None
    rel = np.asarray(rel, dtype=bool)
    if not rel.any():
        return 0.0
    ranks = np.flatnonzero(rel) + 1
    precisions = np.arange(1, len(ranks) + 1) / ranks
    return float(precisions.sum() / n_relevant)


def ndcg_at_k(rel: np.ndarray, n_relevant: int, k: int) -> float | None:
    """Normalised discounted cumulative gain of binary relevance in the first ``k`` results."""
    if n_relevant <= 0:
        return None
    rel = np.asarray(rel[:k], dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((rel * discounts[: len(rel)]).sum())
    idcg = float(discounts[: min(k, n_relevant)].sum())
    return dcg / idcg


def precision_recall(rel: np.ndarray, n_relevant: int) -> tuple[np.ndarray, np.ndarray]:
    """``(precision, recall)`` after each rank, float64 arrays of length ``len(rel)``."""
    rel = np.asarray(rel, dtype=bool)
    found = np.cumsum(rel)
    ranks = np.arange(1, len(rel) + 1)
    return found / ranks, found / max(n_relevant, 1)


def ranking_metrics(rel: np.ndarray, n_relevant: int, ks: Sequence[int]) -> dict[str, float | None]:
    """``ap``, ``recall@k`` and ``ndcg@k`` for each ``k`` of one query."""
    out: dict[str, float | None] = {"ap": average_precision(rel, n_relevant)}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(rel, n_relevant, k)
    for k in ks:
        out[f"ndcg@{k}"] = ndcg_at_k(rel, n_relevant, k)
    return out


def mean_metrics(rows: Sequence[Mapping[str, object]]) -> dict[str, float | None]:
    """Key-wise mean of metric dicts, skipping ``None`` values (None if a key has none)."""
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    out: dict[str, float | None] = {}
    for k in keys:
        vals = [v for r in rows if isinstance(v := r.get(k), (int, float))]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def chance_average_precision(n_relevant: int, n_ranked: int) -> float | None:
    """Expected :func:`average_precision` of a uniformly random order of ``n_ranked`` results of
    which ``n_relevant`` are relevant (each a distinct item):
    ``(R-1)/(N-1) + (N-R)/(N-1) * H_N/N`` with ``H_N`` the N-th harmonic number.

    (A relevant result at rank r has precision ``(1 + E[relevant before it]) / r`` with
    ``E[...] = (r-1)(R-1)/(N-1)``, and r is uniform on 1..N.)
    """
    if n_relevant <= 0:
        return None
    if n_relevant > n_ranked:
        raise ValueError(f"n_relevant {n_relevant} > n_ranked {n_ranked}")
    if n_ranked == 1:
        return 1.0
    r, n = n_relevant, n_ranked
    harmonic = float((1.0 / np.arange(1, n + 1)).sum())
    return (r - 1) / (n - 1) + (n - r) / (n - 1) * harmonic / n
