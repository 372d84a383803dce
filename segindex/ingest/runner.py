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
from dataclasses import fields
from pathlib import Path

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.device import backend_device
from segindex.embed.base import Embedder
from segindex.images import discover, media_kind
from segindex.ingest.batch import DecodedImage, model_stages
from segindex.ingest.engine import ImageJob, IngestEngine, LocalEngine
from segindex.ingest.plan import plan, relink_moved
from segindex.ingest.prefetch import Decoded, Prefetcher
from segindex.ingest.report import IngestProgress, IngestReport, StageTimer
from segindex.ingest.video_runner import VideoContext, ingest_video
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageState, ImageWrite, Store, WriteResult, db_path


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
    engine: IngestEngine | None = None,
) -> IngestReport:
    """Ingest files/folders/globs into ``store``; ``on_commit`` mirrors each batch into vectors.

    ``labels`` names class-agnostic segments (SAM's) by CLIP zero-shot right after the embed
    stage (:mod:`segindex.labels`); ``None`` leaves them as the segmenter returned them.
    Files that are videos by content (:func:`segindex.images.media_kind`) are sampled, tracked
    and committed in chunks as ``video`` says (:mod:`segindex.ingest.video_runner`), after the
    images. ``engine`` runs the images' model stages (:mod:`segindex.ingest.engine`; default:
    :class:`~segindex.ingest.engine.LocalEngine`, this process)."""
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
    job = ImageJob(
        store=store,
        segmenter=segmenter,
        embedder=embedder,
        crop=crop,
        runtime=runtime,
        labels=labels,
        on_commit=on_commit,
        report=report,
        timer=timer,
        tick=tick,
    )
    run_on = engine or LocalEngine()
    with run_on.session():
        run_on.run_images(todo, job)
        if videos:
            run_on.run_videos(videos, known, job, video)
    report.seconds = time.perf_counter() - t_start
    return report


def run_local_videos(
    videos: list[tuple[str, str]], known: dict[str, ImageState], job: ImageJob, video: VideoOptions
) -> None:
    """The local engine's videos: one at a time (each is batched across its own frames)."""
    ctx = video_context(job, video)
    for path, sha in videos:
        job.tick(path)
        ingest_video(ctx, path, sha, known.get(db_path(path)))


def video_context(job: ImageJob, video: VideoOptions) -> VideoContext:
    """What the videos of one ingest share: ``job``'s store, models and report, the tracker
    (built once) and the batch sizes for the models' devices."""
    from segindex.track import build_tracker

    segment_batch, embed_batch = job.runtime.batch_sizes(
        backend_device(job.segmenter), backend_device(job.embedder)
    )
    return VideoContext(
        **{f.name: getattr(job, f.name) for f in fields(job)},
        tracker=build_tracker(
            video.tracker.name,
            video.tracker.options,
            device=job.runtime.device,
            precision=job.runtime.precision,
        ),
        video=video,
        segment_batch=segment_batch,
        embed_batch=embed_batch,
    )


def run_local(todo: list[tuple[str, str]], job: ImageJob) -> None:
    """The local engine: batches of ``runtime.commit_every`` images in this process, decoded one
    batch ahead by ``runtime.decode_processes`` worker processes."""
    step = job.runtime.commit_every
    batches = [todo[i : i + step] for i in range(0, len(todo), step)]
    workers = job.runtime.decode_processes
    prefetch = Prefetcher(
        workers, job.runtime.max_pixels, job.segmenter.preprocessor() if workers > 0 else None
    )
    try:
        _run_batches(batches, prefetch, job)
    finally:
        prefetch.close()


def count_written(report: IngestReport, writes: list[ImageWrite]) -> None:
    """Add a committed batch to the report: indexed images, their segments, failures."""
    for w in writes:
        if w.error is not None:
            report.failures.append((db_path(w.path), w.error))
        else:
            report.indexed += 1
            report.regions += list(w.kinds).count("segment")


def _run_batches(batches: list[list[tuple[str, str]]], prefetch: Prefetcher, job: ImageJob) -> None:
    """The per-batch stages. Batch 0 is decoded inline (the pool starts meanwhile); each later
    batch was submitted to the decode workers before the previous one went to the models."""
    segment_batch, embed_batch = job.runtime.batch_sizes(
        backend_device(job.segmenter), backend_device(job.embedder)
    )
    futures: list[Future[Decoded]] | None = None
    for b, batch in enumerate(batches):
        writes: list[ImageWrite] = []
        decoded: list[DecodedImage] = []
        with job.timer("decode"):
            for path, sha, result in prefetch.take(batch, futures):
                if isinstance(result, str):
                    writes.append(ImageWrite(path=path, sha256=sha, error=result))
                else:
                    decoded.append(DecodedImage(path, sha, *result))
        futures = prefetch.submit(batches[b + 1]) if b + 1 < len(batches) else None
        writes += model_stages(
            decoded,
            segmenter=job.segmenter,
            embedder=job.embedder,
            crop=job.crop,
            max_regions=job.runtime.max_regions,
            labels=job.labels,
            segment_batch=segment_batch,
            embed_batch=embed_batch,
            timer=job.timer,
        )
        with job.timer("write"):
            job.on_commit(job.store.write(writes))
        count_written(job.report, writes)
        job.tick()
