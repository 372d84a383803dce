"""The engine seam: who runs the model stages over the planned images.

The runner plans (sha256 identity against SQL), records unreadable files, runs videos and keeps
the report; an engine takes the planned ``(path, sha256)`` list and makes sure every image ends
up written through ``job.store`` (and mirrored by ``job.on_commit``):

* :class:`LocalEngine` (the default): this process, decode one batch ahead in worker processes
  (:func:`segindex.ingest.runner.run_local`).
* :class:`~segindex.ingest.ray_engine.RayEngine`: a Ray Data plan whose actors run the same
  stages (:func:`segindex.ingest.batch.model_stages`), the driver writing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from segindex.config import BackendSpec, CropPolicy, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.embed.base import Embedder
from segindex.errors import ConfigError
from segindex.ingest.report import IngestReport, StageTimer
from segindex.segment.base import Segmenter
from segindex.store.sql import ImageState, Store, WriteResult


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


class IngestEngine(ABC):
    """Runs the model stages over planned images and writes them (see the module doc)."""

    name: str = "engine"
    #: whether the models run in this process (else ``job.segmenter`` is never used here)
    models_here: bool = True
    #: whether rows may be committed by other processes (workers writing their own chunks), so
    #: the index brings its vector mirror up to date from SQL after the run
    rows_elsewhere: bool = False

    @abstractmethod
    def run_images(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        """Ingest ``todo`` (``(path, sha256)`` pairs, already planned) into ``job.store``."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Fail early (before models load) when this engine cannot run here."""

    def session(self) -> AbstractContextManager[Any]:
        """Held around one ingest's images and videos (the Ray engine's connection)."""
        return nullcontext()

    def run_videos(
        self,
        videos: list[tuple[str, str]],
        known: dict[str, ImageState],
        job: ImageJob,
        video: VideoOptions,
    ) -> None:
        """Ingest (or resume) the planned videos; by default in this process, one at a time
        (:func:`segindex.ingest.runner.run_local_videos`)."""
        from segindex.ingest.runner import run_local_videos

        run_local_videos(videos, known, job, video)

    def with_backends(self, segmenter: BackendRecipe, embedder: BackendRecipe) -> IngestEngine:
        """This engine told how to build the index's backends elsewhere (the Ray workers);
        an engine that runs in this process needs nothing and returns itself."""
        return self


class LocalEngine(IngestEngine):
    """Today's ingest in this process: the default engine."""

    name = "local"

    def run_images(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        from segindex.ingest.runner import run_local

        run_local(todo, job)

    def __repr__(self) -> str:
        return "LocalEngine()"


class Deferred:
    """A backend built on first use: what an engine that runs the models elsewhere gets in
    place of the driver's own (so the driver loads nothing it does not use)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._built: Any | None = None

    def __getattr__(self, name: str) -> Any:
        if self._built is None:
            self._built = self._build()
        return getattr(self._built, name)


ENGINE_NAMES = ("local", "ray")


def resolve_engine(engine: str | IngestEngine | None, **options: Any) -> IngestEngine:
    """An engine from a name (``"local"``, ``"ray"``; ``options`` go to the Ray engine) or an
    engine object (returned as is). ``None`` is ``"local"``. Checks that it can run here."""
    if engine is None or engine == "local":
        if options:
            raise ConfigError(f"the local engine takes no options, got {sorted(options)}")
        return LocalEngine()
    if engine == "ray":
        from segindex.ingest.ray_engine import RayEngine

        engine = RayEngine(**options)
    if not isinstance(engine, IngestEngine):
        raise ConfigError(
            f"engine must be one of {', '.join(ENGINE_NAMES)} or an IngestEngine, got {engine!r}"
        )
    engine.check()
    return engine


@dataclass(frozen=True)
class BackendRecipe:
    """How to build a segmenter or embedder in another process: the builder resolved from the
    registry here (so a backend registered at run time, like the test fakes, builds there too;
    pickled by reference), its options, device and precision."""

    kind: str  # "segmenter" | "embedder"
    name: str
    builder: Callable[..., Any]
    options: dict[str, Any]
    device: str
    precision: str

    @classmethod
    def of(cls, kind: str, spec: BackendSpec, runtime: RuntimeOptions) -> BackendRecipe:
        """The recipe of backend ``spec`` (name, options) on ``runtime``'s device/precision."""
        builder = _registry(kind).get(spec.name)
        opts = dict(spec.options)
        return cls(kind, spec.name, builder, opts, runtime.device, runtime.precision)

    def build(self) -> Any:
        """Register the builder under its name in this process, then build as the index does."""
        registry = _registry(self.kind)
        registry.register(self.name, self.builder, replace=True)
        return registry.build_on(
            self.name, self.options, device=self.device, precision=self.precision
        )


def _registry(kind: str) -> Any:
    from segindex.embed import EMBEDDERS
    from segindex.segment import SEGMENTERS

    if kind not in ("segmenter", "embedder"):
        raise ConfigError(f"backend kind must be 'segmenter' or 'embedder', got {kind!r}")
    return SEGMENTERS if kind == "segmenter" else EMBEDDERS
