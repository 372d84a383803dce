"""The models of an index, built on first use: :class:`Models` (searching by text never loads the
segmenter; reading rows by id loads nothing); :func:`backend_spec` resolves which backend is asked
for, :func:`check_tracker` checks a video tracker before any work is done."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from segindex.config import BackendSpec, LabelPolicy, RuntimeOptions, VideoOptions
from segindex.embed import EMBEDDERS, Embedder
from segindex.errors import ConfigError, IndexMismatchError
from segindex.segment import SEGMENTERS, Segmenter

__all__ = ["Models", "backend_spec", "check_tracker", "other_embedder"]


class Models:
    """The embedder and segmenter of ``embedder_spec`` / ``segmenter_spec`` on ``runtime``'s
    device and precision, each built on first use.

    identity:    reads the embedder identity the index was built with (``None``: not recorded);
                 a built embedder describing itself otherwise is refused
    labels:      the index's label policy: a concept segmenter (:attr:`Segmenter.wants_vocabulary`)
                 segments its names
    loaded_embedder, loaded_segmenter: what was built so far (``None``: not yet); set them to
                 use models built elsewhere
    """

    def __init__(
        self,
        embedder_spec: BackendSpec,
        segmenter_spec: BackendSpec,
        runtime: RuntimeOptions,
        *,
        identity: Callable[[], Any] = lambda: None,
        labels: LabelPolicy | None = None,
    ) -> None:
        self.embedder_spec = embedder_spec
        self.segmenter_spec = segmenter_spec
        self.runtime = runtime
        self.identity = identity
        self.labels = labels or LabelPolicy()
        self.loaded_embedder: Embedder | None = None
        self.loaded_segmenter: Segmenter | None = None

    @property
    def embedder(self) -> Embedder:
        if self.loaded_embedder is None:
            spec, run = self.embedder_spec, self.runtime
            emb = EMBEDDERS.build_on(
                spec.name, spec.options, device=run.device, precision=run.precision
            )
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
            seg = SEGMENTERS.build_on(
                spec.name, spec.options, device=run.device, precision=run.precision
            )
            if seg.wants_vocabulary:  # concept segmenters (sam3) segment the index's labels
                seg.use_vocabulary(self.labels.names())
            self.loaded_segmenter = seg
        return self.loaded_segmenter


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
