"""A video evaluation set that can be made offline: seeded clips of real cut-outs moving over
real backgrounds, with exact per-frame masks as YouTube-VIS ground truth.

Each clip plays one scenario (clip ``i`` plays ``SCENARIOS[i % 5]``):

straight         two objects on straight paths
curved           two objects on circular arcs
occlusion        a small object passes behind a large one (hidden for several frames)
enter_leave      one object crosses the frame from outside to outside, another leaves it
lookalike_cross  two copies of the same cut-out cross each other

Cut-outs and backgrounds are those of the image set (:mod:`segindex.eval.cutouts`); each
object gets one mild augmentation per clip and keeps it. Objects are drawn back to front, so an
object's mask in a frame is what is visible of it; a frame where fewer than ``MIN_PIXELS`` of
it are visible annotates it as absent (``None``).

Output (``OUT``)::

    videos/000000.mkv ...   the clips: FFV1 (lossless, so decoded pixels are exact), 10 fps
    youtube_vis.json        ground truth; each video names its file (``file_name``) and
                            the frame index and time of every annotated frame

The same ``seed`` gives byte-identical files (clip ``i`` depends only on ``(seed, i)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError

SCENARIOS = ("straight", "curved", "occlusion", "enter_leave", "lookalike_cross")
MIN_PIXELS = 8
Path2D = Callable[[float], tuple[float, float]]  # progress in [0, 1] -> object centre (x, y)


@dataclass(frozen=True)
class Mover:
    """An object of a clip: its cut-out (``hxwx3`` uint8 pixels, ``hxw`` bool mask), its
    category and its path; movers are drawn in list order (later ones in front)."""

    category: str
    pixels: np.ndarray
    mask: np.ndarray
    path: Path2D


def make_video_set(
    out: str | Path,
    n: int = 10,
    seed: int = 0,
    size: tuple[int, int] = (120, 160),
    fps: int = 10,
    shared_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``n`` clips of 2-4 s and their ground truth under ``out``; returns a summary."""
    from segindex.eval.cutouts import load_sources
    from segindex.eval.makeset import CATEGORIES, make_background
    from segindex.formats.youtube_vis import VisDataset, VisTrack, VisVideo, save_youtube_vis
    from segindex.rle import encode

    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    h, w = size
    if h < 48 or w < 64 or h % 2 or w % 2 or fps < 1:
        raise ConfigError(f"size must be at least 48x64 and even, fps >= 1; got {size}, {fps}")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    sources = load_sources(Path(shared_dir) if shared_dir is not None else None)
    cat_id = {c["name"]: c["id"] for c in CATEGORIES}
    videos: list[VisVideo] = []
    tracks: list[VisTrack] = []
    used: set[str] = set()
    counts = dict.fromkeys(SCENARIOS, 0)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        scenario = SCENARIOS[i % len(SCENARIOS)]
        counts[scenario] += 1
        length = int(rng.integers(2 * fps, 4 * fps + 1))
        _, src, _ = sources.backgrounds[int(rng.integers(len(sources.backgrounds)))]
        background = make_background(rng, src, size)
        movers = _scenario(rng, scenario, sources, size)
        frames, visible = render(background, movers, length)
        name = f"{i:06d}"
        write_clip(out / "videos" / f"{name}.mkv", frames, fps)
        videos.append(
            VisVideo(id=i + 1, width=w, height=h, file_name=f"videos/{name}.mkv",
                     file_names=[f"{name}/{f:05d}.png" for f in range(length)],
                     frame_indices=list(range(length)),
                     times_s=[round(f / fps, 6) for f in range(length)])
        )  # fmt: skip
        for k, mover in enumerate(movers):
            segs = [encode(m) if m.sum() >= MIN_PIXELS else None for m in visible[:, k]]
            if any(s is not None for s in segs):
                tracks.append(VisTrack(len(tracks) + 1, i + 1, cat_id[mover.category], segs))
                used.add(mover.category)
    categories = [
        {"id": c["id"], "name": c["name"], "supercategory": c["supercategory"]}
        for c in CATEGORIES
        if c["name"] in used
    ]
    info = {"description": "segindex moving cut-out video evaluation set", "seed": seed,
            "n": n, "fps": fps, "scenarios": counts,
            "video_scenarios": [SCENARIOS[i % len(SCENARIOS)] for i in range(n)]}  # fmt: skip
    gt = save_youtube_vis(VisDataset(videos, categories, tracks, info), out / "youtube_vis.json")
    return {"out": str(out), "videos": n, "tracks": len(tracks), "scenarios": counts,
            "frames": sum(v.length for v in videos), "gt": str(gt)}  # fmt: skip


