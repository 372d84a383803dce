"""Video tracks and video files: a track with its sampled frames (times, boxes, RLE masks), a
frame of a track drawn with its mask and box, and the video file itself, served with HTTP range
requests so that a page can seek in it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse, Response

from segindex.errors import NotFoundError
from segindex.service import render
from segindex.service.frames import region_pixels
from segindex.service.routes_data import NO_CACHE, IndexDep
from segindex.service.routes_search import hit_json

router = APIRouter()
TrackId = Annotated[int, Path(ge=1, le=2**62, description="stable track id")]
VideoId = Annotated[int, Path(ge=1, le=2**62, description="video id (its image id)")]
FrameIndex = Annotated[
    int, Path(ge=0, le=2**62, description="the frame's index in its video (0-based)")
]
#: video containers a browser may play, by suffix; others are served as octet streams
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
}


@router.get("/tracks/{track_id}", tags=["videos"])
def get_track(track_id: TrackId, index: IndexDep) -> dict[str, Any]:
    """A video track: label, span (``start_s``, ``end_s``), its video (path, size, fps, URL)
    and every sampled frame in time order with ``frame_index``, ``time_s``, ``bbox`` (XYXY
    pixels of the upright frame), ``rle`` (COCO) and the URL of its overlay picture."""
    track = index.track(track_id)
    out = hit_json(track)
    out["frames"] = []
    for frame in track.frames():
        item = frame.to_dict()
        item["urls"] = {
            "overlay": f"/tracks/{track_id}/frames/{frame.frame_index}/overlay.png",
            "thumb": f"/regions/{frame.region_id}/thumb.png",
        }
        out["frames"].append(item)
    row = index.store.image_row(track.image_id)
    out["video"] = {
        "id": track.image_id,
        "path": track.video_path,
        "width": None if row is None else row.width,
        "height": None if row is None else row.height,
        "fps": None if row is None else row.fps,
        "duration_s": None if row is None else row.duration_s,
        "url": f"/videos/{track.image_id}",
        "media_type": _media_type(track.video_path),
    }
    return out


@router.get(
    "/tracks/{track_id}/frames/{frame_index}/overlay.png",
    tags=["videos"],
    response_class=Response,
)
def track_frame_overlay(
    track_id: TrackId,
    frame_index: FrameIndex,
    index: IndexDep,
    size: Annotated[int | None, Query(ge=16, le=4096, description="longest side")] = None,
) -> Response:
    """Frame ``frame_index`` of the track's video with the track's mask tinted and outlined,
    its box drawn and its label; ``size`` shrinks it to fit (a filmstrip). 404 when the track
    was not sampled at that frame."""
    track = index.track(track_id)
    frame = next((f for f in track.frames() if f.frame_index == frame_index), None)
    if frame is None:
        raise NotFoundError(f"track {track_id} has no sampled frame {frame_index}")
    pixels = region_pixels(index, frame)
    data = render.overlay_png(
        pixels, [frame.mask()], [track.label], [frame.bbox], draw_boxes=True, max_side=size
    )
    return Response(content=data, media_type="image/png", headers=NO_CACHE)


@router.get("/videos/{video_id}", tags=["videos"], response_class=FileResponse)
def get_video(video_id: VideoId, index: IndexDep) -> FileResponse:
    """The indexed video's file (by id only, never by a path), with ``Accept-Ranges: bytes``:
    a ``Range`` request gets ``206 Partial Content``, so a player can seek."""
    row = index.store.image_row(video_id)
    if row is None or row.media != "video":
        raise NotFoundError(f"no indexed video with id {video_id} in this index")
    path = index.image_file(video_id)
    return FileResponse(path, media_type=_media_type(str(path)), headers=NO_CACHE)


def _media_type(path: str) -> str:
    suffix = path[path.rfind(".") :].lower() if "." in path else ""
    return MEDIA_TYPES.get(suffix, "application/octet-stream")
