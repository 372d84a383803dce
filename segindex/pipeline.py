"""The ingest runner: stages composed over batches of images.

    plan     -> which files are new or changed (sha256 of the bytes identifies an image)
    decode   -> HxWx3 uint8 RGB                       (segindex.images, in worker processes)
    segment  -> Regions per image                      (segindex.segment)
    crop     -> one picture per region + whole image   (segindex.crop)
    embed    -> L2-normalised vectors, many images' crops per batch (segindex.embed)
    write    -> one SQL transaction per batch, then the FAISS mirror (segindex.store)

Each stage is a plain function; the runner owns batching, timing and progress. A failure of one
image (decode error, a backend choking on it) is recorded with its reason and the run goes on.

Decoding overlaps the model work: while batch ``i`` is segmented and embedded, batch ``i + 1`` is
decoded by ``RuntimeOptions.decode_workers`` spawned processes (never more than one batch ahead,
so memory stays flat), which also resize and normalise each image for the segmenter when it
has a :meth:`~segindex.segment.base.Segmenter.preprocessor`. The "decode" stage time is then
the time the runner *waits* for pixels.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions
from segindex.crop import crop_all, crop_whole, keep_large
from segindex.device import backend_device
from segindex.embed.base import Embedder
from segindex.errors import ImageDecodeError, ModelLoadError
from segindex.images import discover, file_sha256, load_image
from segindex.labels import name_class_agnostic
from segindex.regions import Regions
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageState, ImageWrite, Store, WriteResult, db_path

STAGES = ("hash", "decode", "segment", "crop", "embed", "write")


@dataclass
class IngestProgress:
    """Snapshot passed to progress callbacks after each batch."""

    total: int
    done: int
    skipped: int
    failed: int
    regions: int
    elapsed: float


@dataclass
class IngestReport:
    """What an ingest did. ``failures`` are ``(path, reason)``; ``stage_seconds`` per stage."""

    seen: int = 0
    indexed: int = 0
    skipped: int = 0
    relinked: int = 0  # moved files re-linked to their indexed image by sha256, no model run
    failures: list[tuple[str, str]] = field(default_factory=list)
    regions: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "seen": self.seen,
            "indexed": self.indexed,
            "skipped": self.skipped,
            "relinked": self.relinked,
            "failed": self.failed,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "regions": self.regions,
            "seconds": round(self.seconds, 4),
            "images_per_second": round(self.images_per_second, 4),
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
        }


class _Timer:
    def __init__(self, report: IngestReport) -> None:
        self.report = report

    def __call__(self, stage: str) -> _Stage:
        return _Stage(self.report, stage)


class _Stage:
    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.stage_seconds[self.stage] += time.perf_counter() - self.t0


@dataclass
class _Decoded:
    path: str
    sha256: str
    image: np.ndarray
    prepared: Any = None  # the segmenter's network input, made in a decode worker


def _exit_with_parent() -> None:
    """In a decode worker: end this process when the ingesting process dies (even by SIGKILL),
    so no orphan outlives it holding its stdout/stderr open."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="segindex-parent-watch", daemon=True).start()


#: in a decode worker: the segmenter's preprocessor, received once at start (see _init_worker)
_WORKER_PREPARE: Callable[[np.ndarray], Any] | None = None


def _init_worker(prepare_blob: bytes | None) -> None:
    """Decode worker start: die with the parent; unpickle the segmenter's preprocessor once.

    The preprocessor arrives pickled as bytes so it is unpickled here, after the worker's
    torch is limited to one thread (``OMP_NUM_THREADS`` must be set before torch is imported):
    a worker's resizing should not compete with the models' threads."""
    global _WORKER_PREPARE
    _exit_with_parent()
    if prepare_blob is None:
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        _WORKER_PREPARE = pickle.loads(prepare_blob)
    except Exception:  # noqa: BLE001 - then images go to the segmenter unprepared
        _WORKER_PREPARE = None


def _decode_in_worker(path: str, max_pixels: int | None) -> Decoded:
    return decode_and_prepare(path, max_pixels, _WORKER_PREPARE)


def decode_one(path: str, max_pixels: int | None) -> np.ndarray | str:
    """Decode one file to ``HxWx3`` uint8 RGB, or the reason it cannot be (``ImageDecodeError``).

    Module-level so spawned worker processes can run it; any other exception propagates."""
    try:
        return load_image(path, max_pixels=max_pixels)
    except ImageDecodeError as e:
        return str(e)


#: what the decode stage yields per image: pixels and the segmenter's prepared input (``None``
#: when decoded inline or without a preprocessor), or the reason the file cannot be decoded
Decoded = tuple[np.ndarray, Any] | str


