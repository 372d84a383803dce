"""Regions and images by id (JSON, masks, cut-outs, overlays), uploads, deletes, stats."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    UploadFile,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from segindex.images import load_image
from segindex.index import Index
from segindex.service import render
from segindex.service.frames import region_pixels
from segindex.service.routes_search import hit_json
from segindex.service.uploads import read_upload

router = APIRouter()
RegionId = Annotated[int, Path(ge=1, le=2**62, description="region id")]
ImageId = Annotated[int, Path(ge=1, le=2**62, description="image id")]
CACHE = {"Cache-Control": "public, max-age=3600"}  # region ids are never reused
NO_CACHE = {"Cache-Control": "no-cache"}  # an image id keeps its id when its file changes


def get_index(request: Request) -> Index:
    return request.app.state.index


def require_key(
    request: Request,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Write endpoints need the API key when the service has one."""
    key = request.app.state.settings.api_key
    if key is None:
        return
    given = x_api_key
    if given is None and authorization and authorization.lower().startswith("bearer "):
        given = authorization[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), key.encode()):
        raise HTTPException(
            401,
            "this endpoint needs the API key (X-API-Key header)",
            {"WWW-Authenticate": "Bearer"},
        )


IndexDep = Annotated[Index, Depends(get_index)]


def image_json(index: Index, image_id: int) -> dict[str, Any]:
    row, regions = index.image(image_id)
    return {
        "id": int(row.id),
        "path": row.path,
        "width": row.width,
        "height": row.height,
        "n_regions": int(row.n_regions),
        "urls": {"image": f"/images/{row.id}", "overlay": f"/images/{row.id}/overlay.png"},
        "regions": [hit_json(r) for r in regions],
    }


def _png(data: bytes, headers: dict[str, str]) -> Response:
    return Response(content=data, media_type="image/png", headers=headers)


@router.get("/regions/{region_id}", tags=["regions"])
def get_region(region_id: RegionId, index: IndexDep) -> dict[str, Any]:
    """A region: label, score, box, area, mask as COCO RLE, and its picture URLs (a region of a
    video frame also has its ``frame_index``, ``time_s`` and ``track_id``)."""
    return hit_json(index.region(region_id))


@router.get("/regions/{region_id}/mask.png", tags=["regions"], response_class=Response)
def region_mask(region_id: RegionId, index: IndexDep) -> Response:
    """The mask at the image's size: white inside, black outside."""
    return _png(render.mask_png(index.region(region_id).mask()), CACHE)


@router.get("/regions/{region_id}/crop.png", tags=["regions"], response_class=Response)
def region_crop(region_id: RegionId, index: IndexDep) -> Response:
    """The region cut out of its image or video frame (tight box, transparent outside the
    mask)."""
    hit = index.region(region_id)
    pixels = region_pixels(index, hit)
    return _png(render.cutout_png(pixels, hit.mask(), hit.bbox), CACHE)


@router.get("/regions/{region_id}/thumb.png", tags=["regions"], response_class=Response)
def region_thumb(
    region_id: RegionId, index: IndexDep, size: Annotated[int, Query(ge=16, le=1024)] = 256
) -> Response:
    """A thumbnail: the region with context, mask tinted and outlined."""
    hit = index.region(region_id)
    pixels = region_pixels(index, hit)
    return _png(render.thumb_png(pixels, hit.mask(), hit.bbox, size), CACHE)


@router.get("/images/{image_id}", tags=["images"], response_class=FileResponse)
def get_image(image_id: ImageId, index: IndexDep) -> FileResponse:
    """The indexed image's file (images are served by id only, never by a path)."""
    return FileResponse(index.image_file(image_id), headers=NO_CACHE)


@router.get("/images/{image_id}/regions", tags=["images"])
def get_image_regions(image_id: ImageId, index: IndexDep) -> dict[str, Any]:
    """The image's size and all its regions (the whole-image region included)."""
    return image_json(index, image_id)


@router.get("/images/{image_id}/overlay.png", tags=["images"], response_class=Response)
def image_overlay(image_id: ImageId, index: IndexDep) -> Response:
    """The image with all its regions coloured, outlined and labelled."""
    _, regions = index.image(image_id)
    segments = [r for r in regions if r.kind == "segment"]
    pixels = load_image(index.image_file(image_id))
    data = render.overlay_png(
        pixels,
        [r.mask() for r in segments],
        [r.label for r in segments],
        [r.bbox for r in segments],
    )
    return _png(data, NO_CACHE)


@router.post("/images", tags=["images"], status_code=201, dependencies=[Depends(require_key)])
async def add_image(
    request: Request, index: IndexDep, image: Annotated[UploadFile, File()]
) -> dict[str, Any]:
    """Upload an image: it is stored in the index folder, segmented, embedded and indexed;
    returns it with its regions. The same bytes uploaded again return the same image."""
    settings = request.app.state.settings
    data = await read_upload(image, settings)
    image_id = await run_in_threadpool(
        index.add_image_bytes, data, max_pixels=settings.max_upload_pixels
    )
    return await run_in_threadpool(image_json, index, image_id)


@router.delete("/images/{image_id}", tags=["images"], dependencies=[Depends(require_key)])
def delete_image(image_id: ImageId, index: IndexDep) -> dict[str, Any]:
    """Remove an image, its regions and their vectors."""
    index.image(image_id)  # 404 for an unknown id
    removed = index.delete_images([image_id])
    return {"deleted": image_id, "regions_removed": removed}


@router.get("/stats", tags=["service"])
def stats(index: IndexDep) -> dict[str, Any]:
    """Counts (images, regions; videos, sampled frames, tracks), models, crop policy and the
    most frequent labels."""
    from segindex.store.track_rows import video_counts

    return {
        "counts": index.store.counts(),
        "videos": video_counts(index.store),
        "vectors": index.vectors.ntotal,
        "vector_dim": index.dim,
        "settings": index.settings.to_dict(),
        "embedder": index.store.get_meta("embedder_identity"),
        "labels": [{"label": label, "regions": n} for label, n in index.store.labels()[:200]],
    }


@router.get("/health", tags=["service"])
def health(index: IndexDep, request: Request) -> dict[str, Any]:
    """Liveness: the index answers (the service listens only once its query encoders are warm);
    ``status`` is ``degraded``, with the ``error``, when they could not be loaded."""
    out: dict[str, Any] = {"status": "ok", "images": index.store.counts()["images_indexed"]}
    error = request.app.state.readiness.error
    if error is not None:
        out.update(status="degraded", error=f"query encoders not ready: {error}")
    return out
