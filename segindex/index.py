"""``Index``: the Python door. An index is a directory holding the SQL store and the FAISS file.

photos.segindex/
    segindex.json   format version and the SQL URL (default: the SQLite file below)
    meta.sqlite     images, regions (+ durable vectors), settings
    vectors.faiss   FAISS IndexIDMap2 over inner product, ids = region ids; flat, HNSW or IVF-PQ
                    inside (``segindex.store.kinds``: chosen by size unless set; stored as the
                    ``vector_index`` setting; ``reindex`` rebuilds it from SQL)
    uploads/        images added as bytes (``add_image_bytes``), named ``<sha256>.<ext>``

Thread safety: searches may run in many threads while one ingest or delete runs. Writers are
serialised; FAISS is touched only under a lock. SQL rows of a batch commit in one transaction
before their vectors enter FAISS, and are deleted before their vectors leave it, so a search sees
an image whole or not at all (a FAISS id without a row is skipped).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from segindex.config import (
    BackendSpec,
    CropPolicy,
    IndexSettings,
    LabelPolicy,
    RuntimeOptions,
    VideoOptions,
)
from segindex.embed import EMBEDDERS, Embedder
from segindex.errors import (
    ConfigError,
    IndexExistsError,
    IndexMismatchError,
    IndexNotFoundError,
)
from segindex.index_maintenance import VECTORS_FILE, MaintenanceMixin
from segindex.index_search import SearchMixin
from segindex.ingest import IngestProgress, IngestReport, run_ingest
from segindex.ingest.engine import BackendRecipe, Deferred, IngestEngine, resolve_engine
from segindex.segment import SEGMENTERS, Segmenter
from segindex.store.kinds import META_KEY as KIND_META_KEY
from segindex.store.kinds import KindSpec
from segindex.store.lock import WriterLock
from segindex.store.sql import Store, WriteResult
from segindex.store.vectors import VectorIndex

FORMAT_VERSION = 1
MANIFEST = "segindex.json"
SQLITE_FILE = "meta.sqlite"


class Index(SearchMixin, MaintenanceMixin):
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
        self._segmenter_spec = segmenter_override or settings.segmenter
        self._segmenter: Segmenter | None = None
        self._embedder: Embedder | None = None
        self._vectors: VectorIndex | None = None
        self._dirty = False
        self._last_save = time.monotonic()
        self._lock = threading.RLock()  # FAISS index: load, search, add/remove, save
        self._write_lock = threading.RLock()  # one ingest or delete at a time (threads)
        self._writer = WriterLock(path, store.engine)  # ... across processes (and machines)
        self._generation = 0  # store generation the in-memory FAISS index reflects
        self._text_cache: dict[tuple[str, tuple[str, ...] | None], np.ndarray] = {}

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
    ) -> Index:
        """Create a new index directory (or open it if ``exist_ok`` and it exists).

        ``vector_index`` picks the FAISS index kind (default: ``auto``, by size; see
        :mod:`segindex.store.kinds`); :meth:`reindex` changes it later.
        ``video`` sets how videos are sampled and tracked (:class:`VideoOptions`, stored;
        :meth:`set_video_options` changes it later).

        The embedder is loaded once here to record its vector dimension; a missing model fails
        now with :class:`~segindex.errors.ModelLoadError`, before any work is done.
        """
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
            segmenter=_spec(segmenter, segmenter_options, IndexSettings().segmenter),
            embedder=_spec(embedder, embedder_options, IndexSettings().embedder),
            crop=crop or CropPolicy(),
            labels=labels or LabelPolicy(),
            video=video or VideoOptions(),
        )
        runtime = runtime or RuntimeOptions()
        _check_tracker(settings.video)
        embedder_obj = EMBEDDERS.build_on(
            settings.embedder.name,
            settings.embedder.options,
            device=runtime.device,
            precision=runtime.precision,
        )
        path.mkdir(parents=True, exist_ok=True)
        url = db_url or f"sqlite:///{(path / SQLITE_FILE).resolve()}"
        store = Store(url)
        store.set_meta("settings", settings.to_dict())
        store.set_meta("embedder_identity", embedder_obj.describe())
        store.set_meta("vector_dim", embedder_obj.dim)
        store.set_meta(KIND_META_KEY, (vector_index or KindSpec()).to_dict())
        manifest = {"format": FORMAT_VERSION, "db_url": db_url}
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
        index = cls(path, store, settings, runtime)
        index._embedder = embedder_obj
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
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            raise IndexNotFoundError(
                f"no segindex index at {str(path)!r} (create one with `segindex ingest` "
                "or Index.create)"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index at {str(path)!r} has format {manifest.get('format')}, "
                f"this segindex reads format {FORMAT_VERSION}"
            )
        url = manifest.get("db_url") or f"sqlite:///{(path / SQLITE_FILE).resolve()}"
        store = Store(url)
        stored = store.get_meta("settings")
        if stored is None:
            raise IndexNotFoundError(f"index at {str(path)!r} has no settings in {url!r}")
        settings = IndexSettings.from_dict(stored)
        if embedder is not None or embedder_options is not None:
            wanted = _spec(embedder, embedder_options, settings.embedder)
            if wanted != settings.embedder:
                store.close()
                raise IndexMismatchError(
                    f"index at {str(path)!r} was built with embedder {settings.embedder.name!r} "
                    f"{settings.embedder.options}; refusing to use {wanted.name!r} "
                    f"{wanted.options}: its vectors would not be comparable. Re-create the "
                    "index to change the embedder."
                )
        seg = None
        if segmenter is not None or segmenter_options is not None:
            seg = _spec(segmenter, segmenter_options, settings.segmenter)
        return cls(path, store, settings, runtime or RuntimeOptions(), seg)

    def close(self) -> None:
        self.flush()
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- components (lazy) ------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            spec = self.settings.embedder
            emb = EMBEDDERS.build_on(
                spec.name,
                spec.options,
                device=self.runtime.device,
                precision=self.runtime.precision,
            )
            stored = self.store.get_meta("embedder_identity")
            if stored is not None and stored != emb.describe():
                raise IndexMismatchError(
                    f"embedder {spec.name!r} now describes itself as {emb.describe()}, but the "
                    f"index was built with {stored}; refusing to mix vector spaces"
                )
            self._embedder = emb
        return self._embedder

    @property
    def segmenter(self) -> Segmenter:
        if self._segmenter is None:
            spec = self._segmenter_spec
            self._segmenter = SEGMENTERS.build_on(
                spec.name,
                spec.options,
                device=self.runtime.device,
                precision=self.runtime.precision,
            )
            if getattr(self._segmenter, "wants_vocabulary", False):  # concept segmenters (sam3)
                self._segmenter.use_vocabulary(self.settings.labels.names())  # type: ignore[attr-defined]
        return self._segmenter

    @property
    def dim(self) -> int:
        return int(self.store.get_meta("vector_dim"))

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index: loaded on first use (rebuilt from SQL if the file is missing or
        stale), and brought up to date with what other processes committed since (a reader
        process sees a writer's new images without reopening)."""
        with self._lock:
            if self._vectors is None:
                self._generation = self.store.generation()
                self._vectors = self._load_vectors()
            elif not self._writer.held:
                generation = self.store.generation()
                if generation != self._generation:
                    self._sync_vectors(self._vectors)
                    self._generation = generation
            return self._vectors

    @property
    def kind_spec(self) -> KindSpec:
        """The configured vector index kind (``vector_index`` setting; ``auto`` if unset)."""
        return KindSpec.from_dict(self.store.get_meta(KIND_META_KEY))

    def _fetch_vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.vectors_by_id(ids)

    def _build_vectors(self, spec: KindSpec) -> VectorIndex:
        """A FAISS index of the kind ``spec`` picks for the stored vectors, built from SQL."""
        return VectorIndex.build(
            self.dim,
            spec,
            self.store.region_count(),
            self.store.iter_vectors(),
            sample=self.store.sample_vectors,
            fetch=self._fetch_vectors,
        )

    def _load_vectors(self) -> VectorIndex:
        file = self.path / VECTORS_FILE
        sql_ids = self.store.region_ids()
        spec = self.kind_spec
        if file.exists():
            try:
                vi = VectorIndex.load(file, self.dim, spec=spec, fetch=self._fetch_vectors)
            except (RuntimeError, ValueError, OSError):  # damaged, truncated, another dimension
                vi = None
            if vi is not None and np.array_equal(vi.ids(), sql_ids):
                return vi
        # missing, unreadable or stale (ids differ: a crash before the last checkpoint, or a
        # foreign file): the file is a cache of SQL, rebuilt from it; ids are never reused, but a
        # foreign file's vectors cannot be trusted
        vi = self._build_vectors(spec)
        if self._try_writer():  # only a writer replaces the file; readers rebuild in memory
            try:
                vi.save(file)
            finally:
                self._writer.release()
        return vi

    def _sync_vectors(self, vi: VectorIndex) -> None:
        """Make ``vi`` hold exactly the SQL store's ids: drop deleted ones, add new ones."""
        sql_ids, mem_ids = self.store.region_ids(), vi.ids()
        vi.remove(np.setdiff1d(mem_ids, sql_ids, assume_unique=True))
        new = np.setdiff1d(sql_ids, mem_ids, assume_unique=True)
        if len(new):
            found = self.store.region_vectors(new.tolist())
            ids = np.asarray([i for i in new.tolist() if i in found], dtype=np.int64)
            if len(ids):
                vi.add(ids, np.stack([found[int(i)] for i in ids]))

    def _try_writer(self) -> bool:
        from segindex.errors import IndexLockedError

        try:
            self._writer.acquire()
        except IndexLockedError:
            return False
        return True

    def flush(self) -> None:
        """Write the FAISS file if it changed since it was last saved."""
        with self._lock:
            if self._dirty and self._vectors is not None:
                self._vectors.save(self.path / VECTORS_FILE)
                self._dirty = False
                self._last_save = time.monotonic()

    def _mirror(self, result: WriteResult) -> None:
        vi = self.vectors
        with self._lock:
            vi.remove(result.removed_ids)
            vi.add(result.added_ids, result.added_vectors)
            self._dirty = self._dirty or bool(len(result.removed_ids) or len(result.added_ids))
        if time.monotonic() - self._last_save > self.runtime.checkpoint_seconds:
            self.flush()

    # -- ingest -----------------------------------------------------------------------------

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
        run_on = resolve_engine(engine)  # e.g. Ray missing: fails before any model loads
        embedder = self.embedder  # load models before any work; a driver whose engine runs
        # the models elsewhere (Ray) never loads its own segmenter
        segmenter = (
            self.segmenter
            if run_on.models_here
            else cast(Segmenter, Deferred(lambda: self.segmenter))
        )
        run_on = run_on.with_backends(
            BackendRecipe.of("segmenter", self._segmenter_spec, self.runtime),
            BackendRecipe.of("embedder", self.settings.embedder, self.runtime),
        )
        _ = self.vectors
        with self._write_lock, self._writer:
            return self._ingest_locked(sources, embedder, segmenter, progress, retry_failed, run_on)

    def _ingest_locked(
        self,
        sources: Iterable[str | Path],
        embedder: Embedder,
        segmenter: Segmenter,
        progress: Callable[[IngestProgress], None] | None,
        retry_failed: bool,
        engine: IngestEngine,
    ) -> IngestReport:
        try:
            report = run_ingest(
                sources,
                store=self.store,
                segmenter=segmenter,
                embedder=embedder,
                crop=self.settings.crop,
                labels=self.settings.labels,
                video=self.settings.video,
                runtime=self.runtime,
                on_commit=self._mirror,
                progress=progress,
                retry_failed=retry_failed,
                engine=engine,
            )
            if engine.name != "local":  # rows may come from elsewhere: the file follows SQL
                with self._lock:
                    before = self.vectors.ntotal
                    self._sync_vectors(self.vectors)
                    self._dirty = self._dirty or self.vectors.ntotal != before
        finally:
            self.flush()
        self._migrate_kind()
        return report

    def set_video_options(self, video: VideoOptions) -> None:
        """Store new video sampling/tracking options for later ingests (videos already indexed
        keep their samples and tracks; a changed file or a new video uses the new options)."""
        if not isinstance(video, VideoOptions):
            raise ConfigError(f"video must be VideoOptions, got {type(video).__name__}")
        _check_tracker(video)
        with self._write_lock:
            self.settings = replace(self.settings, video=video)
            self.store.set_meta("settings", self.settings.to_dict())

    def _migrate_kind(self) -> None:
        """After an ingest: rebuild once if the index grew past its kind (``auto`` crossing a
        size threshold, or ``ivfpq`` that now has enough vectors to train)."""
        spec = self.kind_spec
        with self._lock:
            vi = self.vectors
            if spec.target(vi.ntotal, self.dim) != vi.kind:
                self._replace_vectors(self._build_vectors(spec))

    def _replace_vectors(self, vi: VectorIndex) -> None:
        """Install a freshly built index and write it (caller holds the writer lock)."""
        vi.save(self.path / VECTORS_FILE)
        self._vectors = vi
        self._generation = self.store.generation()
        self._dirty = False
        self._last_save = time.monotonic()


def _spec(
    name: str | BackendSpec | None, options: dict[str, Any] | None, default: BackendSpec
) -> BackendSpec:
    if isinstance(name, BackendSpec):
        return BackendSpec(name.name, {**name.options, **(options or {})})
    if name is None or name == default.name:
        return BackendSpec(default.name, {**default.options, **(options or {})})
    return BackendSpec(name, dict(options or {}))


def _check_tracker(video: VideoOptions) -> None:
    """Build the tracker once so an unknown name or option fails before any work is done."""
    from segindex.track import TRACKERS

    try:
        TRACKERS.build(video.tracker.name, **video.tracker.options)
    except TypeError as e:
        raise ConfigError(f"tracker {video.tracker.name!r}: {e}") from None
