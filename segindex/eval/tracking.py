"""Video tracking quality: predicted tracks against ground-truth tracks, both YouTube-VIS.

Per ground-truth object (DAVIS, unsupervised protocol): each gt object is paired with at most
one predicted track of its video (the assignment maximising the summed J), then over the frames
where either is present J = mask IoU, F = boundary F-measure (tolerance 0.8 % of the diagonal)
and J&F their mean; an unpaired object scores 0. Over all objects and videos: HOTA (DetA,
AssA, LocA), IDF1 (IDP, IDR), ID switches, MOTA (see :mod:`.tracking_metrics`). Classes are
ignored (class-agnostic tracking), as for DAVIS.

:func:`compare_trackers` measures trackers apart from segmentation: it gives each tracker the
ground-truth masks of every frame (shuffled, some dropped) with a deterministic colour vector
per region, and evaluates the tracks it makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex import rle as rle_codec
from segindex.errors import ConfigError
from segindex.eval.tracking_metrics import (
    Frames,
    SequenceMetrics,
    clear,
    combine,
    hota,
    identity,
)
from segindex.formats.youtube_vis import VisDataset, VisTrack, VisVideo
from segindex.regions import Regions

Embed = Callable[[np.ndarray, Regions], np.ndarray]


def evaluate_tracking(
    pred: VisDataset, gt: VisDataset, *, threshold: float = 0.5, boundary: bool = True
) -> dict[str, Any]:
    """Compare ``pred`` with ``gt`` (same video ids and frame counts); ``threshold`` is the
    IoU a detection match needs for ID switches and IDF1. Returns a report dict
    (``kind = "tracking"``: ``summary``, ``per_object``, ``per_video``)."""
    pred_videos = {v.id: v for v in pred.videos}
    parts, per_object, per_video = [], [], []
    names = gt.category_names()
    for v in gt.videos:
        pv = pred_videos.get(v.id)
        if pv is not None and (pv.length, pv.height, pv.width) != (v.length, v.height, v.width):
            raise ConfigError(
                f"video {v.id}: prediction has {pv.length} frames of {pv.width}x{pv.height}, "
                f"ground truth {v.length} of {v.width}x{v.height}"
            )
        g_tracks = gt.tracks_of(v.id)
        p_tracks = pred.tracks_of(v.id) if pv is not None else []
        frames = _frames(g_tracks, p_tracks, v.length)
        part: SequenceMetrics = {"clear": clear(frames, threshold),
                                 "identity": identity(frames, threshold),
                                 "hota": hota(frames)}  # fmt: skip
        parts.append(part)
        objects = _davis(g_tracks, p_tracks, frames, boundary)
        for t, row in zip(g_tracks, objects, strict=True):
            per_object.append({"video_id": v.id, "gt_id": t.id,
                               "category": names.get(t.category_id, str(t.category_id)),
                               **row})  # fmt: skip
        per_video.append({"video_id": v.id, "file_name": v.file_name, "frames": v.length,
                          "gt_tracks": len(g_tracks), "pred_tracks": len(p_tracks),
                          **_headline(part)})  # fmt: skip
    total = combine(parts)
    summary = _headline(total)
    j = [o["J"] for o in per_object]
    f = [o["F"] for o in per_object if o["F"] is not None]
    summary = {"J&F": _mean([(a + b) / 2 for a, b in zip(j, f, strict=False)]) if boundary
               else None, "J": _mean(j), "F": _mean(f) if boundary else None,
               **summary}  # fmt: skip
    return {
        "kind": "tracking",
        "summary": summary,
        "counts": {
            "videos": len(gt.videos),
            "frames": sum(v.length for v in gt.videos),
            "gt_tracks": len(gt.tracks),
            "pred_tracks": len(pred.tracks),
        },  # fmt: skip
        "options": {"threshold": threshold},
        "per_video": per_video,
        "per_object": per_object,
        "totals": total,
    }


def align_to_gt(
    pred: VisDataset, gt: VisDataset, videos_root: str | Path | None = None
) -> tuple[VisDataset, VisDataset]:
    """Make ``pred`` (e.g. ``segindex export --format youtube-vis`` of an index) comparable
    with ``gt``: its videos are matched to the gt videos by file (``file_name``, relative to
    ``videos_root`` or as a trailing part of the path; by id where neither names files) and
    both are cut to the frames they share (by ``frame_indices``: the frames ingest sampled).
    Returns ``(pred, gt)`` with the gt's video ids; a gt video without a prediction keeps
    all its frames (its objects are all missed)."""
    from dataclasses import replace

    from segindex.formats.coco import ImageInfo, MaskSet

    named = [v for v in gt.videos if v.file_name is not None]
    infos = [ImageInfo(v.id, f, v.height, v.width) for v in named if (f := v.file_name) is not None]
    files = MaskSet(infos, [], {}, source="ground truth")
    match: dict[int, VisVideo] = {}  # gt video id -> pred video
    pv: VisVideo | None
    for pv in pred.videos:
        info = files.find(pv.file_name, videos_root) if pv.file_name and named else None
        gid = info.id if info is not None else (pv.id if not named or not pv.file_name else None)
        if gid is not None and any(v.id == gid for v in gt.videos):
            match[gid] = pv
    videos, g_tracks, p_tracks = [], [], []
    for gv in gt.videos:
        pv = match.get(gv.id)
        g_frames = gv.frame_indices or list(range(gv.length))
        if pv is None:
            videos.append(gv)
            g_tracks += gt.tracks_of(gv.id)
            continue
        p_frames = pv.frame_indices or list(range(pv.length))
        shared = sorted(set(g_frames) & set(p_frames))
        gk = [g_frames.index(f) for f in shared]
        pk = [p_frames.index(f) for f in shared]
        videos.append(
            replace(gv, file_names=[gv.file_names[k] for k in gk], frame_indices=shared,
                    times_s=None if gv.times_s is None else [gv.times_s[k] for k in gk])
        )  # fmt: skip
        for t in gt.tracks_of(gv.id):
            g_tracks.append(replace(t, segmentations=[t.segmentations[k] for k in gk]))
        for t in pred.tracks_of(pv.id):
            segs = [t.segmentations[k] for k in pk]
            p_tracks.append(replace(t, video_id=gv.id, segmentations=segs))
    keep = [t for t in g_tracks if any(s is not None for s in t.segmentations)]
    p_keep = [t for t in p_tracks if any(s is not None for s in t.segmentations)]
    return (
        VisDataset(videos, pred.categories, p_keep, pred.info),
        VisDataset(videos, gt.categories, keep, gt.info),
    )


def _headline(part: SequenceMetrics) -> dict[str, Any]:
    h, i, c = part["hota"], part["identity"], part["clear"]
    return {"HOTA": h["HOTA"], "DetA": h["DetA"], "AssA": h["AssA"], "LocA": h["LocA"],
            "IDF1": i["IDF1"], "IDP": i["IDP"], "IDR": i["IDR"], "ID switches": int(c["IDSW"]),
            "MOTA": c["MOTA"]}  # fmt: skip


def _frames(g_tracks: list[VisTrack], p_tracks: list[VisTrack], length: int) -> Frames:
    gt_ids, pred_ids, sims = [], [], []
    for f in range(length):
        g = [k for k, t in enumerate(g_tracks) if t.segmentations[f] is not None]
        p = [k for k, t in enumerate(p_tracks) if t.segmentations[f] is not None]
        sim = np.zeros((len(g), len(p)))
        if g and p:
            gr = [s for k in g if (s := g_tracks[k].segmentations[f]) is not None]
            pr = [s for k in p if (s := p_tracks[k].segmentations[f]) is not None]
            sim = rle_codec.iou(gr, pr)
        gt_ids.append(np.asarray(g, dtype=np.int64))
        pred_ids.append(np.asarray(p, dtype=np.int64))
        sims.append(sim)
    return Frames(gt_ids, pred_ids, sims, len(g_tracks), len(p_tracks))


def _davis(
    g_tracks: list[VisTrack], p_tracks: list[VisTrack], frames: Frames, boundary: bool
) -> list[dict[str, Any]]:
    """Per gt object: its paired predicted track, J, F, J&F and frame counts."""
    from scipy.optimize import linear_sum_assignment

    from segindex.eval.segmentation import boundary_f

    n_g, n_p = len(g_tracks), len(p_tracks)
    inter = np.zeros((n_g, n_p))  # sum over frames of IoU where both present
    g_len = np.array([sum(s is not None for s in t.segmentations) for t in g_tracks], float)
    p_len = np.array([sum(s is not None for s in t.segmentations) for t in p_tracks], float)
    both = np.zeros((n_g, n_p))
    for g, p, s in zip(frames.gt_ids, frames.pred_ids, frames.similarity, strict=True):
        if len(g) and len(p):
            inter[g[:, None], p[None, :]] += s
            both[g[:, None], p[None, :]] += 1
    # J of a pair = summed IoU / frames where either is present
    j_mat = inter / np.maximum(1.0, g_len[:, None] + p_len[None, :] - both)
    pair = np.full(n_g, -1)
    if n_g and n_p:
        rows, cols = linear_sum_assignment(-j_mat)
        ok = j_mat[rows, cols] > 0
        pair[rows[ok]] = cols[ok]
    out = []
    for k, t in enumerate(g_tracks):
        row: dict[str, Any] = {"frames": int(g_len[k]), "pred_track": None, "J": 0.0,
                               "F": 0.0 if boundary else None}  # fmt: skip
        if pair[k] >= 0:
            pt = p_tracks[pair[k]]
            row["pred_track"] = pt.id
            row["J"] = float(j_mat[k, pair[k]])
            if boundary:
                row["F"] = _mean_boundary_f(t, pt, boundary_f)
        row["J&F"] = (row["J"] + row["F"]) / 2 if boundary else None
        out.append(row)
    return out


def _mean_boundary_f(g: VisTrack, p: VisTrack, boundary_f: Callable[..., float]) -> float:
    scores = []
    for f, (gs, ps) in enumerate(zip(g.segmentations, p.segmentations, strict=True)):
        if gs is None and ps is None:
            continue
        gm, pm = g.mask(f), p.mask(f)
        shape = gm.shape if gm is not None else pm.shape  # type: ignore[union-attr]  # not both None: skipped above
        empty = np.zeros(shape, bool)
        scores.append(boundary_f(empty if gm is None else gm, empty if pm is None else pm))
    return float(np.mean(scores)) if scores else 0.0


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


# -- trackers on given masks --------------------------------------------------------------------


@dataclass(frozen=True)
class GivenMasksOptions:
    """How ground-truth masks are handed to the trackers.

    drop:     probability that a region is missing from a frame (a missed detection)
    noise:    probability that a region's mask is grown or shrunk by one pixel (an imprecise
              segmenter), so J and F fall below 1
    seed:     seed of the shuffling, dropping and noise (the same input for every tracker)
    every:    use every n-th annotated frame (sampling, as ingest's ``--video-fps`` does)
    """

    drop: float = 0.1
    noise: float = 0.3
    seed: int = 0
    every: int = 1


def compare_trackers(
    gt: VisDataset,
    clips_root: str | Path,
    trackers: Sequence[str] = ("iou", "none"),
    options: GivenMasksOptions | None = None,
    tracker_options: dict[str, dict[str, Any]] | None = None,
    embed: Embed | None = None,
    *,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Run each tracker on the ground-truth masks of every clip and evaluate its tracks.

    clips_root: folder the videos' ``file_name`` entries are relative to (the clips are
    decoded for the region vectors). ``embed(frame, regions)`` gives ``(N, D)`` float32
    L2-normalised vectors (default :func:`colour_vectors`). Returns a comparison report
    (``kind = "tracking"``) with one evaluation per tracker under ``trackers``.
    """
    from segindex.track import TRACKERS

    opts = options or GivenMasksOptions()
    if not trackers:
        raise ConfigError("name at least one tracker to run")
    if not 0 <= opts.drop < 1 or not 0 <= opts.noise <= 1 or opts.every < 1:
        raise ConfigError(
            f"need 0 <= drop < 1, 0 <= noise <= 1 and every >= 1, got {opts.drop}, "
            f"{opts.noise}, {opts.every}"
        )
    built = {n: TRACKERS.build(n, **(tracker_options or {}).get(n, {})) for n in trackers}
    sampled = _sampled(gt, opts.every)
    keep = any(t.needs_frames for t in built.values())  # a propagating tracker sees them all
    inputs = list(_given_frames(sampled, Path(clips_root), opts, embed or colour_vectors, keep))
    results = {}
    for name, tracker in built.items():
        pred = _run(tracker, sampled, inputs)
        result = evaluate_tracking(pred, sampled, threshold=threshold)
        results[name] = result | {"tracker": tracker.describe()}
    summary = {
        f"{name} {k}": r["summary"][k]
        for name, r in results.items()
        for k in ("J&F", "HOTA", "IDF1", "ID switches")
    }
    return {
        "kind": "tracking",
        "summary": summary,
        "counts": next(iter(results.values()))["counts"],
        "options": {"drop": opts.drop, "noise": opts.noise, "seed": opts.seed, "every": opts.every},
        "trackers": results,
    }


def colour_vectors(frame: np.ndarray, regions: Regions) -> np.ndarray:
    """``(N, 6)`` float32 L2-normalised vectors of the mean and standard deviation of each
    region's RGB pixels in ``frame`` (``HxWx3`` uint8): a deterministic fake embedder under
    which two copies of one cut-out look the same."""
    out = np.zeros((len(regions), 6), np.float32)
    for k, m in enumerate(regions.masks):
        px = frame[m].astype(np.float32) / 255.0 if m.any() else np.zeros((1, 3), np.float32)
        out[k] = np.concatenate([px.mean(0) - 0.5, px.std(0)])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-6)).astype(np.float32)


