"""``POST /search/scenes``: compositional queries in the text syntax of docs/scenes.md
(``"dog LEFT OF bicycle"``, ``"COUNT(person) >= 3 AND NOT car"``, ``"person WITH dog THEN car
WITHIN 10s"`` with ``scope: "videos"``).

A query that does not parse is a 422 with the character ``position`` where it went wrong (never
a 500); the other library errors go through the app's handlers like any route's.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from segindex.errors import NotFoundError, QueryError
from segindex.service.errors import error
from segindex.service.routes_search import hit_json
from segindex.service.schemas import SceneQueryErrorOut, ScenesIn, ScenesOut

router = APIRouter()


@router.post(
    "/search/scenes",
    tags=["search"],
    response_model=ScenesOut,
    response_model_exclude_unset=True,  # the hits' JSON as SceneHit.to_dict() makes it
    responses={422: {"model": SceneQueryErrorOut, "description": "the query does not parse"}},
)
async def search_scenes(body: ScenesIn, request: Request) -> Any:
    """Images (or video spans) whose objects satisfy a scene query, best first, each with the
    regions (or tracks) that satisfied each named part: their masks (RLE), boxes, labels and
    picture URLs."""
    from segindex.search.scenes.parse import parse_scene

    index, settings = request.app.state.index, request.app.state.settings
    if body.k > settings.max_k:
        raise QueryError(f"k must be at most {settings.max_k}, got {body.k}")
    started = time.perf_counter()
    try:
        expr = parse_scene(body.query)
    except QueryError as e:  # the text is not a scene: with where, when the parser knows
        return bad_query(e)
    try:
        hits = await run_in_threadpool(index.search_scenes, expr, k=body.k, scope=body.scope)
    except QueryError as e:
        if isinstance(e, NotFoundError) or getattr(e, "position", None) is None:
            raise  # not about the text: the app's handlers (404, 400)
        return bad_query(e)
    return {
        "hits": [scene_json(h) for h in hits],
        "took_ms": round((time.perf_counter() - started) * 1000, 2),
    }


def bad_query(e: QueryError) -> JSONResponse:
    """422 ``{"error", "status", "detail", "position"}`` for a query text that is not a valid
    scene (``position``: the 0-based character offset, ``null`` when no one character is to
    blame, e.g. a threshold out of range)."""
    position = getattr(e, "position", None)
    return error(422, f"invalid scene query: {e}", detail=str(e), position=position)


def scene_json(hit: Any) -> dict[str, Any]:
    """A ``SceneHit.to_dict()`` with the URLs of its image (or video) and of each part's
    pictures (as ``POST /search``'s hits have them)."""
    out: dict[str, Any] = hit.to_dict()
    out["parts"] = {name: [hit_json(p) for p in parts] for name, parts in hit.parts.items()}
    video = hit.kind == "video"
    out["urls"] = {
        "video" if video else "image": f"/{'videos' if video else 'images'}/{hit.image_id}"
    }
    if not video:
        out["urls"]["overlay"] = f"/images/{hit.image_id}/overlay.png"
    return out
