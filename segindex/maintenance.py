"""Maintenance of an index: :class:`Maintenance` rebuilds the vector index, keeps uploads and
deletes images by id, checks and repairs, reports and exports.

Top-level beside :mod:`segindex.index` (not in ``store/``): it reports and exports through
:mod:`segindex.export` and :mod:`segindex.formats`, which read the store from above.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from segindex.config import IndexSettings
from segindex.errors import ConfigError, ImageDecodeError
from segindex.images import load_image
from segindex.store.check import CheckReport
from segindex.store.check import check as check_index
from segindex.store.check import repair as repair_index
from segindex.store.kinds import META_KEY as KIND_META_KEY
from segindex.store.kinds import KindSpec
from segindex.store.mirror import VectorMirror
from segindex.store.sql import Store, WriteResult
from segindex.store.track_rows import video_counts

UPLOADS_DIR = "uploads"

__all__ = ["UPLOADS_DIR", "Maintenance"]


class Maintenance:
    """Maintenance of the index in directory ``path``: its ``store`` and vector ``mirror``;
    ``settings`` reads the index's current settings (for :meth:`info`)."""

    def __init__(
        self,
        path: Path,
        store: Store,
        mirror: VectorMirror,
        settings: Callable[[], IndexSettings],
    ) -> None:
        self.path = Path(path)
        self.store = store
        self.mirror = mirror
        self.settings = settings

    def reindex(
        self,
        /,  # so that Index.reindex, forwarded with this signature, takes **params
        kind: str | None = None,
        *,
        factory: str | None = None,
        spec: KindSpec | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Rebuild the FAISS index from the vectors stored in SQL (no model runs), as ``kind``
        (``auto``, ``flat``, ``hnsw``, ``ivfpq``; default: the configured one) or a FAISS
        ``factory`` string, with any other :class:`KindSpec` field given in ``params`` (e.g.
        ``ef_construction=200``); the choice is stored. Written atomically; takes the writer
        lock. Returns the new index's description."""
        current = self.mirror.kind_spec
        known = sorted(set(KindSpec.__dataclass_fields__) - {"kind", "factory"})
        if spec is not None and (params or kind is not None or factory is not None):
            raise ConfigError("pass either spec= or kind/factory/parameters to reindex, not both")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown index-kind parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
            )
        if spec is None:
            changes: dict[str, Any] = dict(params)
            if kind is not None:
                changes["kind"] = kind
            if factory is not None or kind is not None:
                changes["factory"] = factory
            spec = KindSpec.from_dict({**current.to_dict(), **changes})
        with self.mirror.writing(), self.mirror.lock:
            self.store.optimize()
            vi = self.mirror.rebuild(spec)
            self.store.set_meta(KIND_META_KEY, spec.to_dict())
            return {**vi.describe(), "spec": spec.to_dict()}

    # -- writes by id -----------------------------------------------------------------------

    def keep_upload(self, data: bytes, *, max_pixels: int | None) -> Path:
        """Keep an encoded image given as bytes as ``uploads/<sha256>.<ext>`` in the index
        directory (the same bytes twice are one file) and return its path; raises
        ImageDecodeError, keeping nothing, if it cannot be decoded."""
        load_image(data, max_pixels=max_pixels)  # refuse undecodable data before keeping it
        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "img").lower()
        ext = {"jpeg": "jpg", "mpo": "jpg", "tiff": "tif"}.get(fmt, fmt)
        folder = self.path / UPLOADS_DIR
        folder.mkdir(exist_ok=True)
        target = folder / f"{hashlib.sha256(data).hexdigest()}.{ext}"
        if not target.exists():
            tmp = target.with_name(target.name + f".{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return target

    def indexed_id(self, path: Path) -> int:
        """The image id of a kept upload once ingested; raises ImageDecodeError if it was not
        indexed."""
        image_id = self.store.image_id_for_path(str(path))
        row = None if image_id is None else self.store.image_row(image_id)
        if row is None or row.status != "indexed":
            reason = "not indexed" if row is None else row.error
            raise ImageDecodeError(f"upload could not be indexed: {reason}")
        return int(row.id)

    def delete_images(self, image_ids: Sequence[int]) -> int:
        """Delete images with their regions and vectors; returns the number of regions removed.

        Unknown ids are ignored. Files this index keeps (``uploads/``) are removed too; other
        image files are never touched.
        """
        ids = [int(i) for i in image_ids]
        with self.mirror.writing():
            rows = [r for r in (self.store.image_row(i) for i in ids) if r is not None]
            removed = self.store.delete_images(ids)  # rows go first: FAISS ids left are skipped
            self.mirror.apply(WriteResult.of([], [], removed.tolist()))
            self.mirror.flush()
            if len(removed):  # segments a quarter dead are rewritten without their tombstones
                self.store.vectors.compact(self.store.region_ids())
        uploads = (self.path / UPLOADS_DIR).resolve()
        for r in rows:
            path = Path(r.path).resolve()
            if path.parent == uploads:
                path.unlink(missing_ok=True)
        return int(len(removed))

    # -- reporting --------------------------------------------------------------------------

    def check(self) -> CheckReport:
        """Verify on disk that every region row has its vector and every vector its row."""
        return check_index(self.store, self.mirror.file, self.mirror.dim)

    def repair(self) -> CheckReport:
        """Restore the invariants (rebuild the FAISS file from SQL; incomplete images are marked
        for re-ingestion); takes the writer lock. Returns a check of the result."""
        mirror = self.mirror
        with mirror.writing(), mirror.lock:
            report = repair_index(self.store, mirror.file, mirror.dim, spec=mirror.kind_spec)
            mirror.discard()  # reload the rebuilt file on next use
        return report

    def info(self) -> dict[str, Any]:
        """Counts, models, sizes on disk, failed images and the integrity check (made before the
        vector file is loaded, so a stale file is reported; loading then rebuilds it)."""
        integrity = self.check()
        vi = self.mirror.vectors  # rebuilt from SQL (in memory for a reader) if it is stale
        described = {**vi.describe(), "spec": self.mirror.kind_spec.to_dict()}
        files = [p for p in self.path.iterdir() if p.is_file()] if self.path.exists() else []
        segments = self.store.vectors.segments()
        return {
            "integrity": integrity.to_dict(),
            "path": str(self.path),
            "db_url": _redact(self.store.url),
            "settings": self.settings().to_dict(),
            "embedder": self.store.get_meta("embedder_identity"),
            # runtimes that made the vectors (torch, openvino + precision); [] before issue 22
            "embedder_runtimes": self.store.get_meta("embedder_runtimes") or [],
            "vector_dim": self.mirror.dim,
            "counts": self.store.counts(),
            "videos": video_counts(self.store),
            "vectors": vi.ntotal,
            "vector_index": described,
            "vector_storage": {
                "dtype": self.store.get_meta("vector_dtype"),
                "segments": len(segments),
                "rows": sum(s.rows for s in segments),
                "bytes": sum(s.rows * (s.row_bytes + 8) for s in segments),
            },
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

    def export_youtube_vis(self) -> dict[str, Any]:
        """The video tracks as a YouTube-VIS dataset dict (:func:`segindex.export.to_youtube_vis`:
        one annotation per track with an RLE per sampled frame, ``None`` where absent)."""
        from segindex.export import to_youtube_vis
        from segindex.formats.youtube_vis import to_dict

        return to_dict(to_youtube_vis(self.store))


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
