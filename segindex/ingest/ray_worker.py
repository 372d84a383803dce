"""The Ray side of the Ray engine: a Ray Data callable class, one instance per actor.

Each actor builds its segmenter and embedder ONCE (from :class:`BackendRecipe`s) and then maps
batches of planned images to their writes with exactly the local engine's code: decode
(:func:`segindex.ingest.prefetch.decode_one`), then :class:`segindex.ingest.batch.ModelStages`.
It never touches SQL: every image comes back as one packed :class:`ImageWrite` (regions as RLE
rows plus their vectors, or the reason it failed), and the driver writes it idempotently.

Nothing here imports Ray: Ray imports this module in its workers.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.ingest.batch import DecodedImage, ModelStages
from segindex.ingest.engine import BackendRecipe
from segindex.ingest.prefetch import decode_one
from segindex.ingest.report import IngestReport, StageTimer
from segindex.store.sql import ImageState, ImageWrite, db_path

#: stages whose worker seconds come back per image (summed by the driver into the report)
WORKER_STAGES = ("decode", "segment", "crop", "embed")


class IngestWorker:
    """``map_batches`` callable: a batch ``{"path", "file", "sha256"}`` (``(B,)`` str arrays:
    the path as stored, the absolute file to read, the planned sha256) to ``{"path", "write",
    "<stage>_s"}``: ``write`` is ``(B,)`` pickled packed :class:`ImageWrite`, ``<stage>_s``
    ``(B,)`` float64 worker seconds per image (the batch's time shared evenly)."""

    def __init__(
        self,
        segmenter: BackendRecipe,
        embedder: BackendRecipe,
        crop: CropPolicy,
        runtime: RuntimeOptions,
        labels: LabelPolicy | None,
        setup: Callable[[], None] | None = None,
    ) -> None:
        if setup is not None:
            setup()
        self.segmenter = segmenter.build()
        self.embedder = embedder.build()
        self.crop, self.runtime, self.labels = crop, runtime, labels
        self.stages = ModelStages.of(self.segmenter, self.embedder, crop, runtime, labels=labels)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        report = IngestReport()
        timer = StageTimer(report)
        writes: list[ImageWrite] = []
        decoded: list[DecodedImage] = []
        paths = [str(p) for p in batch["path"]]
        with timer("decode"):
            for path, file, sha in zip(paths, batch["file"], batch["sha256"], strict=True):
                pixels = decode_one(str(file), self.runtime.max_pixels)
                if isinstance(pixels, str):
                    writes.append(ImageWrite(path=path, sha256=str(sha), error=pixels))
                else:
                    decoded.append(DecodedImage(path, str(sha), pixels))
        writes += self.stages.run(decoded, timer)
        by_path = {w.path: w for w in writes}
        out: dict[str, Any] = {
            "path": np.asarray(paths, dtype=object),
            "write": np.asarray(
                [pickle.dumps(by_path[p].packed(), protocol=5) for p in paths], dtype=object
            ),
        }
        share = 1.0 / max(1, len(paths))
        for stage in WORKER_STAGES:
            out[f"{stage}_s"] = np.full(len(paths), report.stage_seconds[stage] * share)
        return out


def unpack(blob: bytes) -> ImageWrite:
    """The :class:`ImageWrite` a worker packed (trusted: our own workers' pickles)."""
    write = pickle.loads(blob)
    if not isinstance(write, ImageWrite):
        raise TypeError(f"expected a packed ImageWrite, got {type(write).__name__}")
    return write


class VideoWorker(IngestWorker):
    """``map_batches`` callable for videos, one video per call (``batch_size=1``): the same
    :func:`~segindex.ingest.video_runner.ingest_video` as the local engine, its chunked commits
    (and resume state) written to the store from this actor. A video already indexed with the
    planned sha256 (a retried task) is skipped; a ``"partial"`` one is resumed after its last
    committed chunk, so a retry keeps its tracks. Returns per video the report's counts:
    ``indexed``, ``videos``, ``frames``, ``regions`` (``(1,)`` int64), ``failures`` (pickled
    ``[(path, reason)]``) and the worker seconds of each stage (``<stage>_s``)."""

    def __init__(
        self, *, video: VideoOptions, url: str, vectors_dir: str, cwd: str, **backends: Any
    ) -> None:
        """``video``: the sampling/tracking options; ``url``: the store to write to;
        ``vectors_dir``: its vector segment files (each worker appends to a segment of its own);
        ``cwd``: the driver's working directory (paths are stored as the driver gave them, maybe
        relative); ``backends``: as :class:`IngestWorker` takes them."""
        import os

        from segindex.store.sql import Store

        os.chdir(cwd)
        super().__init__(**backends)
        self.video = video
        self.store = Store(url, vectors_dir=Path(vectors_dir))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from segindex.ingest.job import ImageJob
        from segindex.ingest.video_runner import VideoContext, ingest_video

        report = IngestReport()
        job = ImageJob(
            store=self.store,
            segmenter=self.segmenter,
            embedder=self.embedder,
            crop=self.crop,
            runtime=self.runtime,
            labels=self.labels,
            on_commit=lambda _result: None,  # the driver brings FAISS up to date from SQL
            report=report,
            timer=StageTimer(report),
            tick=lambda *_: None,
        )
        ctx = VideoContext.of(job, self.video)
        for path, sha in zip(batch["path"], batch["sha256"], strict=True):
            state = self._state(str(path))
            if state is not None and state.status == "indexed" and state.sha256 == str(sha):
                continue  # an earlier attempt of this task finished it
            ingest_video(ctx, str(path), str(sha), state)
        out: dict[str, Any] = {
            name: np.asarray([getattr(report, name)], dtype=np.int64)
            for name in ("indexed", "videos", "frames", "regions")
        }
        out["failures"] = np.asarray([pickle.dumps(report.failures)], dtype=object)
        for stage, seconds in report.stage_seconds.items():
            out[f"{stage}_s"] = np.asarray([seconds])
        return out

    def _state(self, path: str) -> ImageState | None:
        """The video's stored state now (not as planned: a retry may find it done)."""
        from segindex.store.claim import find_image

        with self.store.engine.connect() as conn:
            row = find_image(conn, db_path(path), lock=False)
        return None if row is None else ImageState(row.id, row.sha256, row.status)