def render(
    background: np.ndarray, movers: list[Mover], length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``length`` frames. Returns ``(length, H, W, 3)`` uint8 RGB frames and
    ``(length, len(movers), H, W)`` bool visible masks."""
    h, w = background.shape[:2]
    frames = np.empty((length, h, w, 3), np.uint8)
    visible = np.zeros((length, len(movers), h, w), bool)
    for f in range(length):
        canvas = background.copy()
        progress = f / max(1, length - 1)
        for k, m in enumerate(movers):
            cx, cy = m.path(progress)
            oh, ow = m.mask.shape
            y0, x0 = int(round(cy - oh / 2)), int(round(cx - ow / 2))
            ys, xs = slice(max(0, y0), min(h, y0 + oh)), slice(max(0, x0), min(w, x0 + ow))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                continue
            sub = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
            pasted = np.zeros((h, w), bool)
            pasted[ys, xs] = m.mask[sub]
            canvas[ys, xs][m.mask[sub]] = m.pixels[sub][m.mask[sub]]
            visible[f, :k] &= ~pasted
            visible[f, k] = pasted
        frames[f] = canvas
    return frames, visible


def write_clip(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode ``(T, H, W, 3)`` uint8 RGB frames losslessly (FFV1 in Matroska, bit-exact)."""
    av = _av()
    _, h, w, _ = frames.shape
    with av.open(str(path), "w", format="matroska", options={"fflags": "+bitexact"}) as c:
        stream = c.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for frame in frames:
            c.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(stream.encode())


def read_clip(path: str | Path) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode a clip as ``(frame index, time in seconds, HxWx3 uint8 RGB)``, one frame at a
    time."""
    av = _av()
    with av.open(str(path)) as c:
        for index, frame in enumerate(c.decode(video=0)):
            yield index, float(frame.time or 0.0), frame.to_ndarray(format="rgb24")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ConfigError("video clips need PyAV (pip install av)") from None
    return av


def _scenario(
    rng: np.random.Generator, scenario: str, sources: Any, size: tuple[int, int]
) -> list[Mover]:
    h, w = size
    small = min(h, w)

    def inside(margin: float = 0.2) -> tuple[float, float]:
        return (float(rng.uniform(margin * w, (1 - margin) * w)),
                float(rng.uniform(margin * h, (1 - margin) * h)))  # fmt: skip

    def obj(
        side: float, path: Path2D, cut: tuple[str, np.ndarray, np.ndarray] | None = None
    ) -> Mover:
        cat, pixels, mask = cut if cut is not None else _cutout(rng, sources, side)
        return Mover(cat, pixels, mask, path)

    if scenario == "straight":
        return [obj(rng.uniform(0.25, 0.4) * small, _line(inside(), inside())) for _ in range(2)]
    if scenario == "curved":
        movers = []
        for _ in range(2):
            centre, r = inside(0.4), rng.uniform(0.15, 0.3) * small
            a0, sweep = (
                rng.uniform(0, 2 * np.pi),
                rng.choice([-1, 1]) * rng.uniform(np.pi, 2 * np.pi),
            )
            movers.append(obj(rng.uniform(0.25, 0.35) * small, _arc(centre, r, a0, sweep)))
        return movers
    if scenario == "occlusion":
        y = float(rng.uniform(0.4, 0.6) * h)
        back = obj(0.25 * small, _line((0.12 * w, y), (0.88 * w, y + rng.uniform(-5, 5))))
        front = obj(0.6 * small, _line((0.5 * w, 0.5 * h), (0.5 * w + rng.uniform(-6, 6), 0.5 * h)))
        return [back, front]
    if scenario == "enter_leave":
        y = float(rng.uniform(0.3, 0.7) * h)
        side = rng.uniform(0.25, 0.35) * small
        crossing = obj(side, _line((-0.6 * side, y), (w + 0.6 * side, y + rng.uniform(-10, 10))))
        start = inside()
        leaving = obj(side, _line(start, (start[0] + rng.uniform(-20, 20), h + 0.6 * side)))
        return [leaving, crossing]
    if scenario == "lookalike_cross":
        cut = _cutout(rng, sources, rng.uniform(0.25, 0.35) * small)
        y1, y2 = (float(rng.uniform(0.35, 0.65) * h) for _ in range(2))
        return [obj(0, _line((0.15 * w, y1), (0.85 * w, y2)), cut),
                obj(0, _line((0.85 * w, y1 + 4), (0.15 * w, y2 - 4)), cut)]  # fmt: skip
    raise ConfigError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")


def _cutout(
    rng: np.random.Generator, sources: Any, side: float
) -> tuple[str, np.ndarray, np.ndarray]:
    from segindex.eval.augment import Augment, augment
    from segindex.eval.makeset import pick_cutout

    names = sorted(k for k, v in sources.things.items() if v) + ["ball"]
    name = names[int(rng.integers(len(names)))]
    cut = pick_cutout(rng, sources, name, side)
    mild = Augment(max_rotation=15.0, brightness=(0.8, 1.2), contrast=(0.8, 1.2),
                   saturation=(0.8, 1.2), max_hue=0.05, blur_p=0.0)  # fmt: skip
    c = augment(rng, cut, side, mild)
    return name, c.pixels, c.mask


def _line(a: tuple[float, float], b: tuple[float, float]) -> Path2D:
    return lambda p: (a[0] + p * (b[0] - a[0]), a[1] + p * (b[1] - a[1]))


def _arc(centre: tuple[float, float], r: float, a0: float, sweep: float) -> Path2D:
    return lambda p: (
        centre[0] + r * np.cos(a0 + p * sweep),
        centre[1] + r * np.sin(a0 + p * sweep),
    )
