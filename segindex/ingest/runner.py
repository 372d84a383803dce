"""The ingest runner: stages composed over batches of images.

    plan     -> which files are new or changed        (segindex.ingest.plan)
    decode   -> HxWx3 uint8 RGB, one batch ahead       (segindex.ingest.prefetch)
    segment, crop, embed, name                         (segindex.ingest.stages)
    write    -> one SQL transaction per batch, then the FAISS mirror (segindex.store)

Each stage is a plain function; the runner owns batching, timing and progress. A failure of one
image (decode error, a backend choking on it) is recorded with its reason and the run goes on.
The "decode" stage time is the time the runner *waits* for pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.device import backend_device
from segindex.embed.base import Embedder
from segindex.images import discover, media_kind
from segindex.ingest.plan import plan, relink_moved
from segindex.ingest.prefetch import Decoded, Prefetcher
from segindex.ingest.report import IngestProgress, IngestReport, StageTimer
from segindex.ingest.stages import Cropped, crop_stage, embed_stage, name_stage, segment_safely
from segindex.ingest.video_runner import VideoContext, ingest_video
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageState, ImageWrite, Store, WriteResult, db_path


@dataclass
class _Decoded:
    path: str
    sha256: str
    image: np.ndarray
    prepared: Any = None  # the segmenter's network input, made in a decode worker


def run_ingest(
    sources: Iterable[str | Path],
    *,
    store: Store,
    segmenter: Segmenter,
    embedder: Embedder,
    crop: CropPolicy,
    runtime: RuntimeOptions,
    on_commit: Callable[[WriteResult], None],
    progress: Callable[[IngestProgress], None] | None = None,
    retry_failed: bool = False,
    labels: LabelPolicy | None = LabelPolicy(),  # noqa: B008 - frozen, so safe as a default
    video: VideoOptions = VideoOptions(),  # noqa: B008 - frozen, so safe as a default
) -> IngestReport:
    """Ingest files/folders/globs into ``store``; ``on_commit`` mirrors each batch into vectors.

    ``labels`` names class-agnostic segments (SAM's) by CLIP zero-shot right after the embed
    stage (:mod:`segindex.labels`); ``None`` leaves them as the segmenter returned them.
    Files that are videos by content (:func:`segindex.images.media_kind`) are sampled, tracked
    and committed in chunks as ``video`` says (:mod:`segindex.ingest.video_runner`), after the
    images."""
    report = IngestReport()
    timer = StageTimer(report)
    t_start = time.perf_counter()
    paths = discover(sources)
    report.seen = len(paths)
    with timer("hash"):
        known = store.image_states()
        todo, report.skipped, unreadable = plan(paths, known, retry_failed)
        before = len(todo)
        todo = relink_moved(todo, known, store)
        report.relinked = before - len(todo)
        videos = [(p, s) for p, s in todo if media_kind(p) == "video"]
        if videos:
            is_video = set(videos)
            todo = [item for item in todo if item not in is_video]
    for path, reason in unreadable:
        report.failures.append((path, reason))
    if unreadable:
        on_commit(store.write([ImageWrite(path=p, sha256=None, error=r) for p, r in unreadable]))

    def tick(current: str | None = None) -> None:
        if progress is not None:
            progress(
                IngestProgress(
                    total=report.seen,
                    done=report.indexed + report.failed + report.skipped + report.relinked,
                    skipped=report.skipped,
                    failed=report.failed,
                    regions=report.regions,
                    elapsed=time.perf_counter() - t_start,
                    frames=report.frames,
                    current=current,
                )
            )

    tick()
    step = runtime.commit_every
    batches = [todo[i : i + step] for i in range(0, len(todo), step)]
    workers = runtime.decode_processes
    prefetch = Prefetcher(
        workers, runtime.max_pixels, segmenter.preprocessor() if workers > 0 else None
    )
    try:
        _run_batches(
            batches,
            prefetch,
            store=store,
            segmenter=segmenter,
            embedder=embedder,
            crop=crop,
            runtime=runtime,
            on_commit=on_commit,
            labels=labels,
            report=report,
            timer=timer,
            tick=tick,
        )
    finally:
        prefetch.close()
    if videos:
        _run_videos(
            videos,
            known,
            store=store,
            segmenter=segmenter,
            embedder=embedder,
            crop=crop,
            runtime=runtime,
            on_commit=on_commit,
            labels=labels,
            video=video,
            report=report,
            timer=timer,
            tick=tick,
        )
    report.seconds = time.perf_counter() - t_start
    return report


def _run_videos(
    videos: list[tuple[str, str]],
    known: dict[str, ImageState],
    *,
    video: VideoOptions,
    tick: Callable[[str | None], None],
    **shared: Any,
) -> None:
    """One video at a time (each is batched across its own frames); the tracker is built once."""
    from segindex.track import TRACKERS

    segment_batch, embed_batch = shared["runtime"].batch_sizes(
        backend_device(shared["segmenter"]), backend_device(shared["embedder"])
    )
    ctx = VideoContext(
        tracker=TRACKERS.build(video.tracker.name, **video.tracker.options),
        video=video,
        tick=tick,
        segment_batch=segment_batch,
        embed_batch=embed_batch,
        **shared,
    )
    for path, sha in videos:
        tick(path)
        ingest_video(ctx, path, sha, known.get(db_path(path)))


def _run_batches(
    batches: list[list[tuple[str, str]]],
    prefetch: Prefetcher,
    *,
    store: Store,
    segmenter: Segmenter,
    embedder: Embedder,
    crop: CropPolicy,
    runtime: RuntimeOptions,
    on_commit: Callable[[WriteResult], None],
    labels: LabelPolicy | None,
    report: IngestReport,
    timer: StageTimer,
    tick: Callable[[], None],
) -> None:
    """The per-batch stages. Batch 0 is decoded inline (the pool starts meanwhile); each later
    batch was submitted to the decode workers before the previous one went to the models."""
    crop_meta = crop.to_dict()
    segment_batch, embed_batch = runtime.batch_sizes(
        backend_device(segmenter), backend_device(embedder)
    )
    futures: list[Future[Decoded]] | None = None
    for b, batch in enumerate(batches):
        writes: list[ImageWrite] = []
        decoded: list[_Decoded] = []
        with timer("decode"):
            for path, sha, result in prefetch.take(batch, futures):
                if isinstance(result, str):
                    writes.append(ImageWrite(path=path, sha256=sha, error=result))
                else:
                    decoded.append(_Decoded(path, sha, *result))
        futures = prefetch.submit(batches[b + 1]) if b + 1 < len(batches) else None
        with timer("segment"):
            segs = segment_safely(
                segmenter,
                [d.image for d in decoded],
                segment_batch,
                paths=[d.path for d in decoded],
                prepared=[d.prepared for d in decoded],
            )
        pending: list[tuple[_Decoded, Cropped]] = []
        with timer("crop"):
            for d, seg in zip(decoded, segs, strict=True):
                h, w = d.image.shape[:2]
                if isinstance(seg, str):
                    writes.append(
                        ImageWrite(path=d.path, sha256=d.sha256, width=w, height=h, error=seg)
                    )
                    continue
                pending.append((d, crop_stage(d.image, seg, crop, runtime.max_regions)))
        with timer("embed"):
            vectors = embed_stage(embedder, [c for _, c in pending], embed_batch, segmenter)
        for (d, item), vecs in zip(pending, vectors, strict=True):
            h, w = d.image.shape[:2]
            writes.append(
                ImageWrite(
                    path=d.path,
                    sha256=d.sha256,
                    width=w,
                    height=h,
                    regions=name_stage(item, vecs, embedder, labels),
                    kinds=item.kinds,
                    vectors=vecs,
                    crop=crop_meta,
                )
            )
            report.indexed += 1
            report.regions += item.kinds.count("segment")
        with timer("write"):
            on_commit(store.write(writes))
        report.failures.extend((db_path(w.path), w.error) for w in writes if w.error is not None)
        tick()
