"""Ingesting into an index: :class:`Ingester` runs the ingest pipeline (:mod:`segindex.ingest`)
into the store, mirroring each committed batch into the vectors, as the index's one writer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

from segindex.config import IndexSettings, RuntimeOptions
from segindex.images import DEFAULT_MAX_PIXELS
from segindex.ingest import IngestProgress, IngestReport, run_ingest
from segindex.ingest.engine import BackendRecipe, Deferred, IngestEngine, resolve_engine
from segindex.maintenance import Maintenance
from segindex.models import Models
from segindex.segment import Segmenter
from segindex.store.mirror import VectorMirror

__all__ = ["Ingester"]


class Ingester:
    """Ingests into the index whose ``mirror`` (and store), ``models`` and ``runtime`` it is
    given; ``settings`` reads the index's current settings (crop, labels, video); uploads are
    kept by ``maintenance``."""

    def __init__(
        self,
        mirror: VectorMirror,
        models: Models,
        runtime: RuntimeOptions,
        settings: Callable[[], IndexSettings],
        maintenance: Maintenance,
    ) -> None:
        self.mirror = mirror
        self.store = mirror.store
        self.models = models
        self.runtime = runtime
        self.settings = settings
        self.maintenance = maintenance

    def ingest(
        self,
        sources: str | Path | Iterable[str | Path],
        *,
        progress: Callable[[IngestProgress], None] | None = None,
        retry_failed: bool = False,
        engine: str | IngestEngine | None = None,
    ) -> IngestReport:
        """Index files, folders (recursive) and glob patterns.

        Unchanged files (same path, same sha256) are skipped; a changed file replaces its old
        regions; an undecodable file is recorded as failed with its reason and the run goes on.
        Files that failed before are retried only if changed, or with ``retry_failed=True``.
        ``engine``: ``"local"`` (default, this process), ``"ray"`` or an engine object such as
        ``RayEngine(address="auto", workers=8, gpus_per_worker=1)`` (:mod:`segindex.ingest`).
        """
        if isinstance(sources, (str, Path)):
            sources = [sources]
        settings, models = self.settings(), self.models
        run_on = resolve_engine(engine)  # e.g. Ray missing: fails before any model loads
        embedder = models.embedder  # load models before any work; a driver whose engine runs
        # the models elsewhere (Ray) never loads its own segmenter
        segmenter = (
            models.segmenter
            if run_on.models_here
            else cast(Segmenter, Deferred(lambda: models.segmenter))
        )
        run_on = run_on.with_backends(
            BackendRecipe.of("segmenter", models.segmenter_spec, self.runtime),
            BackendRecipe.of("embedder", settings.embedder, self.runtime),
        )
        with self.mirror.writing():
            _ = self.mirror.vectors  # loaded (rebuilt if stale) before the first batch lands
            models.record_runtime()  # which runtime makes these vectors (`info` lists them)
            try:
                report = run_ingest(
                    sources,
                    store=self.store,
                    segmenter=segmenter,
                    embedder=embedder,
                    crop=settings.crop,
                    labels=settings.labels,
                    video=settings.video,
                    runtime=self.runtime,
                    on_commit=self.mirror.apply,
                    progress=progress,
                    retry_failed=retry_failed,
                    engine=run_on,
                )
                if run_on.rows_elsewhere:  # rows committed by other processes: follow SQL
                    self.mirror.sync()
            finally:
                self.mirror.flush()
            self.mirror.migrate_kind()
        return report

    def add_image_bytes(self, data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> int:
        """Ingest an encoded image given as bytes (an upload); returns its image id.

        The file is kept as ``uploads/<sha256>.<ext>`` in the index directory, so the same
        bytes uploaded twice are one image. Raises ImageDecodeError if it cannot be decoded.
        """
        target = self.maintenance.keep_upload(data, max_pixels=max_pixels)
        self.ingest(target)
        return self.maintenance.indexed_id(target)
