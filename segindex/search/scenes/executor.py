"""Answering a scene query: :func:`search_scenes`.

Candidates. Each Object term becomes one query vector (``Searcher.embed_query``: a text, a new
image, a region of a new image or an indexed region's stored vector). A region (a video track
with ``scope="videos"``) can stand for the part when its cosine similarity is at least the term's
``min_similarity``, else :data:`DEFAULT_MIN_SIMILARITY`, and it passes the term's filters. For
the parts that say which images can match (positive parts, see
:mod:`~segindex.search.scenes.algebra`), the vector index gives each part's regions in
descending similarity (under the part's filters, as every filtered search), a first batch
of ``max(FIRST_BATCH, 2 k)``, then four times deeper each round (sixteen times while fewer than
``k`` scenes are found, as far as ``ANN_MAX_K`` allows).

Exactness (a threshold-algorithm stop rule). An image not yet seen in part ``p``'s list has no
region more similar to ``p`` than the list's last similarity (its floor); once a list reached
the threshold (exhausted), an unseen image has no region for ``p`` at all. Replacing each
positive part by that bound (min over an AND, max over an OR) bounds the score of every image
not seen yet; an image seen in some list gets a bound from its own best similarities the same
way. Images whose bound could still reach the top ``k`` are evaluated EXACTLY (every region of
the image is compared with every part, from the stored vectors, read once per batch); while
fewer than ``k`` scenes are found, an image missing from a list that can still deepen waits for
the deeper list (its bound there is the list's floor; deepening is cheaper than evaluating); the
lists deepen until ``k`` evaluated images score above the bound of everything unseen (or every
list is exhausted). So a part with many matches never drops an image.

Scoring. Each part's similarity is that of the region chosen for it; within a conjunction the
regions are chosen (distinct regions for distinct parts) to satisfy every relation and to
maximise the weakest part; the scene's score is the MINIMUM over its positive parts. A soft-AND
by the minimum means a single strong part cannot carry a scene whose other part is barely
there (a mean would rank "a perfect dog and something bicycle-ish" above two good matches), and
it keeps the score on the similarity scale, so it is comparable across queries with more or
fewer parts. Relations are hard constraints (no soft score). OR takes its best branch; NOT and
counts that allow zero only remove images; ``COUNT(x) >= n`` scores as its ``n``-th best region
(all ``n`` must be there); counts count distinct regions above the part's threshold. Ties are
broken by image id, ascending.

Videos (``scope="videos"``): parts match tracks; a video's score and parts as above, over its
tracks; spatial relations hold when they hold on one sampled frame both tracks have; ``During``
and ``Then`` compare the tracks' time spans; the hit's span covers the matched tracks. On images
``During`` with no minimum overlap (``WITH``) just means both are present; ``Then`` and longer
``During`` need videos.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select

from segindex.errors import QueryError
from segindex.search.conditions import region_where
from segindex.search.hits import Hit, hit_from_row
from segindex.search.query import Query, Term
from segindex.search.rank import check_k
from segindex.search.scenes.algebra import (
    And,
    Count,
    During,
    Expr,
    Not,
    Object,
    Or,
    Relation,
    Then,
    check_scene,
    conjunct_parts,
    objects_of,
    relational,
)
from segindex.search.scenes.hits import SceneHit
from segindex.search.scenes.relations import Geometry, holds, holds_tracks
from segindex.search.tracks import to_track_hits
from segindex.store.filtered import ANN_MAX_K
from segindex.store.schema import regions
from segindex.store.track_rows import frame_region_ids, video_tracks
from segindex.validate import choice

__all__ = ["DEFAULT_MIN_SIMILARITY", "FIRST_BATCH", "SCENE_SCOPES", "search_scenes"]

#: similarity a region needs to stand for a part whose Object gives no ``min_similarity``;
#: text-to-region cosines of CLIP-family embedders are ~0.2-0.35 for a match
DEFAULT_MIN_SIMILARITY = 0.2
#: regions asked of the vector index per part at first (then deeper, see the module doc)
FIRST_BATCH = 64
SCENE_SCOPES = ("images", "videos")
NO = -math.inf


@dataclass
class _Part:
    """One Object's query vector, threshold and (for a positive part) its ranked list so far."""

    obj: Object
    vector: np.ndarray
    threshold: float
    fetched: int = 0
    exhausted: bool = False
    floor: float = math.inf
    best: dict[int, float] = field(default_factory=dict)  # image id -> best similarity seen
    owners: dict[int, int] = field(default_factory=dict)  # region id -> image id, as read
    allowed: np.ndarray | None = None  # the ids of its kind passing its filters

    def bound(self, image_id: int | None = None) -> float:
        """Upper bound of the part's similarity in an image (``None``: one not seen)."""
        if image_id is not None and image_id in self.best:
            return self.best[image_id]
        return NO if self.exhausted else self.floor


