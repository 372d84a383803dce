"""``Index``: the Python door. An index is a directory holding the SQL store and the FAISS file
(layout: :mod:`segindex.store.directory`).

An :class:`Index` is a facade over its parts: ``store`` (SQL), ``mirror`` (FAISS kept equal to
SQL, the writer lock: :class:`~segindex.store.mirror.VectorMirror`), ``models`` (built on first
use), ``searcher``, ``ingester`` and ``maintenance``. Searches may run in many threads while one
ingest or delete runs, and see an image whole or not at all.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from segindex.config import (
    BackendSpec,
    CropPolicy,
    IndexSettings,
    LabelPolicy,
    RuntimeOptions,
    VideoOptions,
)
from segindex.embed import EMBEDDERS, Embedder
from segindex.errors import ConfigError, IndexExistsError
from segindex.ingester import Ingester
from segindex.maintenance import Maintenance
from segindex.models import (
    Models,
    backend_spec,
    build_backend,
    check_tracker,
    other_embedder,
    record_runtime,
)
from segindex.search.hits import Hit
from segindex.search.query import Query, query_keywords
from segindex.search.searcher import Searcher
from segindex.segment import Segmenter
from segindex.signatures import forward
from segindex.store.directory import MANIFEST, create_store, open_store
from segindex.store.kinds import META_KEY as KIND_META_KEY
from segindex.store.kinds import KindSpec
from segindex.store.mirror import VectorMirror
from segindex.store.sql import VECTOR_DTYPE_KEY, Store
from segindex.store.vector_files import DEFAULT_DTYPE, DTYPES
from segindex.store.vectors import VectorIndex

__all__ = ["MANIFEST", "Index"]


class Index:
    """A region index on disk. Build with :meth:`create`, reopen with :meth:`open`.

    Models are loaded lazily: searching by text never loads the segmenter.
    """

    def __init__(
        self,
        path: Path,
        store: Store,
        settings: IndexSettings,
        runtime: RuntimeOptions,
        segmenter_override: BackendSpec | None = None,
    ) -> None:
        self.path = path
        self.store = store
        self.settings = settings
        self.runtime = runtime
        self.mirror = VectorMirror(path, store, checkpoint_seconds=runtime.checkpoint_seconds)
        self.models = Models(
            settings.embedder,
            segmenter_override or settings.segmenter,
            runtime,
            identity=lambda: store.get_meta("embedder_identity"),
            labels=settings.labels,
            record=lambda runtime: record_runtime(store, runtime),
        )
        self.searcher = Searcher(store, self.mirror, self.models, settings.crop)
        self.maintenance = Maintenance(path, store, self.mirror, lambda: self.settings)
        self.ingester = Ingester(
            self.mirror, self.models, runtime, lambda: self.settings, self.maintenance
        )

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        segmenter: str | BackendSpec | None = None,
        segmenter_options: dict[str, Any] | None = None,
        embedder: str | BackendSpec | None = None,
        embedder_options: dict[str, Any] | None = None,
        crop: CropPolicy | None = None,
        labels: LabelPolicy | None = None,
        db_url: str | None = None,
        runtime: RuntimeOptions | None = None,
        exist_ok: bool = False,
        vector_index: KindSpec | None = None,
        video: VideoOptions | None = None,
        vector_dtype: str = DEFAULT_DTYPE,
    ) -> Index:
        """Create a new index directory (or open it if ``exist_ok`` and it exists).

        ``vector_index``: the FAISS index kind (default ``auto``, by size; :meth:`reindex`
        changes it); ``video``: how videos are sampled and tracked (:meth:`set_video_options`
        changes it); ``vector_dtype``: how the vectors are stored (``float16``, the default,
        ``float32`` or ``int8``). The embedder is loaded here to record its vector dimension: a
        missing model fails now (:class:`~segindex.errors.ModelLoadError`), before any work is
        done."""
        path = Path(path)
        if (path / MANIFEST).exists():
            if not exist_ok:
                raise IndexExistsError(f"an index already exists at {str(path)!r}")
            return cls.open(
                path,
                embedder=embedder,
                embedder_options=embedder_options,
                segmenter=segmenter,
                segmenter_options=segmenter_options,
                runtime=runtime,
            )
        settings = IndexSettings(
            segmenter=backend_spec(segmenter, segmenter_options, IndexSettings().segmenter),
            embedder=backend_spec(embedder, embedder_options, IndexSettings().embedder),
            crop=crop or CropPolicy(),
            labels=labels or LabelPolicy(),
            video=video or VideoOptions(),
        )
        runtime = runtime or RuntimeOptions()
        if vector_dtype not in DTYPES:
            raise ConfigError(
                f"vector dtype must be one of {', '.join(DTYPES)}, got {vector_dtype!r}"
            )
        check_tracker(settings.video)
        spec = settings.embedder
        built = build_backend(EMBEDDERS, spec, runtime)
        meta = {
            "settings": settings.to_dict(),
            "embedder_identity": built.describe(),
            "vector_dim": built.dim,
            KIND_META_KEY: (vector_index or KindSpec()).to_dict(),
            VECTOR_DTYPE_KEY: vector_dtype,
        }
        index = cls(path, create_store(path, db_url, meta), settings, runtime)
        index.models.loaded_embedder = built
        return index

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        embedder: str | BackendSpec | None = None,
        embedder_options: dict[str, Any] | None = None,
        segmenter: str | BackendSpec | None = None,
        segmenter_options: dict[str, Any] | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> Index:
        """Open an existing index. Asking for another embedder than it was built with is refused;
        another segmenter (or its options, e.g. a local model path) applies to new ingests."""
        path = Path(path)
        store, stored = open_store(path)
        settings = IndexSettings.from_dict(stored)
        wanted = backend_spec(embedder, embedder_options, settings.embedder)
        if (embedder is not None or embedder_options is not None) and wanted != settings.embedder:
            store.close()
            raise other_embedder(path, settings.embedder, wanted)
        seg = None
        if segmenter is not None or segmenter_options is not None:
            seg = backend_spec(segmenter, segmenter_options, settings.segmenter)
        return cls(path, store, settings, runtime or RuntimeOptions(), seg)

    def close(self) -> None:
        self.flush()
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parts ------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        return self.models.embedder

    @property
    def segmenter(self) -> Segmenter:
        return self.models.segmenter

    @property
    def dim(self) -> int:
        return self.mirror.dim

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index, up to date with SQL (:attr:`VectorMirror.vectors`)."""
        return self.mirror.vectors

    @property
    def kind_spec(self) -> KindSpec:
        """The configured vector index kind (``vector_index`` setting; ``auto`` if unset)."""
        return self.mirror.kind_spec

    flush = forward("mirror", VectorMirror.flush)

    # -- writes (:class:`~segindex.ingester.Ingester`) -------------------------------------

    ingest = forward("ingester", Ingester.ingest)
    add_image_bytes = forward("ingester", Ingester.add_image_bytes)

    def set_video_options(self, video: VideoOptions) -> None:
        """Store new video sampling/tracking options for later ingests (videos already indexed
        keep their samples and tracks; a changed file or a new video uses the new options)."""
        if not isinstance(video, VideoOptions):
            raise ConfigError(f"video must be VideoOptions, got {type(video).__name__}")
        check_tracker(video)
        with self.mirror.writing():
            self.settings = replace(self.settings, video=video)
            self.store.set_meta("settings", self.settings.to_dict())

    # -- search (:class:`~segindex.search.searcher.Searcher`) -------------------------------

    @query_keywords
    def search(self, query: Query) -> list[Hit]:
        """Hits ``offset`` to ``offset + k`` of the regions most similar to the query, best first
        (ties broken by region id, so pages are stable); the parameters are those of
        :func:`~segindex.search.query.make_query` (text, image, region, similar_to, terms,
        negative, k, offset, scope, filters, min_similarity, group_by_image, ...)."""
        return self.searcher.query(query).hits

    query = forward("searcher", Searcher.query)
    embed_query = forward("searcher", Searcher.embed_query)
    embed_image_query = forward("searcher", Searcher.embed_image_query)
    embed_region_query = forward("searcher", Searcher.embed_region_query)
    search_vector = forward("searcher", Searcher.search_vector)
    search_vectors_batch = forward("searcher", Searcher.search_vectors_batch)
    search_scenes = forward("searcher", Searcher.search_scenes)
    region = forward("searcher", Searcher.region)
    track = forward("searcher", Searcher.track)
    image = forward("searcher", Searcher.image)
    image_file = forward("searcher", Searcher.image_file)

    # -- maintenance (:class:`~segindex.maintenance.Maintenance`) ---------------------------

    reindex = forward("maintenance", Maintenance.reindex)
    delete_images = forward("maintenance", Maintenance.delete_images)
    check = forward("maintenance", Maintenance.check)
    repair = forward("maintenance", Maintenance.repair)
    export_coco = forward("maintenance", Maintenance.export_coco)
    export_youtube_vis = forward("maintenance", Maintenance.export_youtube_vis)
    info = forward("maintenance", Maintenance.info)