def _sampled(gt: VisDataset, every: int) -> VisDataset:
    if every == 1:
        return gt
    from dataclasses import replace

    videos = [
        replace(v, file_names=v.file_names[::every],
                frame_indices=(v.frame_indices or list(range(v.length)))[::every],
                times_s=None if v.times_s is None else v.times_s[::every])
        for v in gt.videos
    ]  # fmt: skip
    tracks = [replace(t, segmentations=t.segmentations[::every]) for t in gt.tracks]
    tracks = [t for t in tracks if any(s is not None for s in t.segmentations)]
    return VisDataset(videos, gt.categories, tracks, gt.info)


# video id, annotated frames, every decoded frame (index, time, pixels) when trackers need them
Given = tuple[int, list[tuple[int, float, Regions, np.ndarray]], list[tuple[int, float, Any]]]


def _given_frames(
    gt: VisDataset, root: Path, opts: GivenMasksOptions, embed: Embed, keep: bool = False
) -> Any:
    """Per video: per annotated frame ``(frame index, time, regions, vectors)``; the regions are
    the gt masks present, shuffled, some dropped; labels are the category names. With ``keep``
    also every decoded frame ``(index, time, HxWx3 uint8 RGB)`` (for mask propagation)."""
    from segindex.eval.makeset_video import read_clip
    from segindex.formats.youtube_vis import frame_regions

    names = gt.category_names()
    for v in gt.videos:
        if v.file_name is None:
            raise ConfigError(f"video {v.id} names no clip file (file_name): cannot embed")
        path = root / v.file_name
        if not path.is_file():
            raise ConfigError(f"clip {str(path)!r} of video {v.id} not found")
        rng = np.random.default_rng([opts.seed, v.id])
        wanted = v.frame_indices if v.frame_indices is not None else list(range(v.length))
        position = {int(fi): k for k, fi in enumerate(wanted)}
        out, every = [], []
        for index, time_s, pixels in read_clip(path):
            k = position.get(index)
            if keep:
                t = v.times_s[k] if k is not None and v.times_s is not None else time_s
                every.append((int(index), float(t), pixels))
            if k is None:
                continue
            tracks, masks = frame_regions(gt, v.id, k)
            order = rng.permutation(len(tracks))
            order = order[rng.random(len(order)) >= opts.drop]
            regions = Regions.from_masks(
                _noisy(rng, masks[order], opts.noise),
                labels=[names.get(tracks[i].category_id, "object") for i in order],
                label_ids=[tracks[i].category_id for i in order],
            )
            t = v.times_s[k] if v.times_s is not None else time_s
            out.append((int(index), float(t), regions, embed(pixels, regions)))
        if len(out) != v.length:
            raise ConfigError(
                f"clip {str(path)!r} has {len(out)} of the {v.length} annotated frames"
            )
        yield v.id, out, every