@dataclass
class _Match:
    score: float  # NaN: matched, but adds no score (NOT, counts allowing zero)
    parts: dict[str, list[Hit]]


def search_scenes(
    expr: Expr,
    *,
    searcher: Any,
    k: int = 20,
    scope: str = "images",
    store: Any = None,
    mirror: Any = None,
) -> list[SceneHit]:
    """The ``k`` best images (``scope="videos"``: videos) where ``expr`` holds, best first (the
    module doc says how candidates are found and scenes scored). ``searcher`` is a
    :class:`~segindex.search.Searcher`; ``store``/``mirror`` default to its own."""
    expr = check_scene(expr)
    k = check_k(k)
    try:
        scope = choice("scope", scope, SCENE_SCOPES)
    except ValueError as e:
        raise QueryError(str(e)) from None
    videos = scope == "videos"
    if not videos:
        _check_image_relations(expr)
    run = _Run(searcher, store or searcher.store, mirror or searcher.mirror, videos)
    return run.search(expr, k)


def _check_image_relations(e: Expr) -> None:
    for rel in _relations(e):
        if isinstance(rel, Then) or (isinstance(rel, During) and rel.min_overlap_s > 0):
            raise QueryError(
                f"{type(rel).__name__} compares times: it needs scope='videos' "
                "(on images, WITH only means both are present)"
            )


def _relations(e: Expr) -> list[Relation]:
    if isinstance(e, Relation):
        return [e]
    if isinstance(e, (And, Or)):
        return [r for p in e.parts for r in _relations(p)]
    if isinstance(e, Not):
        return _relations(e.part)
    return []


def _positive_objects(e: Expr) -> list[Object]:
    """The Objects whose lists bound which images can match (see :func:`_bound`)."""
    if isinstance(e, Object):
        return [e]
    if isinstance(e, Count):
        return [e.term] if e.bounds[0] >= 1 else []
    if isinstance(e, Or):
        return [o for p in e.parts for o in _positive_objects(p)]
    if isinstance(e, And):
        own = list(conjunct_parts(e).values())
        return own + [o for p in e.parts if not isinstance(p, Object) for o in _positive_objects(p)]
    return []


Value = Callable[[Object], float]


def _bound_of(e: Expr) -> Callable[[Value], float]:
    """``e``'s score bound as a function of a bound of each positive Object's similarity
    (``-inf``: cannot match; ``+inf``: does not restrict), compiled once per query."""
    if isinstance(e, Object):
        return lambda value: value(e)
    if isinstance(e, Count):
        term = e.term
        return (lambda value: value(term)) if e.bounds[0] >= 1 else (lambda value: math.inf)
    if isinstance(e, Or):
        subs = [_bound_of(p) for p in e.parts]
        return lambda value: max(f(value) for f in subs)
    if isinstance(e, And):
        own = list(conjunct_parts(e).values())
        rest = [_bound_of(p) for p in e.parts if not isinstance(p, Object)]
        return lambda value: min([*(value(o) for o in own), *(f(value) for f in rest)])
    return lambda value: math.inf


