"""Answering queries: :class:`Searcher`.

Text, whole images, regions of new images, indexed regions, tracks and raw vectors become one
query vector (:meth:`Searcher.embed_query`); :func:`~segindex.search.rank.rank` turns it into a
page of hits under the query's filters; regions, tracks and images are also read by id.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segindex.config import CropPolicy
from segindex.crop import crop_region, crop_whole
from segindex.embed.base import l2_normalise
from segindex.errors import ModelLoadError, NotFoundError, QueryError
from segindex.images import load_image
from segindex.models import Models
from segindex.regions import Regions
from segindex.search.hits import Hit, SearchPage, hit_from_row
from segindex.search.prompts import resolve_region
from segindex.search.query import ImageInput, Query, QueryRegion, RegionPrompt, Scope
from segindex.search.rank import rank, search_vectors, search_vectors_batch
from segindex.search.scenes import Expr, SceneHit, parse_scene
from segindex.search.scenes.executor import search_scenes
from segindex.search.tracks import TrackHit, resolve_track_terms, to_track_hits, track_hit
from segindex.segment import Segmenter
from segindex.store.mirror import VectorMirror
from segindex.store.sql import Store

__all__ = ["Searcher"]

TEXT_CACHE_SIZE = 512


class Searcher:
    """Answers queries over ``store`` and its vector ``mirror``; ``models`` gives the embedder
    (and, for region prompts, the segmenter) on first use; ``crop`` is the index's crop policy
    (query images and regions are cropped like indexed ones)."""

    def __init__(
        self, store: Store, mirror: VectorMirror, models: Models, crop: CropPolicy
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.models = models
        self.crop = crop
        self._text_cache: dict[tuple[str, tuple[str, ...] | None], np.ndarray] = {}
        self._cache_lock = threading.Lock()

    def query(self, query: Query) -> SearchPage:
        """Run a :class:`~segindex.search.query.Query`; the page says whether more hits follow
        and, for region terms, which mask each region prompt resolved to (``query_regions``).
        Track rows among the hits are :class:`~segindex.search.tracks.TrackHit`s."""
        query, exclude = resolve_track_terms(query, self.store)
        vector, regions = self.embed_query(query)
        mirror = self.mirror
        page = rank(vector, query, self.store, mirror.vectors, mirror.lock, exclude_ids=exclude)
        page.hits = to_track_hits(page.hits, self.store, vector)
        page.query_regions = regions
        return page

    def embed_query(self, query: Query) -> tuple[np.ndarray, list[QueryRegion]]:
        """The ``(D,)`` L2-normalised float32 query vector: the weighted sum of the terms'
        vectors, normalised; and the resolved region of each region term."""
        if query.track_ids:
            query = resolve_track_terms(query, self.store)[0]
        text_vecs = iter(
            self.embed_texts([t.text for t in query.terms if t.text is not None], query.templates)
        )
        ids = query.region_ids
        stored = self.store.region_vectors(ids)
        missing = [i for i in ids if i not in stored]
        if missing:
            raise NotFoundError(f"no region with id {missing[0]} in this index")
        vecs: list[np.ndarray] = []
        regions: list[QueryRegion] = []
        for t in query.terms:
            if t.text is not None:
                vecs.append(next(text_vecs))
            elif t.region_id is not None:
                vecs.append(stored[int(t.region_id)])
            elif t.image is not None:
                vecs.append(self.embed_image_query(t.image))
            elif t.region is not None:
                vec, found = self.embed_region_query(t.region)
                vecs.append(vec)
                regions.append(found)
            else:
                vecs.append(self.check_vector(t.vector))
        if len(vecs) == 1 and query.terms[0].weight == 1.0:
            return vecs[0], regions
        weights = np.array([t.weight for t in query.terms], dtype=np.float64)
        weights /= np.abs(weights).max()  # only ratios matter; keeps 1e308 weights finite
        combined = (weights[:, None] * np.stack(vecs)).sum(axis=0)
        if np.linalg.norm(combined) < 1e-6:
            raise QueryError("the query terms cancel out: nothing is left to search for")
        return l2_normalise(combined[None])[0], regions

    def embed_texts(self, texts: list[str], templates: tuple[str, ...] | None) -> list[np.ndarray]:
        """``(D,)`` vectors of ``texts`` (wrapped in ``templates``), remembered for the last few
        hundred texts (pages of one query, repeated queries and negatives embed once)."""
        keys = [(t.strip(), templates) for t in texts]
        with self._cache_lock:
            found = {k: self._text_cache[k] for k in keys if k in self._text_cache}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            vecs = self.models.embedder.embed_texts([k[0] for k in missing], templates=templates)
            found.update(zip(missing, vecs, strict=True))
            with self._cache_lock:
                self._text_cache.update(zip(missing, vecs, strict=True))
                while len(self._text_cache) > TEXT_CACHE_SIZE:
                    self._text_cache.pop(next(iter(self._text_cache)))
        return [found[k] for k in keys]

    def embed_image_query(self, image: ImageInput) -> np.ndarray:
        """``(D,)`` vector of a whole query image, cropped with the index's crop policy (an
        embedder that ``embeds_regions`` pools the whole image, as ingest does)."""
        pixels = _pixels(image)
        embedder = self.models.embedder
        if embedder.embeds_regions:
            whole = Regions.from_masks(np.ones((1, *pixels.shape[:2]), dtype=bool))
            return embedder.embed_regions(pixels, whole)[0]
        return embedder.embed_images([crop_whole(pixels, self.crop)])[0]

    def embed_region_query(self, prompt: RegionPrompt) -> tuple[np.ndarray, QueryRegion]:
        """``(D,)`` vector of a region of a new image, and the region it resolved to.

        The prompt becomes a mask (:func:`~segindex.search.prompts.resolve_region`: a given
        mask; else the segmenter's mask for the box/points when it is promptable; else the box
        itself), and the mask is cropped exactly like an indexed region, with the index's crop
        policy.
        """
        pixels = _pixels(prompt.image)
        segmenter: Segmenter | None
        try:
            segmenter = self.models.segmenter if prompt.mask is None else None
        except ModelLoadError:
            if prompt.box is None:
                raise
            segmenter = None  # a box still works without the segmenter's model
        found = resolve_region(pixels, prompt, segmenter)
        embedder = self.models.embedder
        if embedder.embeds_regions:  # pooled from the full image; reuses a SAM encoder pass
            region = Regions.from_masks(found.mask[None])
            return embedder.embed_regions(pixels, region, segmenter=segmenter)[0], found
        crop = crop_region(pixels, found.mask, found.box, self.crop)
        return embedder.embed_images([crop])[0], found

    def search_scenes(
        self, scene: Expr | str, *, k: int = 20, scope: str = "images"
    ) -> list[SceneHit]:
        """The ``k`` best images (``scope="videos"``: videos) where a compositional ``scene``
        holds (an :class:`~segindex.search.scenes.Expr` or its text syntax, parsed with
        :func:`~segindex.search.scenes.parse_scene`); see :mod:`segindex.search.scenes`."""
        expr = parse_scene(scene) if isinstance(scene, str) else scene
        return search_scenes(expr, searcher=self, k=k, scope=scope)

    def search_vector(
        self, query: np.ndarray, *, k: int = 10, scope: Scope = "regions"
    ) -> list[Hit]:
        """The ``k`` regions nearest to a ``(D,)`` L2-normalised float32 vector."""
        query = self.check_vector(query)
        vectors = self.mirror.vectors
        return search_vectors(query, store=self.store, vectors=vectors, k=k, scope=scope)

    def search_vectors_batch(
        self, queries: np.ndarray, *, k: int = 10, scope: Scope = "regions"
    ) -> list[list[Hit]]:
        """The ``k`` regions nearest to each of ``(Q, D)`` L2-normalised float32 queries, in one
        FAISS call (BLAS for exact search) and one SQL read of the hit rows."""
        q, mirror = np.asarray(queries, dtype=np.float32), self.mirror
        if q.ndim != 2 or q.shape[1] != mirror.dim or not np.isfinite(q).all():
            raise QueryError(
                f"queries must be (Q, {mirror.dim}) finite float32, got shape {q.shape}"
            )
        return search_vectors_batch(
            q, store=self.store, vectors=mirror.vectors, k=k, scope=scope, lock=mirror.lock
        )

    def check_vector(self, vector: np.ndarray | None) -> np.ndarray:
        """``vector`` as a ``(D,)`` float32 query vector, or a QueryError."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = self.mirror.dim
        if v.shape[0] != dim or not np.isfinite(v).all():
            raise QueryError(f"query vector must have {dim} finite dims, got {v.shape[0]}")
        return v

    # -- regions and images by id -----------------------------------------------------------

    def region(self, region_id: int) -> Hit:
        """The indexed region ``region_id`` (``similarity`` is NaN: there is no query)."""
        rows = self.store.region_rows([int(region_id)])
        if int(region_id) not in rows:
            raise NotFoundError(f"no region with id {region_id} in this index")
        return hit_from_row(rows[int(region_id)], float("nan"))

    def track(self, track_id: int) -> TrackHit:
        """The indexed video track ``track_id`` (``similarity`` NaN, ``best_frame`` its most
        typical frame; ``frames()`` reads its sampled frames)."""
        return track_hit(self.store, int(track_id))

    def image(self, image_id: int) -> tuple[Any, list[Hit]]:
        """An indexed image's row and all its regions (whole-image region included), read
        together so they always belong to one state of the image."""
        row, rows = self.store.image_with_regions(int(image_id))
        if row is None or row.status != "indexed":
            raise NotFoundError(f"no indexed image with id {image_id} in this index")
        return row, [hit_from_row(r, float("nan")) for r in rows]

    def image_file(self, image_id: int) -> Path:
        """The file of an indexed image (only ids are accepted, never paths)."""
        row = self.store.image_row(int(image_id))
        if row is None or row.status != "indexed" or not os.path.isfile(row.path):
            raise NotFoundError(f"no indexed image file with id {image_id} in this index")
        return Path(row.path)


def _pixels(image: ImageInput) -> np.ndarray:
    """``HxWx3`` uint8 RGB pixels of a query image given in any accepted form."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise QueryError(
                f"image array must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}"
            )
        return image
    if not isinstance(image, (str, Path, bytes, bytearray, Image.Image)):
        raise QueryError(
            f"image must be a path, bytes, a PIL image or an array, got {type(image).__name__}"
        )
    return load_image(image)
