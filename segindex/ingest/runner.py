"""The ingest runner: plan, then hand the planned images and videos to an engine.

    plan     -> which files are new, changed or moved   (segindex.ingest.plan)
    images   -> the engine's batches: decode, segment, crop, embed, name, write
                (segindex.ingest.local_engine by default; segindex.ingest.batch)
    videos   -> after the images, sampled, tracked, committed in chunks
                (segindex.ingest.video_runner, unless the engine runs them itself)

The runner owns the report and progress; an engine owns batching and timing. A failure of one
image (decode error, a backend choking on it) is recorded with its reason and the run goes on.
The "decode" stage time is the time an engine *waits* for pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.embed.base import Embedder
from segindex.images import discover, media_kind
from segindex.ingest.engine import IngestEngine
from segindex.ingest.job import ImageJob
from segindex.ingest.local_engine import LocalEngine
from segindex.ingest.plan import plan, relink_moved
from segindex.ingest.report import IngestProgress, IngestReport, StageTimer
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageWrite, Store, WriteResult


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
    :class:`~segindex.ingest.local_engine.LocalEngine`, this process)."""
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