class _Run:
    """One scene search: the parts' state, evaluated images, and the caches of one query."""

    def __init__(self, searcher: Any, store: Any, mirror: Any, videos: bool) -> None:
        self.searcher, self.store, self.mirror, self.videos = searcher, store, mirror, videos
        self.kind = "track" if videos else "segment"
        self.parts: dict[int, _Part] = {}  # id(Object) -> part
        self.geo = Geometry()
        self.frames: dict[int, dict[int, Hit]] = {}  # track id -> frame index -> region
        self._splits: dict[int, tuple[dict[str, Object], list[Expr], list[Expr]]] = {}
        # part -> (index, its size, depth, similarities, ids) searched ahead (_search_ahead)
        self._ahead: dict[int, tuple[Any, int, int, np.ndarray, np.ndarray]] = {}

    def part(self, obj: Object) -> _Part:
        p = self.parts.get(id(obj))
        if p is None:
            term = Term(text=obj.text, image=obj.image, region=obj.region, region_id=obj.region_id)
            vector, _ = self.searcher.embed_query(Query(terms=(term,)))
            thr = DEFAULT_MIN_SIMILARITY if obj.min_similarity is None else obj.min_similarity
            p = self.parts[id(obj)] = _Part(obj, np.asarray(vector, np.float32), thr)
            p.allowed = self.store.filtered_region_ids(region_where(self.kind, obj.filters))
        return p

    def search(self, expr: Expr, k: int) -> list[SceneHit]:
        """Deepen the positive parts' lists and evaluate seen images, best bound first, until
        the top ``k`` is certain (see the module doc)."""
        positive = list({id(o): self.part(o) for o in _positive_objects(expr)}.values())
        for o in objects_of(expr):
            self.part(o)
        bound = _bound_of(expr)
        done: dict[int, SceneHit | None] = {}
        found: list[SceneHit] = []
        batch = max(FIRST_BATCH, 2 * k)
        chunk = max(32, 2 * k)
        while True:
            todo = [p for p in positive if not p.exhausted]
            self._search_ahead(todo, batch)
            for p in todo:
                self._deepen(p, batch)
            unseen = bound(lambda o: self.parts[id(o)].bound())
            bounds = {
                i: bound(self._image_bound(i))
                for i in {i for p in positive for i in p.best}
                if i not in done
            }
            # evaluate the seen images that could beat both the k-th found and every unseen
            # image, best bound first; those at or below the unseen bound wait for deeper lists
            # (their bound only falls). While fewer than k are found and a list can still
            # deepen, images missing from such a list wait too: deepening is cheap, evaluating
            # is not, and a deeper list lowers their bound (its floor) or shows them
            order = sorted((b, i) for i, b in bounds.items() if b > NO)
            order.sort(key=lambda bi: (-bi[0], bi[1]))
            open_lists = [p for p in positive if not p.exhausted]
            wanted: list[tuple[float, int]] = []
            while order:
                kth = found[k - 1].score if len(found) >= k else NO
                defer = len(found) < k and bool(open_lists)
                wanted = [(b, i) for b, i in order if b >= kth and (b > unseen or unseen == NO)]
                take = [
                    (b, i) for b, i in wanted if not defer or all(i in p.best for p in open_lists)
                ][:chunk]
                if not take:
                    break
                done.update(self._evaluate(expr, sorted(i for _, i in take)))
                taken = {i for _, i in take}
                order = [(b, i) for b, i in order if i not in taken and b >= kth]
                found = sorted(
                    (h for h in done.values() if h is not None),
                    key=lambda h: (-h.score, h.image_id),
                )
            # images left waiting only because a list is still open: deepen, then look again
            deferred = len(found) < k and bool(open_lists) and bool(order) and bool(wanted)
            certain = len(found) >= k and found[k - 1].score > unseen
            if not deferred and (unseen == NO or certain):
                return found[:k]
            # while scenes are missing, deepen faster (16x, as far as an ANN search goes): a
            # round of vector searches costs less than the evaluations it spares
            fetched = max((p.fetched for p in positive if not p.exhausted), default=0)
            grow = min(batch * 16, ANN_MAX_K - fetched) if len(found) < k else 0
            batch = max(batch * 4, grow)

    def _image_bound(self, image_id: int) -> Callable[[Object], float]:
        return lambda o: self.parts[id(o)].bound(image_id)

    def _search_ahead(self, parts: list[_Part], batch: int) -> None:
        """The vector searches :meth:`_deepen` is about to make for these parts, batched: parts
        with the same filters and depth in ONE search (an exact scan of a small allowed set,
        e.g. a video index's tracks, gathers the allowed vectors once, not once per part)."""
        self._ahead.clear()
        groups: dict[tuple[int, int], list[_Part]] = defaultdict(list)
        for p in parts:
            groups[(id(p.allowed), p.fetched)].append(p)
        vectors = self.mirror.vectors
        for group in groups.values():
            if len(group) < 2:
                continue
            allowed = group[0].allowed
            with self.mirror.lock:
                total = vectors.ntotal if allowed is None else min(len(allowed), vectors.ntotal)
                fetch = min(group[0].fetched + batch, total)
                if fetch == 0:
                    continue
                queries = np.stack([p.vector for p in group])
                sims, ids = vectors.search(queries, fetch, allowed_ids=allowed)
            for q, p in enumerate(group):
                self._ahead[id(p)] = (
                    vectors,
                    vectors.ntotal,
                    fetch,
                    sims[q : q + 1],
                    ids[q : q + 1],
                )

    def _deepen(self, p: _Part, batch: int) -> None:
        """``batch`` more of the part's ranked list: the vector index under the part's filters
        (the store's cached allowed ids, as every filtered search; searched ahead for several
        parts at once where it can), then each new region's image in one read of (id, image
        id) pairs."""
        allowed = p.allowed
        vectors = self.mirror.vectors
        ahead = self._ahead.pop(id(p), None)
        with self.mirror.lock:  # the count and the search see the same state of the index
            total = vectors.ntotal if allowed is None else min(len(allowed), vectors.ntotal)
            fetch = min(p.fetched + batch, total)
            if fetch == 0:
                p.exhausted = True
                return
            if ahead is not None and ahead[0] is vectors and ahead[1:3] == (vectors.ntotal, fetch):
                sims, ids = ahead[3], ahead[4]
            else:
                sims, ids = vectors.search(p.vector[None], fetch, allowed_ids=allowed)
        got = [(int(i), float(x)) for i, x in zip(ids[0], sims[0], strict=True) if i >= 0]
        new = [i for i, x in got if x >= p.threshold and i not in p.owners]
        p.owners.update(region_images(self.store, new))
        for i, x in got:
            if x >= p.threshold and i in p.owners:
                p.best.setdefault(p.owners[i], x)
        p.fetched = max(p.fetched, len(got))
        p.floor = got[-1][1] if got else NO
        p.exhausted = len(got) < fetch or fetch >= total or p.floor < p.threshold

    def _evaluate(self, expr: Expr, image_ids: Sequence[int]) -> dict[int, SceneHit | None]:
        """Exact evaluation of these images: every region of each image against every part."""
        if not image_ids:
            return {}
        # every region of the images in ONE read (by image id: a read filtered by kind or
        # label in SQL walks that column's index instead); each part keeps the regions of its
        # kind and filters: the store's cached set of allowed ids, as the vector search uses
        ids, vecs = self._region_vectors(image_ids)
        sims: dict[int, dict[int, float]] = {}  # id(Object) -> region id -> similarity
        for key, p in self.parts.items():
            s = vecs @ p.vector if len(ids) else np.zeros(0, np.float32)
            keep = s >= p.threshold - 1e-6
            if p.allowed is not None:
                keep &= _members(ids, p.allowed)
            sims[key] = dict(zip(ids[keep].tolist(), s[keep].tolist(), strict=True))
        wanted = sorted({i for d in sims.values() for i in d})
        rows = self.store.region_rows(wanted)
        hits = {i: hit_from_row(r, math.nan) for i, r in rows.items()}
        if self.videos:
            hits = {h.region_id: h for h in to_track_hits(list(hits.values()), self.store)}
        per_image: dict[int, dict[int, list[Hit]]] = defaultdict(lambda: defaultdict(list))
        for key, d in sims.items():
            for rid, s in d.items():
                h = hits.get(rid)
                if h is None or (not self.videos and h.frame_index is not None):
                    continue
                copy = _with_similarity(h, s)
                per_image[h.image_id][key].append(copy)
        out: dict[int, SceneHit | None] = {}
        for image_id in image_ids:
            cands = per_image.get(image_id, {})
            for lst in cands.values():
                lst.sort(key=lambda h: (-h.similarity, h.region_id))
            m = self._eval(expr, cands)
            out[image_id] = None if m is None else self._hit(image_id, m)
        return out

    def _region_vectors(self, image_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of every region of these images; of videos: of their tracks only
        (their many frame regions are read only for spatial relations, per track pair)."""
        if not self.videos:
            ids, _, vecs = self.store.image_region_vectors(list(image_ids))
            return ids, vecs
        tracks = [int(r.region_id) for r in video_tracks(self.store, list(image_ids))]
        stored = self.store.region_vectors(tracks)
        kept = sorted(stored)
        if not kept:
            return np.zeros(0, np.int64), np.zeros((0, self.mirror.dim), np.float32)
        return np.array(kept, np.int64), np.stack([stored[i] for i in kept])

    def _hit(self, image_id: int, m: _Match) -> SceneHit:
        regions = [h for hs in m.parts.values() for h in hs]
        path = regions[0].image_path if regions else ""
        if not self.videos:
            return SceneHit(image_id, path, m.score, "image", m.parts)
        starts = [getattr(h, "start_s", math.nan) for h in regions]
        ends = [getattr(h, "end_s", math.nan) for h in regions]
        return SceneHit(
            image_id, path, m.score, "video", m.parts, min(starts, default=None),
            max(ends, default=None),
        )  # fmt: skip

    # -- evaluation of one image -----------------------------------------------------------

    def _eval(self, e: Expr, cands: dict[int, list[Hit]]) -> _Match | None:
        if isinstance(e, Object):
            lst = cands.get(id(e), [])
            return _Match(lst[0].similarity, {e.part: lst[:1]}) if lst else None
        if isinstance(e, Count):
            lst = cands.get(id(e.term), [])
            lo, hi = e.bounds
            if not lo <= len(lst) <= hi:
                return None
            score = lst[lo - 1].similarity if lo >= 1 else math.nan
            return _Match(score, {e.term.part: lst[: max(lo, 1)] if lo else lst})
        if isinstance(e, Not):
            return None if self._eval(e.part, cands) is not None else _Match(math.nan, {})
        if isinstance(e, Or):
            best: _Match | None = None
            for p in e.parts:
                m = self._eval(p, cands)
                if m is not None and (best is None or _better(m.score, best.score)):
                    best = m
            return best
        if isinstance(e, And):
            return self._eval_and(e, cands)
        raise QueryError(f"a relation outside a conjunction of its parts: {e!r}")

    def _eval_and(self, e: And, cands: dict[int, list[Hit]]) -> _Match | None:
        parts, constraints, others = self._split(e)
        subs: list[_Match] = []
        for p in others:
            m = self._eval(p, cands)
            if m is None:
                return None
            subs.append(m)
        best = self._assign(list(parts.values()), constraints, cands) if parts else ({}, math.inf)
        if best is None:
            return None
        chosen, score = best
        merged: dict[str, list[Hit]] = {}
        for m in subs:
            merged.update(m.parts)
            if not math.isnan(m.score):
                score = min(score, m.score)
        merged.update({name: [h] for name, h in chosen.items()})
        return _Match(math.nan if score == math.inf else score, merged)

    def _split(self, e: And) -> tuple[dict[str, Object], list[Expr], list[Expr]]:
        """A conjunction's parts, its constraints (relations only) and its other terms."""
        found = self._splits.get(id(e))
        if found is None:
            constraints = [p for p in e.parts if relational(p)]
            others = [p for p in e.parts if not isinstance(p, Object) and not relational(p)]
            found = self._splits[id(e)] = (conjunct_parts(e), constraints, others)
        return found

    def _assign(
        self, objs: list[Object], constraints: list[Expr], cands: dict[int, list[Hit]]
    ) -> tuple[dict[str, Hit], float] | None:
        """Distinct regions for the parts satisfying every constraint, maximising the weakest
        similarity (branch and bound over the candidates in descending similarity)."""
        lists = [cands.get(id(o), []) for o in objs]
        if any(not lst for lst in lists):
            return None
        order = sorted(range(len(objs)), key=lambda j: len(lists[j]))
        names = [objs[j].part for j in order]
        # a constraint is checked as soon as every part it names is chosen
        due: list[list[Expr]] = [[] for _ in order]
        for c in constraints:
            needed = {n for r in _relations(c) for n in (r.a_name, r.b_name)}
            due[max(names.index(n) for n in needed)].append(c)
        best: list[Any] = [None, NO]
        chosen: dict[str, Hit] = {}
        used: set[int] = set()

        def walk(depth: int, weakest: float) -> None:
            if depth == len(order):
                if weakest > best[1]:
                    best[0], best[1] = dict(chosen), weakest
                return
            for h in lists[order[depth]]:
                if min(weakest, h.similarity) <= best[1]:
                    return  # the rest are weaker still
                if h.region_id in used:
                    continue
                chosen[names[depth]] = h
                if all(self._check(c, chosen) for c in due[depth]):
                    used.add(h.region_id)
                    walk(depth + 1, min(weakest, h.similarity))
                    used.discard(h.region_id)
                del chosen[names[depth]]

        walk(0, math.inf)
        if best[0] is None:
            return None
        return {o.part: best[0][o.part] for o in objs}, best[1]

    def _check(self, c: Expr, chosen: dict[str, Hit]) -> bool:
        if isinstance(c, Relation):
            a, b = chosen[c.a_name], chosen[c.b_name]
            if self.videos:
                if not isinstance(c, (During, Then)):  # those compare spans, not frames
                    self._load_frames([a, b])
                return holds_tracks(c, a, b, self.frames, self.geo)
            return holds(c, a, b, self.geo)
        if isinstance(c, And):
            return all(self._check(p, chosen) for p in c.parts)
        if isinstance(c, Or):
            return any(self._check(p, chosen) for p in c.parts)
        if isinstance(c, Not):
            return not self._check(c.part, chosen)
        raise TypeError(f"not a constraint: {c!r}")

    def _load_frames(self, tracks: list[Hit]) -> None:
        """Per-frame regions of these tracks (one read for those not loaded yet)."""
        missing = [int(t.track_id or 0) for t in tracks if int(t.track_id or 0) not in self.frames]
        if not missing:
            return
        rows = self.store.region_rows(frame_region_ids(self.store, missing))
        for t in missing:
            self.frames[t] = {}
        for r in rows.values():
            if r.track_id is not None and r.frame_index is not None:
                self.frames.setdefault(int(r.track_id), {})[int(r.frame_index)] = hit_from_row(
                    r, math.nan
                )


def region_images(store: Any, ids: Sequence[int]) -> dict[int, int]:
    """``region id -> image id`` of the regions that exist, in ONE query (no mask, no vector)."""
    if not ids:
        return {}
    stmt = select(regions.c.id, regions.c.image_id).where(regions.c.id.in_([int(i) for i in ids]))
    with store.engine.connect() as conn:
        return {int(r.id): int(r.image_id) for r in conn.execute(stmt)}


def _members(ids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Which of ``ids`` are in the sorted array ``allowed``."""
    if len(allowed) == 0:
        return np.zeros(len(ids), bool)
    at = np.minimum(np.searchsorted(allowed, ids), len(allowed) - 1)
    return allowed[at] == ids


def _better(score: float, than: float) -> bool:
    if math.isnan(than):
        return not math.isnan(score)
    return not math.isnan(score) and score > than


def _with_similarity(h: Hit, similarity: float) -> Hit:
    return replace(h, similarity=float(similarity))
