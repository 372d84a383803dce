"""Ingest of one video: sampled frames through the same stages as images, tracked, committed in
chunks.

    probe    -> size, rotation, duration (segindex.ingest.video)         [new or restarted video]
    sample   -> kept frames, one at a time from a PyAV stream             (segindex.ingest.video)
    segment, crop, embed, name  -> the images' model stages, batched across frames
                                                                          (segindex.ingest.batch)
    track    -> tracker-local ids per frame, frame by frame in time order (segindex.track)
    write    -> every ``VideoOptions.chunk`` sampled frames ONE transaction: the chunk's frame
                regions, the tracks it extends (re-summarised), and the sampler + tracker state
                (segindex.store.video)

A SIGKILL loses at most the chunk in flight: the next ingest finds the video ``"partial"`` with
the same sha256, reloads the sampler and tracker state, and continues after the last committed
frame, so a track spanning the kill stays one track. Only the frames of a group
(``min(chunk, RuntimeOptions.commit_every)`` frames) are held as pixels at once; a chunk holds
its frames as encoded rows (RLE masks), so memory does not grow with the video's length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from segindex.config import VideoOptions
from segindex.errors import ConfigError, ModelLoadError, VideoDecodeError
from segindex.formats.frame_ref import FrameRef
from segindex.ingest.batch import DecodedImage, ModelStages
from segindex.ingest.frame_feed import FrameFeed
from segindex.ingest.job import ImageJob
from segindex.ingest.video import SampledFrame, SamplerState, probe, sample_frames
from segindex.store.sql import ImageState, ImageWrite, db_path
from segindex.store.video import FrameWrite, VideoRow, begin_video, resume_state, write_chunk
from segindex.track.base import Tracker


@dataclass
class VideoContext(ImageJob):
    """What every video of one ingest shares: the ingest's job (store, models and options,
    report), plus the tracker, the video options and the model stages (with their batch
    sizes)."""

    tracker: Tracker[Any]
    video: VideoOptions
    stages: ModelStages

    @classmethod
    def of(cls, job: ImageJob, video: VideoOptions) -> VideoContext:
        """What the videos of ``job`` share: its store, models and report, the tracker (built
        once) and the model stages for the models' devices."""
        from segindex.track import build_tracker

        return cls(
            **{f.name: getattr(job, f.name) for f in fields(job)},
            tracker=build_tracker(
                video.tracker.name,
                video.tracker.options,
                device=job.runtime.device,
                precision=job.runtime.precision,
            ),
            video=video,
            stages=job.model_stages(),
        )


def ingest_videos(
    videos: list[tuple[str, str]], known: dict[str, ImageState], job: ImageJob, video: VideoOptions
) -> None:
    """The planned videos in this process, one at a time (each batched across its own
    frames): what an engine does with videos unless it says otherwise."""
    ctx = VideoContext.of(job, video)
    for path, sha in videos:
        job.tick(path)
        ingest_video(ctx, path, sha, known.get(db_path(path)))


def ingest_video(ctx: VideoContext, path: str, sha256: str, known: ImageState | None) -> None:
    """Ingest (or resume) one video; a decode, model or tracker failure on it is recorded as the
    video's failure (its partial rows dropped) and the run goes on."""
    try:
        _ingest(ctx, path, sha256, known)
    except VideoDecodeError as e:
        _fail(ctx, path, sha256, str(e))
    except (ModelLoadError, ConfigError):
        raise  # the setup is wrong, not this video: stop the run
    except Exception as e:  # noqa: BLE001 - e.g. a tracker choking on it: this video fails
        _fail(ctx, path, sha256, f"video ingest failed: {type(e).__name__}: {e}")


def _fail(ctx: VideoContext, path: str, sha256: str, reason: str) -> None:
    with ctx.timer("write"):
        ctx.on_commit(
            ctx.store.write([ImageWrite(path=path, sha256=sha256, error=reason, media="video")])
        )
    ctx.report.failures.append((db_path(path), reason))
    ctx.tick(None)


@dataclass
class _Held:
    """Near-duplicates dropped by the sampler, by the kept frame they repeat: that frame's
    tracks are still on screen at the duplicate's time, so their ``end_s`` extends to it.

    ``last``: index of the last kept frame yielded; ``times``: kept frame index -> time of its
    latest duplicate; ``prev``: (index, tracker-local ids) of the last frame already written."""

    last: int
    prev: tuple[int, list[int]]
    times: dict[int, float] = field(default_factory=dict)

    def duplicate(self, time_s: float) -> None:
        self.times[self.last] = time_s

    def resolve(self, chunk: list[FrameWrite]) -> dict[int, float]:
        """``tracker-local id -> time`` to extend, for the frames of ``chunk`` (and ``prev``);
        ``prev`` becomes the chunk's last frame."""
        ids = {self.prev[0]: self.prev[1]}
        ids.update({f.frame_index: [int(i) for i in f.local_ids if i >= 0] for f in chunk})
        extend: dict[int, float] = {}
        for index, t in self.times.items():
            for lid in ids.get(index, []):
                extend[lid] = max(t, extend.get(lid, t))
        self.times.clear()
        if chunk:
            self.prev = (chunk[-1].frame_index, ids[chunk[-1].frame_index])
        return extend


