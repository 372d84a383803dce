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
    # compositional scene queries (segindex.search.scenes)
    "Object": "segindex.search.scenes",
    "And": "segindex.search.scenes",
    "Or": "segindex.search.scenes",
    "Not": "segindex.search.scenes",
    "Count": "segindex.search.scenes",
    "LeftOf": "segindex.search.scenes",
    "RightOf": "segindex.search.scenes",
    "Above": "segindex.search.scenes",
    "Below": "segindex.search.scenes",
    "Inside": "segindex.search.scenes",
    "Overlaps": "segindex.search.scenes",
    "Near": "segindex.search.scenes",
    "LargerThan": "segindex.search.scenes",
    "During": "segindex.search.scenes",
    "Then": "segindex.search.scenes",
    "SceneHit": "segindex.search.scenes",
    "parse_scene": "segindex.search.scenes",
}

__all__ = [
    "Above",
    "And",
    "BackendSpec",
    "Below",
    "Count",
    "CropPolicy",
    "During",
    "EMBEDDERS",
    "Embedder",
    "Hit",
    "Index",
    "IndexSettings",
    "IngestReport",
    "Inside",
    "LargerThan",
    "LeftOf",
    "Near",
    "Not",
    "Object",
    "Or",
    "Overlaps",
    "RayEngine",
    "Regions",
    "RightOf",
    "RuntimeOptions",
    "SEGMENTERS",
    "SceneHit",
    "Segmenter",
    "Then",
    "VideoOptions",
    "__version__",
    "parse_scene",
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
    from segindex.search.scenes import (
        Above,
        And,
        Below,
        Count,
        During,
        Inside,
        LargerThan,
        LeftOf,
        Near,
        Not,
        Object,
        Or,
        Overlaps,
        RightOf,
        SceneHit,
        Then,
        parse_scene,
    )
    from segindex.segment import SEGMENTERS, Segmenter


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'segindex' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
