"""The video source: a file decoded as a stream with PyAV and sampled, never all frames in memory.

Every frame has an index (0-based, presentation order) and a time in seconds (its ``pts`` times
the stream's ``time_base``: right for variable frame rate). Frames are turned upright by the
display matrix (phone videos) before anything sees them. Sampling, in order:

1. ``fps``: the timeline is cut into slots of ``1 / fps`` seconds (slot ``floor(t * fps)``); the
   first decoded frame of a slot is a candidate, the others are not even converted to RGB;
2. ``dedup_threshold``: a candidate whose 32x32 grey thumbnail differs from the last *kept*
   sample's by less than the threshold (mean absolute difference in grey levels) is dropped;
3. ``max_frames``: sampling stops after that many kept frames.

With ``keyframes_only`` the decoder outputs key frames only (PyAV ``skip_frame = "NONKEY"``;
intra-only codecs such as FFV1 output every frame); a frame's index is the number of packets
before its own in decoding order (the presentation index for closed GOPs, which is what
encoders write by default).

The sampler's state (:class:`SamplerState`) is plain data so a video can be resumed after a
crash: frames up to ``last_frame`` are decoded again (to count them) but not sampled.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.config import VideoOptions
from segindex.errors import VideoDecodeError

THUMB = 32  # side of the grey thumbnail compared for near-duplicates
_SLOT_EPS = 1e-6  # a frame at t = k / fps exactly belongs to slot k despite float rounding


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video.

    width, height: of the upright frames (after ``rotation``), pixels
    duration_s:    stream (or container) duration in seconds; ``None`` if unknown
    fps:           the stream's average frame rate; ``None`` if unknown
    rotation:      display-matrix rotation in degrees counter-clockwise (0, 90, 180, 270)
    """

    width: int
    height: int
    duration_s: float | None
    fps: float | None
    rotation: int


@dataclass
class SampledFrame:
    """One kept frame: ``index`` (presentation order), ``time_s`` (pts x time_base) and
    ``image``, ``HxWx3`` uint8 RGB, upright."""

    index: int
    time_s: float
    image: np.ndarray
    pts: int | None = None  # in the stream's time_base; where a resume seeks to


@dataclass
class SamplerState:
    """Where sampling stands in one video (JSON-able through :meth:`to_dict`).

    last_frame: index of the last frame already handled (kept and committed); -1 at the start
    last_pts:   that frame's pts (stream time_base), so a resume can seek near it; or ``None``
    last_slot:  ``floor(t * fps)`` of the last candidate; ``None`` before the first
    kept:       frames kept so far
    thumb:      ``(32, 32)`` uint8 grey thumbnail of the last kept frame, or ``None``
    """

    last_frame: int = -1
    last_pts: int | None = None
    last_slot: int | None = None
    kept: int = 0
    thumb: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        thumb = None if self.thumb is None else base64.b64encode(self.thumb.tobytes()).decode()
        return {
            "last_frame": self.last_frame,
            "last_pts": self.last_pts,
            "last_slot": self.last_slot,
            "kept": self.kept,
            "thumb": thumb,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplerState:
        thumb = d.get("thumb")
        return cls(
            last_frame=int(d["last_frame"]),
            last_pts=None if d.get("last_pts") is None else int(d["last_pts"]),
            last_slot=None if d.get("last_slot") is None else int(d["last_slot"]),
            kept=int(d["kept"]),
            thumb=None
            if thumb is None
            else np.frombuffer(base64.b64decode(thumb), np.uint8).reshape(THUMB, THUMB).copy(),
        )


def error_reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


def decode_errors() -> tuple[type[BaseException], ...]:
    import av

    return (av.FFmpegError, OSError, ValueError, EOFError)


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """``HxWx3`` turned counter-clockwise by ``rotation`` degrees (a multiple of 90), as the
    display matrix asks; a C-contiguous copy when turned."""
    quarter = round(rotation / 90) % 4
    if quarter == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=quarter))


def _rotation(frame: Any) -> int:
    """The frame's display-matrix rotation, counter-clockwise degrees snapped to 0/90/180/270."""
    value = getattr(frame, "rotation", 0) or 0
    return (round(float(value) / 90) * 90) % 360


def thumbnail(frame: Any) -> np.ndarray:
    """``(32, 32)`` uint8 grey thumbnail of a PyAV frame (swscale; no full-size RGB made)."""
    small = frame.reformat(width=THUMB, height=THUMB, format="gray")
    return np.ascontiguousarray(small.to_ndarray()[:THUMB, :THUMB], dtype=np.uint8)


def probe(path: str | Path, max_pixels: int | None = None) -> VideoInfo:
    """Open the video and decode its first frame for its upright size and rotation.

    Raises :class:`VideoDecodeError` (naming the file) when it cannot be opened, has no video
    stream or no decodable frame, or has more than ``max_pixels`` pixels per frame."""
    import av

    name = str(path)
    try:
        with av.open(name) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"cannot decode video {name!r}: no video stream")
            stream = container.streams.video[0]
            first = next(container.decode(stream), None)
            if first is None:
                raise VideoDecodeError(f"cannot decode video {name!r}: no decodable frame")
            rotation = _rotation(first)
            w, h = int(first.width), int(first.height)
            if rotation in (90, 270):
                w, h = h, w
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            fps = float(stream.average_rate) if stream.average_rate else None
    except VideoDecodeError:
        raise
    except decode_errors() as e:
        raise VideoDecodeError(f"cannot decode video {name!r}: {error_reason(e)}") from e
    if max_pixels is not None and w * h > max_pixels:
        raise VideoDecodeError(
            f"{name!r} has {w * h:,} pixels per frame, more than the limit {max_pixels:,}"
        )
    return VideoInfo(width=w, height=h, duration_s=duration, fps=fps, rotation=rotation)


