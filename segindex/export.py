"""Exports: COCO (indexed regions, annotations carry scores and RLE masks) and YouTube-VIS
(video tracks, a per-frame RLE list per track)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from segindex.store.sql import Store

if TYPE_CHECKING:
    from segindex.formats.youtube_vis import VisDataset


def to_coco(store: Store, include_whole_images: bool = False) -> dict[str, Any]:
    """COCO dict: ``images``, ``categories`` (by label name), ``annotations`` (RLE, XYWH)."""
    images = [
        {"id": r.id, "file_name": r.path, "width": r.width, "height": r.height}
        for r in store.indexed_images()
    ]
    categories: dict[str, dict[str, Any]] = {}
    annotations = []
    for r in store.iter_regions():
        if r.kind != "segment" and not include_whole_images:
            continue
        cat = categories.get(r.label)
        if cat is None:
            cat = {
                "id": len(categories) + 1,
                "name": r.label,
                "isthing": int(bool(r.is_thing)),
                "segindex_label_id": int(r.label_id),
            }
            categories[r.label] = cat
        annotations.append(
            {
                "id": int(r.id),
                "image_id": int(r.image_id),
                "category_id": cat["id"],
                "segmentation": {"size": [int(r.height), int(r.width)], "counts": r.rle},
                "area": int(r.area),
                "bbox": [float(r.x0), float(r.y0), float(r.x1 - r.x0), float(r.y1 - r.y0)],
                "score": float(r.score),
                "iscrowd": 0,
                "segindex_kind": r.kind,
            }
        )
    return {
        "info": {"description": "segindex export"},
        "images": images,
        "categories": list(categories.values()),
        "annotations": annotations,
    }


def to_youtube_vis(store: Store) -> VisDataset:
    """The indexed video tracks as a YouTube-VIS dataset (:mod:`segindex.formats.youtube_vis`).

    One video per indexed video (``id`` = its image id, ``file_name`` its path); its annotated
    frames are its sampled frames (``frame_indices``, ``times_s``; ``file_names`` are
    ``"<path>#frame=<index>"``). One annotation per track (``id`` = the stable track id,
    ``score`` its vote score) with a COCO RLE in every sampled frame where it was found and
    ``None`` elsewhere. Categories are numbered by label name in order of first use.
    """
    from segindex.formats.frame_ref import FrameRef
    from segindex.formats.youtube_vis import VisDataset, VisTrack, VisVideo
    from segindex.store.track_rows import sampled_frames, track_masks, video_tracks

    frames = sampled_frames(store)
    tracks = video_tracks(store)
    videos: dict[int, VisVideo] = {}
    position: dict[int, dict[int, int]] = {}  # video id -> frame index -> annotated frame
    for row in tracks:
        vid = int(row.image_id)
        if vid in videos:
            continue
        sampled = frames.get(vid, [])
        videos[vid] = VisVideo(
            id=vid,
            width=int(row.width),
            height=int(row.height),
            file_names=[FrameRef(row.path, i).to_str() for i, _ in sampled],
            file_name=row.path,
            frame_indices=[i for i, _ in sampled],
            times_s=[t for _, t in sampled],
        )
        position[vid] = {i: k for k, (i, _) in enumerate(sampled)}
    categories: dict[str, int] = {}
    out: dict[int, VisTrack] = {}
    for row in tracks:
        vid = int(row.image_id)
        cat = categories.setdefault(str(row.label), len(categories) + 1)
        out[int(row.id)] = VisTrack(
            id=int(row.id),
            video_id=vid,
            category_id=cat,
            segmentations=[None] * videos[vid].length,
            score=None if row.score is None else float(row.score),
        )
    for track_id, frame_index, counts in track_masks(store):
        t = out.get(track_id)
        if t is None:  # a track of a video still being ingested
            continue
        v = videos[t.video_id]
        t.segmentations[position[t.video_id][frame_index]] = {
            "size": [v.height, v.width],
            "counts": counts,
        }
    return VisDataset(
        videos=list(videos.values()),
        categories=[{"id": i, "name": n, "supercategory": ""} for n, i in categories.items()],
        tracks=list(out.values()),
        info={"description": "segindex export"},
    )