def decode_and_prepare(
    path: str, max_pixels: int | None, prepare: Callable[[np.ndarray], Any] | None
) -> Decoded:
    """:func:`decode_one`, then the segmenter's ``prepare`` (resize, normalise) on the pixels,
    in the worker process. A ``prepare`` failure leaves it to the segmenter (``None``), which
    then prepares the image itself and reports any error as that image's failure."""
    pixels = decode_one(path, max_pixels)
    if isinstance(pixels, str):
        return pixels
    prepared = None
    if prepare is not None:
        try:
            prepared = prepare(pixels)
        except Exception:  # noqa: BLE001 - the segmenter retries and reports it
            prepared = None
    return pixels, prepared


class _Prefetcher:
    """Decodes batches of ``(path, sha256)``: ``submit`` starts one in the worker pool, ``take``
    returns its ``(path, sha256, (pixels, prepared) or reason)`` in order. Workers also run the
    segmenter's ``prepare`` (resize, normalise). With ``workers == 0``, or after the pool broke
    (a worker killed, e.g. out of memory), decoding happens inline in ``take``, unprepared."""

    def __init__(
        self,
        workers: int,
        max_pixels: int | None,
        prepare: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.workers, self.max_pixels, self.prepare = workers, max_pixels, prepare
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor | None:
        if self.workers > 0 and self._pool is None:
            blob = None
            if self.prepare is not None:
                try:
                    blob = pickle.dumps(self.prepare)
                except Exception:  # noqa: BLE001 - not picklable: the segmenter prepares
                    blob = None
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(blob,),
            )
        return self._pool

    def submit(self, batch: list[tuple[str, str]]) -> list[Future[Decoded]] | None:
        pool = self._get_pool()
        if pool is None:
            return None
        try:
            return [pool.submit(_decode_in_worker, path, self.max_pixels) for path, _ in batch]
        except BrokenProcessPool:
            self._broken()
            return None

    def take(
        self, batch: list[tuple[str, str]], futures: list[Future[Decoded]] | None
    ) -> Iterator[tuple[str, str, Decoded]]:
        for i, (path, sha) in enumerate(batch):
            result: Decoded | None = None
            if futures is not None:
                try:
                    result = futures[i].result()
                except BrokenProcessPool:
                    futures = None
                    self._broken()
                except Exception:  # noqa: BLE001 - e.g. a result that failed to pickle
                    result = None  # this image is decoded inline below
            if result is None:
                result = decode_and_prepare(path, self.max_pixels, None)
            yield path, sha, result

    def _broken(self) -> None:
        self.workers = 0
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def plan(
    paths: Iterable[Path], known: dict[str, ImageState], retry_failed: bool = False
) -> tuple[list[tuple[str, str]], int, list[tuple[str, str]]]:
    """Split paths into ``(path, sha256)`` to process, a skipped count, and unreadable files."""
    todo: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    skipped = 0
    for p in paths:
        path = str(p)
        try:
            sha = file_sha256(p)
        except OSError as e:
            broken = os.path.islink(p) and not os.path.exists(p)
            reason = "broken symbolic link" if broken else f"cannot read file: {e.strerror or e}"
            unreadable.append((db_path(path), reason))
            continue
        state = known.get(db_path(path))
        if (
            state is not None
            and state.sha256 == sha
            and (state.status == "indexed" or not retry_failed)
        ):
            skipped += 1
            continue
        todo.append((path, sha))
    return todo, skipped, unreadable


def relink_moved(
    todo: list[tuple[str, str]], known: dict[str, ImageState], store: Store
) -> list[tuple[str, str]]:
    """Re-link files that moved: a new path whose bytes (sha256) belong to an indexed image whose
    old path no longer exists takes over that image, its regions and vectors, without running
    any model. Returns what is still to be processed."""
    gone: dict[str, list[tuple[str, ImageState]]] = {}
    for old_path, state in known.items():
        if state.status == "indexed" and state.sha256 and not os.path.lexists(old_path):
            gone.setdefault(state.sha256, []).append((old_path, state))
    if not gone:
        return todo
    remaining = []
    for path, sha in todo:
        candidates = gone.get(sha)
        if candidates and db_path(path) not in known:
            old_path, state = candidates.pop()
            store.relink(state.id, path)
            known[db_path(path)] = state
            del known[old_path]
        else:
            remaining.append((path, sha))
    return remaining


