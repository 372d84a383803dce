"""Compositional video queries with known answers: seeded clips of coloured squares that appear
and disappear at known times, and scene queries over time (``red WITH blue``, ``red WITH blue
DURING 2s``, ``red THEN blue WITHIN 3s``, ``red WITH blue DURING 2s THEN green WITHIN 3s``) with
their exact relevant clips.

Each clip (:data:`LENGTH` frames at :data:`FPS`) holds 2-4 tracks of different colours of
:data:`~segindex.eval.makeset_scenes.CLASSES`, one per horizontal lane (so they never overlap),
each present on one contiguous run of frames and moving a pixel per frame. A track's span is
``[first frame, last frame] / FPS`` seconds. Relevant clips follow the algebra's definitions:

    a WITH b DURING d     the spans overlap by >= d seconds (``WITH`` alone: d = 0)
    a THEN b WITHIN w     b's track starts after a's, at most w seconds later

Layouts where two tracks come within 0.6 s of a decision (an overlap near 0 or near 2 s, a
start-to-start lag near 0 or near 3 s) are redrawn, so the answer does not hinge on whether a span
ends at its last frame or one frame later.

Output (``OUT``)::

    videos/000000.mkv ...   the clips (FFV1, lossless)
    youtube_vis.json        per-frame masks of every track (for the ``youtube_vis`` segmenter)
    scenes.json             ``info`` (``scope``: ``videos``) and ``queries`` as in the image set,
                            relevant: the clips' file names under ``videos/``

Ingest with ``--video-fps 4 --dedup-threshold 0`` (every frame sampled, none skipped as a
near-duplicate) so the indexed spans are the drawn ones. The same ``seed`` gives byte-identical
files.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError
from segindex.eval.makeset_scenes import BACKGROUND, CLASSES

FPS = 4
LENGTH = 32  # frames: 8 s
SIDE = 10  # square side, pixels
MIN_FRAMES = 10  # shortest track
DURING_S, WITHIN_S = 2.0, 3.0
BAND_S = 0.6
VIDEO_TYPES: tuple[str, ...] = ("with", "during", "then", "during_then")
Span = tuple[int, int]  # first and last frame (inclusive)


def overlap_s(a: Span, b: Span) -> float:
    """Seconds two spans overlap (negative: the gap between them)."""
    return (min(a[1], b[1]) - max(a[0], b[0])) / FPS


def lag_s(a: Span, b: Span) -> float:
    """Seconds from the start of ``a`` to the start of ``b``."""
    return (b[0] - a[0]) / FPS


def _clear(a: Span, b: Span) -> bool:
    o, lag = overlap_s(a, b), lag_s(a, b)
    near = [(o, 0.0), (o, DURING_S), (lag, 0.0), (lag, WITHIN_S), (-lag, WITHIN_S)]
    return all(abs(x - t) >= BAND_S for x, t in near)


def clip_spans(rng: np.random.Generator) -> dict[str, Span]:
    """Colour -> span of each track of one clip."""
    for _ in range(100):
        colours = [CLASSES[i] for i in rng.permutation(len(CLASSES))[: int(rng.integers(2, 5))]]
        spans: dict[str, Span] = {}
        for c in colours:
            start = int(rng.integers(0, LENGTH - MIN_FRAMES + 1))
            spans[c] = (start, int(rng.integers(start + MIN_FRAMES - 1, LENGTH)))
        if all(_clear(spans[a], spans[b]) for a, b in itertools.combinations(spans, 2)):
            return spans
    raise RuntimeError("no clear layout in 100 draws")  # pragma: no cover


def video_truth(spec: dict[str, Any], spans: dict[str, Span]) -> bool:
    """Whether a clip with tracks ``spans`` is relevant to the query ``spec``."""
    t, a, b, c = spec["type"], spec["a"], spec["b"], spec.get("c")
    if a not in spans or b not in spans:
        return False
    if t == "with":
        return overlap_s(spans[a], spans[b]) >= 0
    if t == "during":
        return overlap_s(spans[a], spans[b]) >= DURING_S
    if t == "then":
        return 0 < lag_s(spans[a], spans[b]) <= WITHIN_S
    if t == "during_then":
        ok = overlap_s(spans[a], spans[b]) >= DURING_S
        return ok and c in spans and 0 < lag_s(spans[b], spans[c]) <= WITHIN_S
    raise ValueError(f"video query type must be one of {VIDEO_TYPES}, got {t!r}")


def render_video(spec: dict[str, Any], min_similarity: float | None = None) -> str:
    """The scene-syntax text of a video query ``spec``; with ``min_similarity``, every object
    word carries it (``red~0.3``)."""

    def word(c: str) -> str:
        return c if min_similarity is None else f"{c}~{min_similarity:g}"

    t, a, b = spec["type"], word(spec["a"]), word(spec["b"])
    if t == "with":
        return f"{a} WITH {b}"
    if t == "during":
        return f"{a} WITH {b} DURING {DURING_S:g}s"
    if t == "then":
        return f"{a} THEN {b} WITHIN {WITHIN_S:g}s"
    return f"{a} WITH {b} DURING {DURING_S:g}s THEN {word(spec['c'])} WITHIN {WITHIN_S:g}s"


def _frames(
    rng: np.random.Generator, spans: dict[str, Span], size: tuple[int, int]
) -> tuple[np.ndarray, dict[str, list[np.ndarray | None]]]:
    from segindex.testing.fakes import PALETTE

    h, w = size
    lane = h // len(CLASSES)
    frames = np.empty((LENGTH, h, w, 3), np.uint8)
    frames[:] = PALETTE[BACKGROUND]
    masks: dict[str, list[np.ndarray | None]] = {c: [None] * LENGTH for c in spans}
    for c, (s, e) in spans.items():
        y0 = CLASSES.index(c) * lane + (lane - SIDE) // 2
        x = int(rng.integers(0, w - SIDE - (e - s) - 1))
        for f in range(s, e + 1):
            x0 = x + (f - s)
            frames[f, y0 : y0 + SIDE, x0 : x0 + SIDE] = PALETTE[c]
            m = np.zeros(size, bool)
            m[y0 : y0 + SIDE, x0 : x0 + SIDE] = True
            masks[c][f] = m
    return frames, masks


def make_video_scene_set(
    out: str | Path, n: int = 60, seed: int = 0, per_type: int = 6
) -> dict[str, Any]:
    """Write ``n`` clips, their ground truth and up to ``per_type`` queries of each of
    :data:`VIDEO_TYPES` under ``out``; returns a summary dict."""
    from segindex.eval.makeset_video import write_clip
    from segindex.formats.youtube_vis import VisDataset, VisTrack, VisVideo, save_youtube_vis
    from segindex.rle import encode

    if n < 2 or per_type < 1:
        raise ConfigError(f"n must be >= 2 and per_type >= 1, got {n}, {per_type}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    size = (4 * 16, 96)
    videos: list[VisVideo] = []
    tracks: list[VisTrack] = []
    clips: list[tuple[str, dict[str, Span]]] = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        spans = clip_spans(rng)
        frames, masks = _frames(rng, spans, size)
        name = f"{i:06d}.mkv"
        write_clip(out / "videos" / name, frames, FPS)
        videos.append(VisVideo(id=i + 1, width=size[1], height=size[0],
                               file_name=f"videos/{name}",
                               file_names=[f"{i:06d}/{f:05d}.png" for f in range(LENGTH)],
                               frame_indices=list(range(LENGTH)),
                               times_s=[round(f / FPS, 6) for f in range(LENGTH)]))  # fmt: skip
        for c in sorted(spans, key=CLASSES.index):
            segs = [None if m is None else encode(m) for m in masks[c]]
            tracks.append(VisTrack(len(tracks) + 1, i + 1, CLASSES.index(c) + 1, segs))
        clips.append((name, spans))
    cats = [{"id": k + 1, "name": c, "supercategory": "colour"} for k, c in enumerate(CLASSES)]
    info = {"description": "segindex compositional video evaluation set", "seed": seed, "n": n,
            "fps": FPS, "length": LENGTH, "scope": "videos", "media": "videos",
            "classes": list(CLASSES)}  # fmt: skip
    save_youtube_vis(VisDataset(videos, cats, tracks, info), out / "youtube_vis.json")
    specs: list[dict[str, Any]] = []
    for a, b in itertools.permutations(CLASSES, 2):
        specs += [{"type": t, "a": a, "b": b} for t in ("with", "during", "then") if t != "with"
                  or a < b]  # fmt: skip
        specs += [{"type": "during_then", "a": a, "b": b, "c": c} for c in CLASSES
                  if c not in (a, b)]  # fmt: skip
    rng = np.random.default_rng([seed, n, 2])
    queries: list[dict[str, Any]] = []
    for t in VIDEO_TYPES:
        pool = []
        for spec in (s for s in specs if s["type"] == t):
            relevant = [name for name, spans in clips if video_truth(spec, spans)]
            if 0 < len(relevant) < n:
                pool.append({"spec": spec, "relevant": relevant})
        for j in sorted(rng.permutation(len(pool))[:per_type].tolist()):
            queries.append({"id": len(queries), "type": t, "text": render_video(pool[j]["spec"]),
                            **pool[j]})  # fmt: skip
    (out / "scenes.json").write_text(
        json.dumps({"info": info, "queries": queries}, sort_keys=True, separators=(",", ":"))
    )
    types: dict[str, int] = {}
    for q in queries:
        types[q["type"]] = types.get(q["type"], 0) + 1
    return {"out": str(out), "videos": n, "tracks": len(tracks), "queries": len(queries),
            "query_types": types, "gt": str(out / "youtube_vis.json"),
            "scenes": str(out / "scenes.json"), "videos_root": str(out / "videos")}  # fmt: skip