def _decoded(container: Any, stream: Any, keyframes_only: bool) -> Iterator[tuple[int, Any]]:
    """``(frame index, PyAV frame)`` in presentation order."""
    if not keyframes_only:
        for i, frame in enumerate(container.decode(stream)):
            yield i, frame
        return
    stream.codec_context.skip_frame = "NONKEY"
    packets = 0
    position: dict[int | None, int] = {}  # pts -> decoding-order position, until output
    last = -1
    for packet in container.demux(stream):
        if packet.size > 0:  # the final empty packet flushes the decoder
            position[packet.pts] = packets
            packets += 1
        for frame in packet.decode():
            index = max(position.pop(frame.pts, packets - 1), last + 1)  # strictly increasing
            if frame.pts is not None:  # skipped packets shown before this one: forget them
                for pts in [p for p in position if p is not None and p < frame.pts]:
                    del position[pts]
            last = index
            yield index, frame


def _after(container: Any, stream: Any, pts: int, index: int) -> Iterator[tuple[int, Any]] | None:
    """Resume without decoding from the start: seek to the key frame at or before the committed
    frame (``pts``, frame ``index``), decode up to it, and continue numbering from there.
    ``None`` when that frame is not found exactly where expected (then decode from the start)."""
    try:
        container.seek(pts, stream=stream, backward=True)
    except decode_errors():
        return None
    frames = container.decode(stream)
    for frame in frames:
        if frame.pts is None or frame.pts > pts:
            return None
        if frame.pts == pts:
            return enumerate(frames, start=index + 1)
    return None


def sample_frames(
    path: str | Path,
    options: VideoOptions,
    state: SamplerState,
    on_duplicate: Callable[[float], None] | None = None,
) -> Iterator[SampledFrame]:
    """Decode ``path`` as a stream and yield the kept frames after ``state.last_frame``,
    updating ``state`` (``last_slot``, ``kept``, ``thumb``; the caller sets ``last_frame`` when
    a frame is committed). ``on_duplicate(time_s)`` is called for each candidate dropped as a
    near-duplicate of the last kept frame (whose content is then still on screen at ``time_s``).
    Raises :class:`VideoDecodeError` when decoding fails.

    Resuming (``state.last_frame >= 0``) seeks to the key frame before ``state.last_pts`` when
    all frames are decoded; with ``keyframes_only``, or when the seek does not land as
    expected, the video is decoded from its start and the frames up to ``last_frame`` skipped."""
    name = str(path)
    try:
        yield from _sample(name, options, state, on_duplicate)
    except VideoDecodeError:
        raise
    except decode_errors() as e:
        raise VideoDecodeError(f"cannot decode video {name!r}: {error_reason(e)}") from e


def _open(name: str) -> tuple[Any, Any]:
    import av

    container = av.open(name)
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"cannot decode video {name!r}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _sample(
    name: str,
    options: VideoOptions,
    state: SamplerState,
    on_duplicate: Callable[[float], None] | None,
) -> Iterator[SampledFrame]:
    fps = options.fps
    step = 1.0 / fps
    previous_time: float | None = None
    container, stream = _open(name)
    try:
        decoded = None
        if state.last_frame >= 0 and state.last_pts is not None and not options.keyframes_only:
            decoded = _after(container, stream, state.last_pts, state.last_frame)
            if decoded is None:  # start over in a fresh demuxer
                container.close()
                container, stream = _open(name)
        if decoded is None:
            decoded = _decoded(container, stream, options.keyframes_only)
        for index, frame in decoded:
            if options.max_frames is not None and state.kept >= options.max_frames:
                return
            time_s = frame.time
            if time_s is None:  # no pts: one nominal frame after the previous one
                time_s = 0.0 if previous_time is None else previous_time + step
            previous_time = time_s = float(time_s)
            if index <= state.last_frame:
                continue
            slot = math.floor(time_s * fps + _SLOT_EPS)
            if state.last_slot is not None and slot <= state.last_slot:
                continue
            state.last_slot = slot
            if options.dedup_threshold > 0:
                thumb = thumbnail(frame)
                if state.thumb is not None:
                    diff = np.abs(thumb.astype(np.int16) - state.thumb.astype(np.int16))
                    if float(diff.mean()) < options.dedup_threshold:
                        if on_duplicate is not None:
                            on_duplicate(time_s)
                        continue
                state.thumb = thumb
            state.kept += 1
            image = upright(frame.to_ndarray(format="rgb24"), _rotation(frame))
            yield SampledFrame(index=index, time_s=time_s, image=image, pts=frame.pts)
    finally:
        container.close()