def segment_safely(
    segmenter: Segmenter,
    images: Sequence[np.ndarray],
    batch_size: int,
    paths: Sequence[str] | None = None,
    prepared: Sequence[Any] | None = None,
) -> list[Regions | str]:
    """Segment a batch; if the batch fails, retry image by image so one bad image fails alone.

    ``paths`` (parallel to ``images``) reach only segmenters that declare ``needs_paths``;
    ``prepared`` (parallel too) only segmenters with a preprocessor.
    """
    try:
        return list(
            segmenter.segment(images, batch_size=batch_size, paths=paths, prepared=prepared)
        )
    except ModelLoadError:
        raise
    except Exception:
        out: list[Regions | str] = []
        for i, im in enumerate(images):
            one = None if paths is None else [paths[i]]
            try:
                out.append(segmenter.segment([im], batch_size=1, paths=one)[0])  # unprepared
            except ModelLoadError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded as this image's failure
                out.append(f"segmentation failed: {type(e).__name__}: {e}")
        return out


def top_regions(regions: Regions, limit: int) -> Regions:
    """At most ``limit`` regions: the highest scores first, larger areas breaking ties."""
    if len(regions) <= limit:
        return regions
    order = np.lexsort((-regions.areas, -regions.scores))[:limit]
    return regions[np.sort(order)]


def whole_image_region(height: int, width: int) -> Regions:
    """The whole image as one region (label ``image``, stuff, score 1)."""
    return Regions.from_masks(
        np.ones((1, height, width), dtype=bool),
        label_ids=[-1],
        labels=["image"],
        scores=[1.0],
        is_thing=[False],
    )


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
) -> IngestReport:
    """Ingest files/folders/globs into ``store``; ``on_commit`` mirrors each batch into vectors.

    ``labels`` names class-agnostic segments (SAM's) by CLIP zero-shot right after the embed
    stage (:mod:`segindex.labels`); ``None`` leaves them as the segmenter returned them."""
    report = IngestReport()
    timer = _Timer(report)
    t_start = time.perf_counter()
    paths = discover(sources)
    report.seen = len(paths)
    with timer("hash"):
        known = store.image_states()
        todo, report.skipped, unreadable = plan(paths, known, retry_failed)
        before = len(todo)
        todo = relink_moved(todo, known, store)
        report.relinked = before - len(todo)
    for path, reason in unreadable:
        report.failures.append((path, reason))
    if unreadable:
        on_commit(store.write([ImageWrite(path=p, sha256=None, error=r) for p, r in unreadable]))

    def tick() -> None:
        if progress is not None:
            progress(
                IngestProgress(
                    total=report.seen,
                    done=report.indexed + report.failed + report.skipped + report.relinked,
                    skipped=report.skipped,
                    failed=report.failed,
                    regions=report.regions,
                    elapsed=time.perf_counter() - t_start,
                )
            )

    tick()
    step = runtime.commit_every
    batches = [todo[i : i + step] for i in range(0, len(todo), step)]
    workers = runtime.decode_processes
    prefetch = _Prefetcher(
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
    report.seconds = time.perf_counter() - t_start
    return report


def _run_batches(
    batches: list[list[tuple[str, str]]],
    prefetch: _Prefetcher,
    *,
    store: Store,
    segmenter: Segmenter,
    embedder: Embedder,
    crop: CropPolicy,
    runtime: RuntimeOptions,
    on_commit: Callable[[WriteResult], None],
    labels: LabelPolicy | None,
    report: IngestReport,
    timer: _Timer,
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
        crops: list[np.ndarray] = []
        pending: list[tuple[_Decoded, Regions, list[str]]] = []
        with timer("crop"):
            for d, seg in zip(decoded, segs, strict=True):
                h, w = d.image.shape[:2]
                if isinstance(seg, str):
                    writes.append(
                        ImageWrite(path=d.path, sha256=d.sha256, width=w, height=h, error=seg)
                    )
                    continue
                kept = top_regions(keep_large(seg, crop), runtime.max_regions)
                crops.extend(crop_all(d.image, kept, crop))
                kinds = ["segment"] * len(kept)
                if crop.whole_image:
                    kept = Regions.concatenate([kept, whole_image_region(h, w)])
                    crops.append(crop_whole(d.image, crop))
                    kinds.append("image")
                pending.append((d, kept, kinds))
        with timer("embed"):
            vectors = embedder.embed_images(crops, batch_size=embed_batch)
        offset = 0
        for d, kept, kinds in pending:
            h, w = d.image.shape[:2]
            n = len(kept)
            if labels is not None:
                kept = name_class_agnostic(
                    kept, kinds, vectors[offset : offset + n], embedder, labels
                )
            writes.append(
                ImageWrite(
                    path=d.path,
                    sha256=d.sha256,
                    width=w,
                    height=h,
                    regions=kept,
                    kinds=kinds,
                    vectors=vectors[offset : offset + n],
                    crop=crop_meta,
                )
            )
            offset += n
            report.indexed += 1
            report.regions += kinds.count("segment")
        with timer("write"):
            on_commit(store.write(writes))
        report.failures.extend((db_path(w.path), w.error) for w in writes if w.error is not None)
        tick()
