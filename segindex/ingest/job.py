"""What an engine is handed: one ingest's store, models, options, report and callbacks.

Every engine (:mod:`segindex.ingest.engine`) and the video runner work from an
:class:`ImageJob`; it knows how to commit a batch of writes and which model stages to run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from segindex.config import CropPolicy, LabelPolicy, RuntimeOptions
from segindex.embed.base import Embedder
from segindex.ingest.batch import ModelStages
from segindex.ingest.report import IngestReport, StageTimer
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageWrite, Store, WriteResult, db_path


@dataclass
class ImageJob:
    """What an engine needs to ingest planned images; it adds to ``report`` (``indexed``,
    ``regions``, ``failures``, ``stage_seconds``) and calls ``tick()`` after each commit."""

    store: Store
    segmenter: Segmenter
    embedder: Embedder
    crop: CropPolicy
    runtime: RuntimeOptions
    labels: LabelPolicy | None
    on_commit: Callable[[WriteResult], None]
    report: IngestReport
    timer: StageTimer
    tick: Callable[..., None]  # tick(current: str | None = None): the video being ingested

    def model_stages(self) -> ModelStages:
        """The job's models and options as the batch stages take them (batch sizes for the
        models' devices: call it where the models run, it builds the segmenter)."""
        return ModelStages.of(
            self.segmenter, self.embedder, self.crop, self.runtime, labels=self.labels
        )

    def commit(self, writes: list[ImageWrite], *, skip_done: bool = False) -> None:
        """Write one batch in one SQL transaction (timed as ``write``), mirror it through
        ``on_commit`` and count it in the report: indexed images, their segments, failures.
        ``skip_done``: a write of an image already indexed with the same sha256 changes
        nothing (results delivered twice, :mod:`segindex.store.claim`)."""
        with self.timer("write"):
            self.on_commit(self.store.write(writes, skip_done=skip_done))
        for w in writes:
            if w.error is not None:
                self.report.failures.append((db_path(w.path), w.error))
            else:
                self.report.indexed += 1
                self.report.regions += list(w.kinds).count("segment")
