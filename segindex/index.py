"""``Index``: the Python door. An index is a directory holding the SQL store and the FAISS file.

photos.segindex/
    segindex.json   format version and the SQL URL (default: the SQLite file below)
    meta.sqlite     images, regions (+ durable vectors), settings
    vectors.faiss   FAISS IndexIDMap2 over inner product, ids = region ids
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segindex.config import BackendSpec, CropPolicy, IndexSettings, RuntimeOptions
from segindex.crop import crop_whole
from segindex.embed import DEFAULT_TEMPLATES, EMBEDDERS, Embedder
from segindex.errors import (
    IndexExistsError,
    IndexMismatchError,
    IndexNotFoundError,
    QueryError,
)
from segindex.images import load_image
from segindex.pipeline import IngestProgress, IngestReport, run_ingest
from segindex.search import Hit, Scope, search_vectors
from segindex.segment import SEGMENTERS, Segmenter
from segindex.store.sql import Store, WriteResult
from segindex.store.vectors import VectorIndex

FORMAT_VERSION = 1
MANIFEST = "segindex.json"
SQLITE_FILE = "meta.sqlite"
VECTORS_FILE = "vectors.faiss"
CHECKPOINT_SECONDS = 30.0

ImageInput = str | Path | bytes | np.ndarray | Image.Image


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
        self._segmenter_spec = segmenter_override or settings.segmenter
        self._segmenter: Segmenter | None = None
        self._embedder: Embedder | None = None
        self._vectors: VectorIndex | None = None
        self._dirty = False
        self._last_save = time.monotonic()

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
        db_url: str | None = None,
        runtime: RuntimeOptions | None = None,
        exist_ok: bool = False,
    ) -> Index:
        """Create a new index directory (or open it if ``exist_ok`` and it exists).

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
        )
        runtime = runtime or RuntimeOptions()
        embedder_obj = EMBEDDERS.build(
            settings.embedder.name, **settings.embedder.options, device=runtime.device
        )
        path.mkdir(parents=True, exist_ok=True)
        url = db_url or f"sqlite:///{(path / SQLITE_FILE).resolve()}"
        store = Store(url)
        store.set_meta("settings", settings.to_dict())
        store.set_meta("embedder_identity", embedder_obj.describe())
        store.set_meta("vector_dim", embedder_obj.dim)
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
            emb = EMBEDDERS.build(spec.name, **spec.options, device=self.runtime.device)
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
            self._segmenter = SEGMENTERS.build(
                spec.name, **spec.options, device=self.runtime.device
            )
        return self._segmenter

    @property
    def dim(self) -> int:
        return int(self.store.get_meta("vector_dim"))

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index, loaded on first use and rebuilt from SQL if it is missing or stale."""
        if self._vectors is None:
            self._vectors = self._load_vectors()
        return self._vectors

    def _load_vectors(self) -> VectorIndex:
        file = self.path / VECTORS_FILE
        sql_ids = self.store.region_ids()
        if file.exists():
            vi = VectorIndex.load(file, self.dim)
            if np.array_equal(vi.ids(), sql_ids):
                return vi
        vi = VectorIndex(self.dim)
        for ids, vecs in self.store.iter_vectors():
            vi.add(ids, vecs)
        vi.save(file)
        return vi

    def flush(self) -> None:
        """Write the FAISS file if it changed since it was last saved."""
        if self._dirty and self._vectors is not None:
            self._vectors.save(self.path / VECTORS_FILE)
            self._dirty = False
            self._last_save = time.monotonic()

    def _mirror(self, result: WriteResult) -> None:
        vi = self.vectors
        vi.remove(result.removed_ids)
        vi.add(result.added_ids, result.added_vectors)
        self._dirty = self._dirty or bool(len(result.removed_ids) or len(result.added_ids))
        if time.monotonic() - self._last_save > CHECKPOINT_SECONDS:
            self.flush()

    # -- ingest -----------------------------------------------------------------------------

    def ingest(
        self,
        sources: str | Path | Iterable[str | Path],
        *,
        progress: Callable[[IngestProgress], None] | None = None,
        retry_failed: bool = False,
    ) -> IngestReport:
        """Index files, folders (recursive) and glob patterns.

        Unchanged files (same path, same sha256) are skipped; a changed file replaces its old
        regions; an undecodable file is recorded as failed with its reason and the run goes on.
        Files that failed before are retried only if changed, or with ``retry_failed=True``.
        """
        if isinstance(sources, (str, Path)):
            sources = [sources]
        embedder, segmenter = self.embedder, self.segmenter  # load models before any work
        _ = self.vectors
        try:
            return run_ingest(
                sources,
                store=self.store,
                segmenter=segmenter,
                embedder=embedder,
                crop=self.settings.crop,
                runtime=self.runtime,
                on_commit=self._mirror,
                progress=progress,
                retry_failed=retry_failed,
            )
        finally:
            self.flush()

    # -- search -----------------------------------------------------------------------------

    def search(
        self,
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        k: int = 10,
        scope: Scope = "regions",
        templates: Sequence[str] | None = DEFAULT_TEMPLATES,
    ) -> list[Hit]:
        """The ``k`` regions most similar to a text or to an image, best first.

        scope: ``regions`` (masks from the segmenter, default), ``images`` (whole-image
        regions) or ``all``. ``templates`` wrap a text query ("a photo of a {}.") and are
        averaged; ``None`` embeds the text verbatim.
        """
        if (text is None) == (image is None):
            raise QueryError("give exactly one of a text or an image to search by")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise QueryError("text query must be a non-empty string")
            query = self.embedder.embed_texts([text.strip()], templates=templates)[0]
        else:
            query = self.embed_image_query(image)  # type: ignore[arg-type]
        return self.search_vector(query, k=k, scope=scope)

    def embed_image_query(self, image: ImageInput) -> np.ndarray:
        """``(D,)`` vector of a whole query image, cropped with the index's crop policy."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise QueryError(
                    f"image array must be HxWx3 uint8 RGB, got shape {image.shape} "
                    f"dtype {image.dtype}"
                )
            pixels = image
        else:
            pixels = load_image(image)
        return self.embedder.embed_images([crop_whole(pixels, self.settings.crop)])[0]

    def search_vector(
        self, query: np.ndarray, *, k: int = 10, scope: Scope = "regions"
    ) -> list[Hit]:
        """The ``k`` regions nearest to a ``(D,)`` L2-normalised float32 vector."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise QueryError(f"query vector must have {self.dim} dims, got {query.shape[0]}")
        return search_vectors(query, store=self.store, vectors=self.vectors, k=k, scope=scope)

    # -- reporting --------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Counts, models, sizes on disk and failed images."""
        files = [p for p in self.path.iterdir() if p.is_file()] if self.path.exists() else []
        return {
            "path": str(self.path),
            "db_url": _redact(self.store.url),
            "settings": self.settings.to_dict(),
            "embedder": self.store.get_meta("embedder_identity"),
            "vector_dim": self.dim,
            "counts": self.store.counts(),
            "vectors": self.vectors.ntotal,
            "disk_bytes": {p.name: p.stat().st_size for p in sorted(files)},
            "failed": [{"path": p, "reason": r} for p, r in self.store.failed_images()],
        }

    def export_coco(self, include_whole_images: bool = False) -> dict[str, Any]:
        """All indexed regions as a COCO dataset dict with scored RLE annotations.

        Categories are numbered by label name (the backend's own id is kept as
        ``segindex_label_id``); bbox is COCO XYWH; annotation ids are region ids.
        """
        from segindex.export import to_coco

        return to_coco(self.store, include_whole_images=include_whole_images)


def _spec(
    name: str | BackendSpec | None, options: dict[str, Any] | None, default: BackendSpec
) -> BackendSpec:
    if isinstance(name, BackendSpec):
        return BackendSpec(name.name, {**name.options, **(options or {})})
    if name is None or name == default.name:
        return BackendSpec(default.name, {**default.options, **(options or {})})
    return BackendSpec(name, dict(options or {}))


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
