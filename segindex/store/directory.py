"""The index directory: its manifest and its SQL store.

photos.segindex/
    segindex.json   format version and the SQL URL (default: the SQLite file below)
    meta.sqlite     images, regions, settings (the commit point of everything)
    vectors/        the region vectors, one copy each: append-only segment files (float16 by
                    default) registered in SQL (``segindex.store.vector_files``)
    vectors.faiss   FAISS IndexIDMap2 over inner product, ids = region ids; flat, HNSW or IVF-PQ
                    inside (``segindex.store.kinds``: chosen by size unless set; stored as the
                    ``vector_index`` setting; ``reindex`` rebuilds it from the stored vectors);
                    kept by :class:`~segindex.store.mirror.VectorMirror`
    uploads/        images added as bytes (``Index.add_image_bytes``), named ``<sha256>.<ext>``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segindex.errors import IndexMismatchError, IndexNotFoundError
from segindex.store.sql import VECTORS_DIR, Store

FORMAT_VERSION = 1
MANIFEST = "segindex.json"
SQLITE_FILE = "meta.sqlite"

__all__ = ["FORMAT_VERSION", "MANIFEST", "SQLITE_FILE", "create_store", "open_store"]


def create_store(path: Path, db_url: str | None, meta: dict[str, Any]) -> Store:
    """Make the index directory ``path``: its store (at ``db_url``, default the SQLite file
    inside) holding ``meta``, then the manifest (written last: without it there is no index)."""
    path.mkdir(parents=True, exist_ok=True)
    store = Store(db_url or _sqlite_url(path), vectors_dir=path / VECTORS_DIR)
    for key, value in meta.items():
        store.set_meta(key, value)
    manifest = {"format": FORMAT_VERSION, "db_url": db_url}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return store


def open_store(path: Path) -> tuple[Store, dict[str, Any]]:
    """The store of the index directory ``path`` and its stored settings (as a dict); raises
    IndexNotFoundError (no index there, or no settings in its store) or IndexMismatchError
    (another format version)."""
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
    url = manifest.get("db_url") or _sqlite_url(path)
    store = Store(url, vectors_dir=path / VECTORS_DIR)
    stored = store.get_meta("settings")
    if stored is None:
        raise IndexNotFoundError(f"index at {str(path)!r} has no settings in {url!r}")
    return store, stored


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{(path / SQLITE_FILE).resolve()}"
