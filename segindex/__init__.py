"""segindex: object-level search for image collections.

    from segindex import Index
    idx = Index.create("photos.segindex")
    idx.ingest(["photos/"])
    hits = idx.search("red umbrella", k=10)

Heavy modules (torch, transformers, open_clip, faiss) load only when a feature needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Index": "segindex.index",
    "Hit": "segindex.search",
    "Regions": "segindex.regions",
    "CropPolicy": "segindex.config",
    "IndexSettings": "segindex.config",
    "BackendSpec": "segindex.config",
    "RuntimeOptions": "segindex.config",
    "VideoOptions": "segindex.config",
    "IngestReport": "segindex.ingest",
    "RayEngine": "segindex.ingest.ray_engine",  # imports Ray only when an ingest runs on it
    "SEGMENTERS": "segindex.segment",
    "EMBEDDERS": "segindex.embed",
    "Segmenter": "segindex.segment",
    "Embedder": "segindex.embed",
}

__all__ = [
    "EMBEDDERS",
    "SEGMENTERS",
    "BackendSpec",
    "CropPolicy",
    "Embedder",
    "Hit",
    "Index",
    "IndexSettings",
    "IngestReport",
    "RayEngine",
    "Regions",
    "RuntimeOptions",
    "Segmenter",
    "VideoOptions",
    "__version__",
]

if TYPE_CHECKING:
    from segindex.config import (
        BackendSpec,
        CropPolicy,
        IndexSettings,
        RuntimeOptions,
        VideoOptions,
    )
    from segindex.embed import EMBEDDERS, Embedder
    from segindex.index import Index
    from segindex.ingest import IngestReport
    from segindex.ingest.ray_engine import RayEngine
    from segindex.regions import Regions
    from segindex.search import Hit
    from segindex.segment import SEGMENTERS, Segmenter


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segindex' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
