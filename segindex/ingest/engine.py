"""The engine contract: who runs the model stages over the planned images.

The runner (:func:`segindex.ingest.runner.run_ingest`) plans (sha256 identity against SQL),
records unreadable files and keeps the report; an engine takes the planned ``(path, sha256)``
list and makes sure every image ends up written through ``job.store`` (and mirrored by
``job.on_commit``, see :class:`~segindex.ingest.job.ImageJob`).

Engines are chosen by name from :data:`ENGINES`, fed by the ``segindex.engines`` entry points
exactly like the segmenters and embedders; the built-ins register there as a third party would:

* ``local`` (:class:`~segindex.ingest.local_engine.LocalEngine`, the default): this process,
  decoding one batch ahead in worker processes.
* ``ray`` (:class:`~segindex.ingest.ray_engine.RayEngine`): a Ray Data plan whose actors run
  the same stages (:class:`~segindex.ingest.batch.ModelStages`), the driver writing.

This module imports no engine. What the index needs to know about an engine is declared on its
class (:attr:`IngestEngine.models_here`, :attr:`IngestEngine.rows_elsewhere`), never read from
its name.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

from segindex.config import BackendSpec, RuntimeOptions, VideoOptions
from segindex.errors import ConfigError
from segindex.ingest.job import ImageJob
from segindex.ingest.video_runner import ingest_videos
from segindex.registry import Registry
from segindex.store.sql import ImageState

__all__ = [
    "ENGINES",
    "BackendRecipe",
    "Deferred",
    "ImageJob",
    "IngestEngine",
    "resolve_engine",
]


class IngestEngine(ABC):
    """Runs the model stages over planned images and writes them (see the module doc)."""

    #: what messages call the engine (the registry's name is the one that chooses it)
    name: ClassVar[str] = "engine"
    #: whether the models run in this process (else ``job.segmenter`` is never used here)
    models_here: ClassVar[bool] = True
    #: whether rows may be committed by other processes (workers writing their own chunks), so
    #: the index brings its vector mirror up to date from SQL after the run
    rows_elsewhere: ClassVar[bool] = False

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
        (:func:`segindex.ingest.video_runner.ingest_videos`)."""
        ingest_videos(videos, known, job, video)

    def with_backends(self, segmenter: BackendRecipe, embedder: BackendRecipe) -> IngestEngine:
        """This engine told how to build the index's backends elsewhere (the Ray workers);
        an engine that runs in this process needs nothing and returns itself."""
        return self


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


#: Engines by name (``segindex.engines`` entry points, or :meth:`Registry.register` at run
#: time); a builder is called with the engine's options as keywords.
ENGINES: Registry[IngestEngine] = Registry("engine", "segindex.engines")


def resolve_engine(engine: str | IngestEngine | None, **options: Any) -> IngestEngine:
    """The engine registered as ``engine`` (built with ``options``), or an engine object (as
    is). ``None`` is ``"local"``. Checks that it can run here (e.g. Ray is installed)."""
    if engine is None:
        engine = "local"
    if isinstance(engine, str):
        builder = ENGINES.get(engine)  # unknown: a ConfigError naming the registered engines
        _check_options(engine, builder, options)
        engine = builder(**options)
    elif options:
        raise ConfigError(
            f"engine options go with an engine name, got options {sorted(options)} with the "
            f"engine object {engine!r}"
        )
    if not isinstance(engine, IngestEngine):
        raise ConfigError(
            f"engine must be the name of a registered engine ({', '.join(ENGINES.names())}) or "
            f"an IngestEngine, got {engine!r}"
        )
    engine.check()
    return engine


def _check_options(name: str, builder: Callable[..., Any], options: dict[str, Any]) -> None:
    """Options the engine's builder does not take are a ConfigError naming the ones it does."""
    if not options:
        return
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the builder itself will say
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = [p.name for p in params if p.kind in named and not p.name.startswith("_")]
    unknown = sorted(set(options) - set(takes))
    if not unknown:
        return
    if not takes:
        raise ConfigError(f"the {name} engine takes no options, got {sorted(options)}")
    raise ConfigError(
        f"the {name} engine takes the options {', '.join(takes)}; got unknown {unknown}"
    )


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
