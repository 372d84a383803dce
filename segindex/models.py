"""The models of an index, built on first use: :class:`Models` (searching by text never loads the
segmenter; reading rows by id loads nothing); :func:`backend_spec` resolves which backend is asked
for, :func:`check_tracker` checks a video tracker before any work is done.

The runtime (torch, OpenVINO: :mod:`segindex.runtime`) is not part of the embedder's identity:
vectors of every runtime agree within the tolerances of docs/runtimes.md (cosine >= 0.999), so an
index may hold vectors of several; :func:`record_runtime` keeps the list of those that made its
vectors (``embedder_runtimes``, reported by ``info``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from segindex.config import BackendSpec, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.embed import EMBEDDERS, Embedder
from segindex.errors import ConfigError, IndexMismatchError
from segindex.registry import Registry, takes_parameter
from segindex.runtime import describe_runtime
from segindex.segment import SEGMENTERS, Segmenter

__all__ = [
    "RUNTIMES_META_KEY",
    "Models",
    "backend_spec",
    "build_backend",
    "check_tracker",
    "other_embedder",
    "record_runtime",
]

T = TypeVar("T")
#: the index meta key listing the runtimes that made its vectors
RUNTIMES_META_KEY = "embedder_runtimes"


class Models:
    """The embedder and segmenter of ``embedder_spec`` / ``segmenter_spec`` on ``runtime``'s
    device and precision, each built on first use.

    identity:    reads the embedder identity the index was built with (``None``: not recorded);
                 a built embedder describing itself otherwise is refused
    labels:      the index's label policy: a concept segmenter (:attr:`Segmenter.wants_vocabulary`)
                 segments its names
    loaded_embedder, loaded_segmenter: what was built so far (``None``: not yet); set them to
                 use models built elsewhere
    record:      called with the embedder's runtime (:func:`segindex.runtime.describe_runtime`)
                 by :meth:`record_runtime`, before an ingest makes vectors
    """

    def __init__(
        self,
        embedder_spec: BackendSpec,
        segmenter_spec: BackendSpec,
        runtime: RuntimeOptions,
        *,
        identity: Callable[[], Any] = lambda: None,
        labels: LabelPolicy | None = None,
        record: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.embedder_spec = embedder_spec
        self.segmenter_spec = segmenter_spec
        self.runtime = runtime
        self.identity = identity
        self.labels = labels or LabelPolicy()
        self.loaded_embedder: Embedder | None = None
        self.loaded_segmenter: Segmenter | None = None
        self.record = record

    @property
    def embedder(self) -> Embedder:
        if self.loaded_embedder is None:
            spec, run = self.embedder_spec, self.runtime
            emb: Embedder | None = None
            if spec.name == "open_clip" and run.device in ("auto", "cpu"):
                # torch-free queries when a compiled export of these weights exists
                from segindex.embed.clip_exported import ExportedClipEmbedder

                emb = ExportedClipEmbedder.from_cache(spec.options, run.runtime, run.precision)
            if emb is None:
                emb = build_backend(EMBEDDERS, spec, run)
            stored = self.identity()
            if stored is not None and stored != emb.describe():
                raise IndexMismatchError(
                    f"embedder {spec.name!r} now describes itself as {emb.describe()}, but the "
                    f"index was built with {stored}; refusing to mix vector spaces"
                )
            self.loaded_embedder = emb
        return self.loaded_embedder

    @property
    def segmenter(self) -> Segmenter:
        if self.loaded_segmenter is None:
            spec, run = self.segmenter_spec, self.runtime
            seg = build_backend(SEGMENTERS, spec, run)
            if seg.wants_vocabulary:  # concept segmenters (sam3) segment the index's labels
                seg.use_vocabulary(self.labels.names())
            self.loaded_segmenter = seg
        return self.loaded_segmenter

    def record_runtime(self) -> None:
        """Record the embedder's runtime with the index (through ``record``) as one that makes
        its vectors; builds the embedder if needed."""
        if self.record is not None:
            self.record(describe_runtime(self.embedder))


def build_backend(registry: Registry[T], spec: BackendSpec, run: RuntimeOptions) -> T:
    """``spec``'s backend on ``run``'s device and precision, and its runtime for backends whose
    builder takes a ``runtime`` (unless ``spec.options`` names one)."""
    options: Mapping[str, object] = spec.options
    if "runtime" not in options and takes_parameter(registry.get(spec.name), "runtime"):
        options = {**options, "runtime": run.runtime}
    return registry.build_on(spec.name, options, device=run.device, precision=run.precision)


def record_runtime(store: Any, runtime: dict[str, Any]) -> None:
    """Add ``runtime`` (``{"runtime", "precision", ...}``) to the index ``store``'s list of
    runtimes that made its vectors, if it is not there yet (compared on runtime, precision and
    runtime version)."""
    fields = ("runtime", "precision", "inference_precision", "runtime_version")
    entry = {k: runtime[k] for k in fields if k in runtime}
    known = list(store.get_meta(RUNTIMES_META_KEY) or [])
    if entry not in known:
        store.set_meta(RUNTIMES_META_KEY, [*known, entry])


def backend_spec(
    name: str | BackendSpec | None, options: dict[str, Any] | None, default: BackendSpec
) -> BackendSpec:
    """The backend asked for by ``name`` (a name or a spec; ``None``: ``default``) and
    ``options``, which extend the spec's (or the default's, for the default name) options."""
    if isinstance(name, BackendSpec):
        return BackendSpec(name.name, {**name.options, **(options or {})})
    if name is None or name == default.name:
        return BackendSpec(default.name, {**default.options, **(options or {})})
    return BackendSpec(name, dict(options or {}))


def other_embedder(path: Path, built_with: BackendSpec, wanted: BackendSpec) -> IndexMismatchError:
    """The error for opening the index at ``path``, built with ``built_with``, with another
    embedder ``wanted``: their vectors would not be comparable."""
    return IndexMismatchError(
        f"index at {str(path)!r} was built with embedder {built_with.name!r} "
        f"{built_with.options}; refusing to use {wanted.name!r} {wanted.options}: its vectors "
        "would not be comparable. Re-create the index to change the embedder."
    )


def check_tracker(video: VideoOptions) -> None:
    """Build the tracker once so an unknown name or option fails before any work is done."""
    from segindex.track import TRACKERS

    try:
        TRACKERS.build(video.tracker.name, **video.tracker.options)
    except TypeError as e:
        raise ConfigError(f"tracker {video.tracker.name!r}: {e}") from None
