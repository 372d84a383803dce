"""Multi-object tracking metrics on one sequence of frames: CLEAR MOT (ID switches, MOTA),
identity (IDF1) and HOTA, following the TrackEval reference definitions.

A :class:`Frames` holds, per frame ``t``, the ground-truth ids present ``gt_ids[t]`` (int64,
``0 .. n_gt - 1``), the predicted ids present ``pred_ids[t]`` (``0 .. n_pred - 1``) and their
``(len(gt_ids[t]), len(pred_ids[t]))`` float64 similarity (mask IoU) ``similarity[t]``.
Each metric returns counts that add over sequences (:func:`combine`) and the ratios made
from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

#: the localisation thresholds HOTA averages over (TrackEval: 0.05, 0.10, ..., 0.95)
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Frames:
    gt_ids: list[np.ndarray]
    pred_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    n_gt: int
    n_pred: int

    def __post_init__(self) -> None:
        if not len(self.gt_ids) == len(self.pred_ids) == len(self.similarity):
            raise ValueError("gt_ids, pred_ids and similarity need one entry per frame")
        for t, (g, p, s) in enumerate(
            zip(self.gt_ids, self.pred_ids, self.similarity, strict=True)
        ):
            if s.shape != (len(g), len(p)):
                raise ValueError(f"frame {t}: similarity {s.shape} for {len(g)} gt, {len(p)} pred")
            if (len(g) and g.max() >= self.n_gt) or (len(p) and p.max() >= self.n_pred):
                raise ValueError(f"frame {t}: an id is out of range")


def clear(frames: Frames, threshold: float = 0.5) -> dict[str, float]:
    """CLEAR MOT: a gt and a prediction match in a frame when their similarity is at least
    ``threshold``; the previous frame's matches are kept when still possible, the rest solved by
    maximum similarity. An ID switch is a gt matched to another prediction than the one it was
    last matched to (any number of frames before). Returns TP, FN, FP, IDSW, MOTA, MOTP."""
    from scipy.optimize import linear_sum_assignment

    tp = fn = fp = idsw = 0
    motp_sum = 0.0
    last = np.full(frames.n_gt, -1)  # last prediction each gt was matched to (-1: never)
    prev = np.full(frames.n_gt, -1)  # its match in the last frame that had gt and predictions
    for g, p, s in zip(frames.gt_ids, frames.pred_ids, frames.similarity, strict=True):
        if not len(g) or not len(p):  # as TrackEval: such a frame leaves ``prev`` as it is
            fn += len(g)
            fp += len(p)
            continue
        score = 1000.0 * (prev[g][:, None] == p[None, :]) + s
        score[s < threshold - _EPS] = 0.0
        rows, cols = linear_sum_assignment(-score)
        keep = score[rows, cols] > _EPS
        rows, cols = rows[keep], cols[keep]
        gm, pm = g[rows], p[cols]
        idsw += int(((last[gm] >= 0) & (last[gm] != pm)).sum())
        last[gm] = pm
        prev[:] = -1
        prev[gm] = pm
        tp += len(rows)
        fn += len(g) - len(rows)
        fp += len(p) - len(rows)
        motp_sum += float(s[rows, cols].sum())
    counts: dict[str, float] = {"TP": tp, "FN": fn, "FP": fp, "IDSW": idsw, "MOTP_sum": motp_sum}
    return _clear_ratios(counts)


def _clear_ratios(c: dict[str, float]) -> dict[str, float]:
    n_gt = c["TP"] + c["FN"]
    c["MOTA"] = (c["TP"] - c["FP"] - c["IDSW"]) / max(1, n_gt)
    c["MOTP"] = c["MOTP_sum"] / max(1, c["TP"])
    return c


def identity(frames: Frames, threshold: float = 0.5) -> dict[str, float]:
    """ID metrics: the one-to-one gt-to-prediction identity assignment that maximises the
    frames where they match (similarity >= ``threshold``); IDTP, IDFN, IDFP, IDF1, IDP, IDR."""
    from scipy.optimize import linear_sum_assignment

    gt_count, pred_count, both = _counts(frames, lambda s: (s >= threshold - _EPS).astype(float))
    if both.size:
        rows, cols = linear_sum_assignment(-both)
        idtp = float(both[rows, cols].sum())
    else:
        idtp = 0.0
    c = {"IDTP": idtp, "IDFN": gt_count.sum() - idtp, "IDFP": pred_count.sum() - idtp}
    return _identity_ratios(c)


def _identity_ratios(c: dict[str, float]) -> dict[str, float]:
    c["IDF1"] = c["IDTP"] / max(1.0, c["IDTP"] + 0.5 * c["IDFP"] + 0.5 * c["IDFN"])
    c["IDR"] = c["IDTP"] / max(1.0, c["IDTP"] + c["IDFN"])
    c["IDP"] = c["IDTP"] / max(1.0, c["IDTP"] + c["IDFP"])
    return c


def hota(frames: Frames) -> dict[str, float | list[float]]:
    """HOTA (higher order tracking accuracy) with DetA, AssA and LocA, averaged over
    :data:`HOTA_ALPHAS`; also the per-alpha counts ``TP``, ``FN``, ``FP`` and ``AssA_sum``
    (AssA times TP) lists that :func:`combine` adds up."""
    from scipy.optimize import linear_sum_assignment

    def soft(s: np.ndarray) -> np.ndarray:
        denom = s.sum(0)[None, :] + s.sum(1)[:, None] - s
        out = np.zeros_like(s)
        ok = denom > _EPS
        out[ok] = s[ok] / denom[ok]
        return out

    gt_count, pred_count, potential = _counts(frames, soft)
    global_score = potential / np.maximum(_EPS, gt_count[:, None] + pred_count[None, :] - potential)
    na = len(HOTA_ALPHAS)
    tp, fn, fp, loc = np.zeros(na), np.zeros(na), np.zeros(na), np.zeros(na)
    matches = np.zeros((na, frames.n_gt, frames.n_pred))
    for g, p, s in zip(frames.gt_ids, frames.pred_ids, frames.similarity, strict=True):
        if not len(g) or not len(p):
            fn += len(g)
            fp += len(p)
            continue
        rows, cols = linear_sum_assignment(-(global_score[g[:, None], p[None, :]] * s))
        for a, alpha in enumerate(HOTA_ALPHAS):
            ok = s[rows, cols] >= alpha - _EPS
            r, c = rows[ok], cols[ok]
            tp[a] += len(r)
            fn[a] += len(g) - len(r)
            fp[a] += len(p) - len(r)
            loc[a] += float(s[r, c].sum())
            matches[a, g[r], p[c]] += 1
    ass_sum = np.zeros(na)
    for a in range(na):
        m = matches[a]
        ass = m / np.maximum(1.0, gt_count[:, None] + pred_count[None, :] - m)
        ass_sum[a] = float((m * ass).sum())
    return _hota_ratios({"TP": tp.tolist(), "FN": fn.tolist(), "FP": fp.tolist(),
                         "LocA_sum": loc.tolist(), "AssA_sum": ass_sum.tolist()})  # fmt: skip


def _hota_ratios(c: dict[str, list[float]]) -> dict[str, float | list[float]]:
    tp, fn, fp = (np.asarray(c[k]) for k in ("TP", "FN", "FP"))
    det = tp / np.maximum(1.0, tp + fn + fp)
    ass = np.asarray(c["AssA_sum"]) / np.maximum(1.0, tp)
    loc = np.where(tp > 0, np.asarray(c["LocA_sum"]) / np.maximum(1.0, tp), 1.0)
    out: dict[str, float | list[float]] = dict(c)
    out |= {"HOTA": float(np.sqrt(det * ass).mean()), "DetA": float(det.mean()),
            "AssA": float(ass.mean()), "LocA": float(loc.mean())}  # fmt: skip
    return out


class SequenceMetrics(TypedDict):
    """The metrics of one sequence, or of several added up by :func:`combine`."""

    clear: dict[str, float]
    identity: dict[str, float]
    hota: dict[str, float | list[float]]


def combine(parts: Sequence[SequenceMetrics]) -> SequenceMetrics:
    """Add the counts of per-sequence results ``{"clear": .., "identity": .., "hota": ..}`` and
    recompute the ratios (as TrackEval combines sequences)."""
    clear_keys = ("TP", "FN", "FP", "IDSW", "MOTP_sum")
    c = {k: sum(float(p["clear"][k]) for p in parts) for k in clear_keys}
    i = {k: sum(float(p["identity"][k]) for p in parts) for k in ("IDTP", "IDFN", "IDFP")}
    h = {
        k: np.sum([np.asarray(p["hota"][k]) for p in parts], axis=0).tolist()
        if parts
        else [0.0] * len(HOTA_ALPHAS)
        for k in ("TP", "FN", "FP", "LocA_sum", "AssA_sum")
    }
    return {"clear": _clear_ratios(c), "identity": _identity_ratios(i), "hota": _hota_ratios(h)}


def _counts(
    frames: Frames, weight: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames each gt id and each predicted id is present in, and the ``(n_gt, n_pred)`` sum
    over frames of ``weight(similarity)``."""
    gt_count = np.zeros(frames.n_gt)
    pred_count = np.zeros(frames.n_pred)
    acc = np.zeros((frames.n_gt, frames.n_pred))
    for g, p, s in zip(frames.gt_ids, frames.pred_ids, frames.similarity, strict=True):
        gt_count[g] += 1
        pred_count[p] += 1
        if len(g) and len(p):
            acc[g[:, None], p[None, :]] += weight(s)
    return gt_count, pred_count, acc
