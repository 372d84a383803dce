"""``POST /search``: every query kind (text, image, region of an uploaded image, indexed region,
weighted and negative terms) with filters, threshold, grouping and pages."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from segindex import rle as rle_codec
from segindex.errors import QueryError
from segindex.search import Hit
from segindex.service.schemas import SearchIn
from segindex.service.uploads import read_upload

router = APIRouter()

_MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "format": "binary", "description": "the query image"},
        "query": {"type": "string", "description": "a SearchIn object as JSON"},
    },
}
SEARCH_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchIn"}},
            "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
        },
    }
}


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit (or a region read by id) with the URLs of its pictures. A region of a video frame
    points at its video and, when tracked, its track and the frame's overlay; a track hit's
    ``thumb`` shows its best frame."""
    from segindex.search import TrackHit

    out = hit.to_dict()
    rid, iid = hit.region_id, hit.image_id
    out["urls"] = {
        "region": f"/regions/{rid}",
        "mask": f"/regions/{rid}/mask.png",
        "crop": f"/regions/{rid}/crop.png",
        "thumb": f"/regions/{rid}/thumb.png",
        "image": f"/images/{iid}",
        "overlay": f"/images/{iid}/overlay.png",
    }
    if hit.time_s is not None:  # a video's region: no image file to show
        urls = out["urls"]
        urls["video"] = urls["image"] = f"/videos/{iid}"
        urls["overlay"] = urls["thumb"]
        if hit.track_id is not None:
            urls["track"] = f"/tracks/{hit.track_id}"
            urls["overlay"] = f"/tracks/{hit.track_id}/frames/{hit.frame_index}/overlay.png"
    if isinstance(hit, TrackHit) and hit.best_frame is not None:
        best = hit.best_frame
        out["urls"]["thumb"] = f"/regions/{best.region_id}/thumb.png"
        out["urls"]["overlay"] = f"/tracks/{hit.track_id}/frames/{best.frame_index}/overlay.png"
        out["best_frame"]["urls"] = {"thumb": f"/regions/{best.region_id}/thumb.png"}
    return out


@router.post("/search", tags=["search"], openapi_extra=SEARCH_OPENAPI)
async def search(request: Request) -> dict[str, Any]:
    """Search. Send a ``SearchIn`` as JSON, or as multipart: an ``image`` file and a ``query``
    field (``SearchIn`` as JSON); with ``query.region`` (box, points or mask) the region of the
    uploaded image is the query, otherwise the whole image."""
    index, settings = request.app.state.index, request.app.state.settings
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    image: bytes | None = None
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise QueryError("multipart search needs an 'image' file field")
        image = await read_upload(upload, settings)
        raw = form.get("query") or "{}"
        if not isinstance(raw, str):
            raise QueryError("the 'query' form field must be JSON text")
        payload = _json(raw)
    elif ctype == "application/json":
        payload = _json((await request.body()).decode("utf-8", errors="replace"))
    else:
        raise QueryError(
            f"send application/json or multipart/form-data, got {ctype or 'no content type'!r}"
        )
    body = SearchIn.model_validate(payload)  # ValidationError -> 422
    if body.k > settings.max_k:
        raise QueryError(f"k must be at most {settings.max_k}, got {body.k}")
    query = body.to_query(image, settings.max_upload_pixels)
    started = time.perf_counter()
    page = await run_in_threadpool(index.query, query)
    out = page.to_dict()
    out["hits"] = [hit_json(h) for h in page.hits]
    out["query_regions"] = [
        {
            "method": r.method,
            "bbox": [float(v) for v in r.box],
            "rle": dict(rle_codec.encode(r.mask)),
        }
        for r in page.query_regions
    ]
    out["took_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return out


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise QueryError(f"request body is not valid JSON: {e}") from None
