"""Where crops become vectors: embedder backends, chosen by name from a registry."""

from __future__ import annotations

from segindex.embed.base import DEFAULT_TEMPLATES, Embedder
from segindex.registry import Registry

EMBEDDERS: Registry[Embedder] = Registry("embedder", "segindex.embedders")

__all__ = ["DEFAULT_TEMPLATES", "EMBEDDERS", "Embedder"]