def _noisy(rng: np.random.Generator, masks: np.ndarray, p: float) -> np.ndarray:
    """``NxHxW`` bool masks, each grown or shrunk by one pixel with probability ``p`` (a mask
    that would vanish is kept)."""
    from scipy import ndimage

    out = masks.copy()
    for k in range(len(out)):
        if rng.random() >= p:
            continue
        op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        changed = op(out[k])
        if changed.any():
            out[k] = changed
    return out


def _run(tracker: Any, gt: VisDataset, inputs: list[Given]) -> VisDataset:
    from segindex.formats.youtube_vis import tracks_from_ids
    from segindex.track import summarise_track

    tracks: list[VisTrack] = []
    for video_id, frames, every in inputs:
        state = tracker.start()
        if tracker.needs_frames:
            sampled = {fi: (t, r, vec) for fi, t, r, vec in frames}
            ids, slot = [], None
            for fi, t, pixels in every:
                if tracker.frame_fps is not None and fi not in sampled:  # as the ingest does
                    if slot == (slot := math.floor(t * tracker.frame_fps + 1e-6)):
                        continue
                tracker.observe(state, fi, t, pixels)
                if fi in sampled:
                    ids.append(tracker.update(state, fi, *sampled[fi]))
        else:
            ids = [tracker.update(state, fi, t, r, vec) for fi, t, r, vec in frames]
        per_track: dict[int, list[tuple[str, int, float, np.ndarray, float]]] = {}
        for (_, t, r, vec), fids in zip(frames, ids, strict=True):
            for k, tid in enumerate(fids.tolist()):
                per_track.setdefault(tid, []).append(
                    (str(r.labels[k]), int(r.label_ids[k]), float(r.scores[k]), vec[k], t)
                )
        category = {}
        for tid, rows in per_track.items():
            labels, lids, scores, vecs, times = zip(*rows, strict=True)
            s = summarise_track(labels, lids, np.array(scores), np.stack(vecs), np.array(times))
            category[tid] = s.label_id
        new = tracks_from_ids(video_id, len(frames), ids, [r.masks for _, _, r, _ in frames],
                              category, first_id=len(tracks) + 1)  # fmt: skip
        tracks.extend(new)
    return VisDataset(list(gt.videos), list(gt.categories), tracks, {})