def _resume(ctx: VideoContext, known: ImageState | None, sha256: str) -> tuple[int, Any] | None:
    """``(image id, (sampler state, tracker state, last frame's track ids))`` of a partial video
    to continue, or None."""
    if known is None or known.status != "partial" or known.sha256 != sha256:
        return None
    saved = resume_state(ctx.store, known.id)
    if saved is None:
        return None
    try:
        return known.id, (
            SamplerState.from_dict(saved["sampler"]),
            ctx.tracker.load(saved["tracker"]),
            [int(i) for i in saved.get("last_ids", [])],
        )
    except (ConfigError, KeyError, TypeError, ValueError):  # another tracker, or old state
        return None


def _ingest(ctx: VideoContext, path: str, sha256: str, known: ImageState | None) -> None:
    resumed = _resume(ctx, known, sha256)
    if resumed is not None:
        image_id, (sampler, tstate, last_ids) = resumed
    else:
        with ctx.timer("decode"):
            info = probe(path, ctx.runtime.max_pixels)
        row = VideoRow(info.width, info.height, info.duration_s, info.fps, info.rotation)
        with ctx.timer("write"):
            image_id, result = begin_video(ctx.store, path, sha256, row)
            ctx.on_commit(result)
        sampler, tstate, last_ids = SamplerState(), ctx.tracker.start(), []
    held = _Held(last=sampler.last_frame, prev=(sampler.last_frame, last_ids))
    frames = sample_frames(path, ctx.video, sampler, on_duplicate=held.duplicate)
    feed = _feed(ctx, path, sampler.last_frame, tstate)
    group_size = min(ctx.video.chunk, ctx.runtime.commit_every)
    chunk: list[FrameWrite] = []
    while True:
        group = _take(ctx, frames, min(group_size, ctx.video.chunk - len(chunk)), held)
        if group:
            chunk.extend(_process(ctx, path, image_id, group, tstate, feed))
            sampler.last_frame, sampler.last_pts = group[-1].index, group[-1].pts
        final = len(group) == 0
        if len(chunk) >= ctx.video.chunk or final:
            if final and feed is not None:
                with ctx.timer("track"):
                    feed.rest()
            extend = held.resolve(chunk)
            starts = _spans(ctx, tstate, extend)
            state = None
            if not final:
                state = {
                    "sampler": sampler.to_dict(),
                    "tracker": ctx.tracker.dump(tstate),
                    "last_ids": held.prev[1],
                }
            with ctx.timer("write"):
                ctx.on_commit(
                    write_chunk(
                        ctx.store,
                        image_id,
                        chunk,
                        state=state,
                        last_frame=sampler.last_frame,
                        extend_end=extend,
                        extend_start=starts,
                    )
                )
            ctx.report.frames += len(chunk)
            ctx.report.regions += sum(int((f.local_ids >= 0).sum()) for f in chunk)
            chunk = []
            if final:
                ctx.report.indexed += 1
                ctx.report.videos += 1
                ctx.tick(None)
                return
            ctx.tick(path)


def _take(
    ctx: VideoContext, frames: Iterator[SampledFrame], n: int, held: _Held
) -> list[SampledFrame]:
    group: list[SampledFrame] = []
    with ctx.timer("decode"):
        for frame in frames:
            held.last = frame.index
            group.append(frame)
            if len(group) >= n:
                break
    return group


def _feed(ctx: VideoContext, path: str, after: int, tstate: Any) -> FrameFeed | None:
    """The frames between samples for a tracker that propagates masks (``needs_frames``)."""
    if not ctx.tracker.needs_frames:
        return None

    def observe(index: int, time_s: float, image: Any) -> None:
        ctx.tracker.observe(tstate, index, time_s, image)

    return FrameFeed(path, after, observe, ctx.tracker.frame_fps)


def _spans(ctx: VideoContext, tstate: Any, extend: dict[int, float]) -> dict[int, float]:
    """Merge the tracker's exact spans (mask propagation) into ``extend`` (ends, in place);
    returns the starts to move down."""
    starts: dict[int, float] = {}
    for lid, (start_s, end_s) in ctx.tracker.take_spans(tstate).items():
        extend[lid] = max(end_s, extend.get(lid, end_s))
        starts[lid] = start_s
    return starts


def _process(
    ctx: VideoContext,
    path: str,
    image_id: int,
    group: list[SampledFrame],
    tstate: Any,
    feed: FrameFeed | None = None,
) -> list[FrameWrite]:
    """The image model stages over a group of frames (:class:`~segindex.ingest.batch.
    ModelStages`, batched across frames exactly like images), then the tracker frame by frame
    in time order. A frame the models fail on fails the video."""
    decoded = [DecodedImage(FrameRef(path, f.index).to_str(), "", f.image) for f in group]
    writes = ctx.stages.run(decoded, ctx.timer)
    by_path = {w.path: w for w in writes}
    out: list[FrameWrite] = []
    crop_meta = ctx.crop.to_dict()
    for f, d in zip(group, decoded, strict=True):
        w = by_path[d.path]
        if w.error is not None or w.regions is None or w.vectors is None:
            raise VideoDecodeError(f"frame {f.index} ({f.time_s:.3f} s): {w.error}")
        kinds = np.asarray(w.kinds)
        segments = np.flatnonzero(kinds == "segment")
        local = np.full(len(w.regions), -1, dtype=np.int64)
        with ctx.timer("track"):
            if feed is not None:
                feed.until(f)
            local[segments] = ctx.tracker.update(
                tstate,
                f.index,
                f.time_s,
                w.regions[segments],
                np.ascontiguousarray(w.vectors[segments], dtype=np.float32),
            )
        encoded = FrameWrite.encode(
            image_id, f.index, f.time_s, w.regions, w.kinds, w.vectors, local, crop_meta
        )
        out.append(encoded)
    return out
