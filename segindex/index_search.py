"""Answering queries: the search half of :class:`~segindex.index.Index`.

Text, whole images, regions of new images, indexed regions and raw vectors become one query
vector (:meth:`SearchMixin.embed_query`); :func:`segindex.search.rank.rank` turns it into a page of
hits under the index's filters; regions and images are also fetched by id. The index supplies
the store, the vectors, the models and the FAISS lock (see the attributes below).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from segindex.crop import crop_region, crop_whole
from segindex.embed import DEFAULT_TEMPLATES
from segindex.embed.base import l2_normalise
from segindex.errors import ModelLoadError, NotFoundError, QueryError
from segindex.images import load_image
from segindex.regions import Regions
from segindex.search.hits import Hit, SearchPage, hit_from_row
from segindex.search.prompts import resolve_region
from segindex.search.query import (
    Filters,
    ImageInput,
    Query,
    QueryRegion,
    RegionPrompt,
    Scope,
    Term,
    make_query,
)
from segindex.search.rank import rank, search_vectors, search_vectors_batch
from segindex.search.tracks import resolve_track_terms, to_track_hits, track_hit

if TYPE_CHECKING:
    from segindex.config import IndexSettings
    from segindex.embed import Embedder
    from segindex.segment import Segmenter
    from segindex.store.sql import Store
    from segindex.store.vectors import VectorIndex
    from segindex.search.tracks import TrackHit

TEXT_CACHE_SIZE = 512


class SearchMixin:
    """Queries over an index; mixed into :class:`~segindex.index.Index`, which provides:"""

    store: Store
    settings: IndexSettings
    _lock: threading.RLock
    _text_cache: dict[tuple[str, tuple[str, ...] | None], np.ndarray]
    # properties of Index (models and vectors load lazily)
    vectors: VectorIndex
    embedder: Embedder
    segmenter: Segmenter
    dim: int

    # -- search -----------------------------------------------------------------------------

    def search(
        self,
        text: str | None = None,
        *,
        image: ImageInput | None = None,
        region: RegionPrompt | None = None,
        similar_to: int | None = None,
        similar_to_track: int | None = None,
        terms: Sequence[Term | tuple[str, float]] | None = None,
        negative: str | Sequence[str] | None = None,
        negative_weight: float = 0.5,
        k: int = 10,
        offset: int = 0,
        scope: Scope = "regions",
        filters: Filters | None = None,
        min_similarity: float | None = None,
        group_by_image: bool = False,
        exclude_query_regions: bool = True,
        templates: Sequence[str] | None = DEFAULT_TEMPLATES,
    ) -> list[Hit]:
        """Hits ``offset`` to ``offset + k`` of the regions most similar to the query, best first
        (ties broken by region id, so pages are stable).

        Search by exactly one of: ``text``; ``image`` (a whole new image); ``region`` (a
        :class:`~segindex.search.query.RegionPrompt`: a box, points or a mask on a new image);
        ``similar_to`` (an indexed region id; the region itself is left out unless
        ``exclude_query_regions=False``); ``similar_to_track`` (an indexed video track id, left
        out likewise); ``terms`` (weighted ``Term``s or ``(text, weight)``).
        ``negative`` texts are subtracted (``negative_weight`` each) before normalising.

        filters: :class:`~segindex.search.query.Filters` applied inside the vector search, so ``k`` hits
        come back whenever at least ``k`` regions match. min_similarity: drop weaker hits.
        group_by_image: the best region per image (the best track per video), with
        ``Hit.image_matches``. scope: ``regions`` (segmenter masks, of images and of sampled
        video frames), ``images`` (whole images and frames), ``tracks`` (video tracks, as
        :class:`~segindex.search.tracks.TrackHit`) or ``all`` (tracks among them are ``TrackHit``s
        too). templates:
        wrap texts ("a photo of a {}.") and average; ``None`` embeds them verbatim.
        """
        q = make_query(
            text,
            image=image,
            region=region,
            similar_to=similar_to,
            similar_to_track=similar_to_track,
            terms=terms,
            negative=negative,
            negative_weight=negative_weight,
            k=k,
            offset=offset,
            scope=scope,
            filters=filters,
            min_similarity=min_similarity,
            group_by_image=group_by_image,
            exclude_query_regions=exclude_query_regions,
            templates=templates,
        )
        return self.query(q).hits

    def query(self, query: Query) -> SearchPage:
        """Run a :class:`~segindex.search.query.Query`; the page says whether more hits follow and,
        for region terms, which mask each region prompt resolved to (``query_regions``). Track
        rows among the hits are :class:`~segindex.search.tracks.TrackHit`s."""
        query, exclude = resolve_track_terms(query, self.store)
        vector, regions = self.embed_query(query)
        page = rank(vector, query, self.store, self.vectors, self._lock, exclude_ids=exclude)
        page.hits = to_track_hits(page.hits, self.store, vector)
        page.query_regions = regions
        return page

    def embed_query(self, query: Query) -> tuple[np.ndarray, list[QueryRegion]]:
        """The ``(D,)`` L2-normalised float32 query vector: the weighted sum of the terms'
        vectors, normalised; and the resolved region of each region term."""
        if query.track_ids:
            query = resolve_track_terms(query, self.store)[0]
        text_vecs = iter(
            self._embed_texts([t.text for t in query.terms if t.text is not None], query.templates)
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
                vecs.append(self._check_vector(t.vector))
        if len(vecs) == 1 and query.terms[0].weight == 1.0:
            return vecs[0], regions
        weights = np.array([t.weight for t in query.terms], dtype=np.float64)
        weights /= np.abs(weights).max()  # only ratios matter; keeps 1e308 weights finite
        combined = (weights[:, None] * np.stack(vecs)).sum(axis=0)
        if np.linalg.norm(combined) < 1e-6:
            raise QueryError("the query terms cancel out: nothing is left to search for")
        return l2_normalise(combined[None])[0], regions

    def _embed_texts(self, texts: list[str], templates: tuple[str, ...] | None) -> list[np.ndarray]:
        """Text vectors, remembered for the last few hundred texts (pages of one query, repeated
        queries and negatives embed once)."""
        keys = [(t.strip(), templates) for t in texts]
        with self._lock:
            found = {k: self._text_cache[k] for k in keys if k in self._text_cache}
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing:
            vecs = self.embedder.embed_texts([k[0] for k in missing], templates=templates)
            found.update(zip(missing, vecs, strict=True))
            with self._lock:
                self._text_cache.update(zip(missing, vecs, strict=True))
                while len(self._text_cache) > TEXT_CACHE_SIZE:
                    self._text_cache.pop(next(iter(self._text_cache)))
        return [found[k] for k in keys]

    def embed_image_query(self, image: ImageInput) -> np.ndarray:
        """``(D,)`` vector of a whole query image, cropped with the index's crop policy (an
        embedder that ``embeds_regions`` pools the whole image, as ingest does)."""
        pixels = _pixels(image)
        if self.embedder.embeds_regions:
            whole = Regions.from_masks(np.ones((1, *pixels.shape[:2]), dtype=bool))
            return self.embedder.embed_regions(pixels, whole)[0]  # type: ignore[attr-defined,no-any-return]
        return self.embedder.embed_images([crop_whole(pixels, self.settings.crop)])[0]

    def embed_region_query(self, prompt: RegionPrompt) -> tuple[np.ndarray, QueryRegion]:
        """``(D,)`` vector of a region of a new image, and the region it resolved to.

        The prompt becomes a mask (:func:`~segindex.search.prompts.resolve_region`: a given mask; else
        the segmenter's mask for the box/points when it is promptable; else the box itself),
        and the mask is cropped exactly like an indexed region, with the index's crop policy.
        """
        pixels = _pixels(prompt.image)
        segmenter: Segmenter | None
        try:
            segmenter = self.segmenter if prompt.mask is None else None
        except ModelLoadError:
            if prompt.box is None:
                raise
            segmenter = None  # a box still works without the segmenter's model
        found = resolve_region(pixels, prompt, segmenter)
        if self.embedder.embeds_regions:  # pooled from the full image; reuses a SAM encoder pass
            region = Regions.from_masks(found.mask[None])
            vec = self.embedder.embed_regions(pixels, region, segmenter=segmenter)  # type: ignore[attr-defined]
            return vec[0], found
        crop = crop_region(pixels, found.mask, found.box, self.settings.crop)
        return self.embedder.embed_images([crop])[0], found

    def search_vector(
        self, query: np.ndarray, *, k: int = 10, scope: Scope = "regions"
    ) -> list[Hit]:
        """The ``k`` regions nearest to a ``(D,)`` L2-normalised float32 vector."""
        query = self._check_vector(query)
        return search_vectors(query, store=self.store, vectors=self.vectors, k=k, scope=scope)

    def search_vectors_batch(
        self, queries: np.ndarray, *, k: int = 10, scope: Scope = "regions"
    ) -> list[list[Hit]]:
        """The ``k`` regions nearest to each of ``(Q, D)`` L2-normalised float32 queries, in one
        FAISS call (BLAS for exact search) and one SQL read of the hit rows."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim or not np.isfinite(q).all():
            raise QueryError(f"queries must be (Q, {self.dim}) finite float32, got shape {q.shape}")
        return search_vectors_batch(
            q, store=self.store, vectors=self.vectors, k=k, scope=scope, lock=self._lock
        )

    def _check_vector(self, vector: np.ndarray | None) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim or not np.isfinite(v).all():
            raise QueryError(f"query vector must have {self.dim} finite dims, got {v.shape[0]}")
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
