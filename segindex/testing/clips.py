"""Small generated video clips with known content, for tests and examples (PyAV encodes them).

:func:`moving_squares` draws frame ``i``: a red square moving right 2 px per frame and a static
blue square on a grey background, palette colours of :mod:`segindex.testing.fakes`, so the fake
segmenter finds exactly three regions per frame and each object is one track.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from segindex.testing.fakes import draw_scene

#: codec -> (container suffix, pixel format): ``ffv1`` is lossless and intra-only (exact colours,
#: every frame a key frame); ``mpeg4`` is lossy with key frames every ``gop`` frames
CODECS = {
    "ffv1": ("mkv", "bgr0"),
    "mpeg4": ("mp4", "yuv420p"),
    "libx264": ("mp4", "yuv420p"),
    "libvpx": ("webm", "yuv420p"),  # VP8: what every browser plays
}


def moving_squares(i: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Frame ``i`` as ``HxWx3`` uint8 RGB: red 12x12 square at ``x = 2 + 2 i`` (wrapping),
    blue 10x10 square fixed at the bottom right, grey background."""
    h, w = size
    x = 2 + (2 * i) % max(1, w - 16)
    return draw_scene(
        [("red", (x, 4, x + 12, 16)), ("blue", (w - 14, h - 14, w - 4, h - 4))],
        size=size,
        background="gray",
    )


def write_clip(
    path: str | Path,
    n_frames: int,
    *,
    fps: int = 10,
    codec: str = "ffv1",
    times_s: Sequence[float] | None = None,
    gop: int = 5,
    rotation: int = 0,
    draw: Callable[[int], np.ndarray] = moving_squares,
) -> Path:
    """Encode ``n_frames`` frames ``draw(i)`` (``HxWx3`` uint8 RGB, even sides) to ``path``.

    ``times_s`` gives each frame's presentation time (variable frame rate; millisecond
    precision), else frame ``i`` is at ``i / fps``. ``rotation`` writes a display matrix
    (degrees counter-clockwise, as PyAV's ``VideoFrame.rotation`` reads it back). Frames are
    drawn one at a time, so a long clip costs no memory."""
    import av

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    if times_s is not None and len(times_s) != n_frames:
        raise ValueError(f"times_s has {len(times_s)} times for {n_frames} frames")
    path = Path(path)
    first = draw(0)
    h, w = first.shape[:2]
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = CODECS[codec][1]
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.codec_context.gop_size = gop
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            image = first if i == 0 else draw(i)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            t = times_s[i] if times_s is not None else i / fps
            frame.pts = round(t * 1000)
            frame.time_base = tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
