"""The local engine (the default): the model stages in this process.

Batches of ``RuntimeOptions.commit_every`` planned images, decoded one batch ahead by
``RuntimeOptions.decode_processes`` worker processes (:mod:`segindex.ingest.prefetch`), run
through :class:`~segindex.ingest.batch.ModelStages` and committed one SQL transaction per batch.
Videos go through the contract's default: in this process, one at a time.

Registered as the ``local`` engine in the ``segindex.engines`` entry points.
"""

from __future__ import annotations

from concurrent.futures import Future

from segindex.ingest.batch import DecodedImage, ModelStages
from segindex.ingest.engine import IngestEngine
from segindex.ingest.job import ImageJob
from segindex.ingest.prefetch import Decoded, Prefetcher
from segindex.store.sql import ImageWrite


class LocalEngine(IngestEngine):
    """Ingest in this process: the default engine."""

    name = "local"

    def run_images(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        """Batches of ``runtime.commit_every`` images in this process, decoded one batch ahead
        by ``runtime.decode_processes`` worker processes."""
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

    def __repr__(self) -> str:
        return "LocalEngine()"


def _run_batches(batches: list[list[tuple[str, str]]], prefetch: Prefetcher, job: ImageJob) -> None:
    """The per-batch stages. Batch 0 is decoded inline (the pool starts meanwhile); each later
    batch was submitted to the decode workers before the previous one went to the models."""
    stages: ModelStages = job.model_stages()
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
        writes += stages.run(decoded, job.timer)
        job.commit(writes)
        job.tick()
