"""YouTube-VIS JSON: the standard format of video instance segmentation, read and written.

A dataset file::

    {"videos": [{"id", "width", "height", "length", "file_names": [...]}, ...],
     "categories": [{"id", "name", "supercategory"}, ...],
     "annotations": [{"id", "video_id", "category_id", "iscrowd",
                      "segmentations": [RLE or None per annotated frame],
                      "areas": [int or None], "bboxes": [[x, y, w, h] or None]}, ...]}

A results file (predictions) is a list of ``{"video_id", "category_id", "score",
"segmentations"}``. ``None`` marks a frame where the object is absent.

segindex adds optional fields to each video, ignored by other tools: ``file_name`` (the video
file, e.g. ``videos/000000.mkv``), ``frame_indices`` (the decoded frame index of each annotated
frame) and ``times_s`` (its presentation time in seconds), so that sampled frames of a video can
be annotated without writing them out as images.

In memory every mask is compressed COCO RLE (:class:`segindex.rle.RLE`); polygons and
uncompressed RLE are converted on reading.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segindex import rle as rle_codec
from segindex.errors import ConfigError


@dataclass
class VisVideo:
    """One video: ``length`` annotated frames of ``height`` x ``width`` pixels."""

    id: int
    width: int
    height: int
    file_names: list[str]
    file_name: str | None = None
    frame_indices: list[int] | None = None
    times_s: list[float] | None = None

    @property
    def length(self) -> int:
        return len(self.file_names)


@dataclass
class VisTrack:
    """One object through a video: ``segmentations[f]`` is its RLE in annotated frame ``f`` of
    the video, or ``None`` where it is absent. ``score`` is set for predictions."""

    id: int
    video_id: int
    category_id: int
    segmentations: list[rle_codec.RLE | None]
    score: float | None = None
    iscrowd: int = 0

    def mask(self, frame: int) -> np.ndarray | None:
        """``HxW`` bool mask in annotated frame ``frame``, or ``None``."""
        seg = self.segmentations[frame]
        return None if seg is None else rle_codec.decode(seg)


@dataclass
class VisDataset:
    """Videos, categories (``{"id", "name", "supercategory"}`` dicts) and tracks."""

    videos: list[VisVideo]
    categories: list[dict[str, Any]]
    tracks: list[VisTrack]
    info: dict[str, Any] = field(default_factory=dict)

    def video(self, video_id: int) -> VisVideo:
        for v in self.videos:
            if v.id == video_id:
                return v
        raise ConfigError(f"no video with id {video_id}")

    def tracks_of(self, video_id: int) -> list[VisTrack]:
        return [t for t in self.tracks if t.video_id == video_id]

    def category_names(self) -> dict[int, str]:
        return {int(c["id"]): str(c["name"]) for c in self.categories}


def load_youtube_vis(
    source: str | Path | dict[str, Any] | list[Any], *, like: VisDataset | None = None
) -> VisDataset:
    """Read a YouTube-VIS dataset (file or parsed JSON), or a results list.

    A results list has no videos or categories of its own: give the ground truth as ``like``,
    whose videos and categories it refers to; result tracks are numbered 1, 2, ... in order.
    """
    data = _read_json(source) if isinstance(source, (str, Path)) else source
    name = str(source)[:80] if isinstance(source, (str, Path)) else "YouTube-VIS data"
    if isinstance(data, list):
        if like is None:
            raise ConfigError(f"{name} is a results list: give the dataset it refers to (like=)")
        like_ids = {v.id: v for v in like.videos}
        tracks = [_track(a, i + 1, like_ids, name) for i, a in enumerate(data)]
        return VisDataset(list(like.videos), list(like.categories), tracks, dict(like.info))
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise ConfigError(f"{name} is not YouTube-VIS JSON: it has no 'videos' list")
    try:
        videos = [_video(v) for v in data["videos"]]
        categories = [
            {"id": int(c["id"]), "name": str(c["name"]),
             "supercategory": str(c.get("supercategory", ""))}
            for c in data.get("categories", [])
        ]  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: malformed video or category entry ({exc!r})") from None
    by_id = {v.id: v for v in videos}
    if len(by_id) != len(videos):
        raise ConfigError(f"{name}: video ids are not unique")
    tracks = [
        _track(a, int(a.get("id", i + 1)), by_id, name)
        for i, a in enumerate(data.get("annotations") or [])
    ]
    known = {c["id"] for c in categories}
    for t in tracks:
        if known and t.category_id not in known:
            raise ConfigError(f"{name}: track {t.id} has unknown category_id {t.category_id}")
    return VisDataset(videos, categories, tracks, dict(data.get("info") or {}))


def to_dict(dataset: VisDataset) -> dict[str, Any]:
    """The dataset as YouTube-VIS JSON (areas and XYWH bboxes filled in from the masks)."""
    videos = []
    for v in dataset.videos:
        entry: dict[str, Any] = {"id": v.id, "width": v.width, "height": v.height,
                                 "length": v.length, "file_names": list(v.file_names)}  # fmt: skip
        if v.file_name is not None:
            entry["file_name"] = v.file_name
        if v.frame_indices is not None:
            entry["frame_indices"] = [int(i) for i in v.frame_indices]
        if v.times_s is not None:
            entry["times_s"] = [float(t) for t in v.times_s]
        videos.append(entry)
    annotations = []
    for t in dataset.tracks:
        v = dataset.video(t.video_id)
        a: dict[str, Any] = {
            "id": t.id,
            "video_id": t.video_id,
            "category_id": t.category_id,
            "iscrowd": t.iscrowd,
            "height": v.height,
            "width": v.width,
            "length": 1,
            "segmentations": [None if s is None else dict(s) for s in t.segmentations],
            "areas": [None if s is None else rle_codec.area(s) for s in t.segmentations],
            "bboxes": [None if s is None else rle_codec.bbox(s) for s in t.segmentations],
        }
        if t.score is not None:
            a["score"] = float(t.score)
        annotations.append(a)
    return {"info": dataset.info, "videos": videos, "categories": dataset.categories,
            "annotations": annotations}  # fmt: skip


def to_results(dataset: VisDataset) -> list[dict[str, Any]]:
    """The tracks as a YouTube-VIS results list (score 1.0 where a track has none)."""
    return [
        {"video_id": t.video_id, "category_id": t.category_id,
         "score": 1.0 if t.score is None else float(t.score),
         "segmentations": [None if s is None else dict(s) for s in t.segmentations]}
        for t in dataset.tracks
    ]  # fmt: skip


def save_youtube_vis(dataset: VisDataset, path: str | Path) -> Path:
    """Write :func:`to_dict` of ``dataset`` to ``path`` (compact, sorted keys: reproducible)."""
    path = Path(path)
    path.write_text(json.dumps(to_dict(dataset), sort_keys=True, separators=(",", ":")))
    return path


def frame_regions(
    dataset: VisDataset, video_id: int, frame: int
) -> tuple[list[VisTrack], np.ndarray]:
    """The tracks present in annotated frame ``frame`` of a video and their ``NxHxW`` bool
    masks (``N`` may be 0)."""
    v = dataset.video(video_id)
    if not 0 <= frame < v.length:
        raise ConfigError(f"video {video_id} has {v.length} annotated frames, not frame {frame}")
    present = [t for t in dataset.tracks_of(video_id) if t.segmentations[frame] is not None]
    masks = [m for t in present if (m := t.mask(frame)) is not None]  # all, as present
    stack = np.stack(masks) if masks else np.zeros((0, v.height, v.width), dtype=bool)
    return present, stack


def _read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"YouTube-VIS file {str(p)!r} not found")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(p)!r} is not JSON: {exc}") from None


def _video(v: dict[str, Any]) -> VisVideo:
    file_names = [str(f) for f in v.get("file_names") or []]
    length = int(v.get("length", len(file_names)))
    if not file_names:
        file_names = [f"{int(v['id'])}/{i:05d}" for i in range(length)]
    if length != len(file_names):
        raise ValueError(f"video {v['id']}: length {length} but {len(file_names)} file_names")
    frames, times = v.get("frame_indices"), v.get("times_s")
    for key, values in (("frame_indices", frames), ("times_s", times)):
        if values is not None and len(values) != length:
            raise ValueError(f"video {v['id']}: {len(values)} {key} for {length} frames")
    return VisVideo(
        id=int(v["id"]),
        width=int(v["width"]),
        height=int(v["height"]),
        file_names=file_names,
        file_name=None if v.get("file_name") is None else str(v["file_name"]),
        frame_indices=None if frames is None else [int(i) for i in frames],
        times_s=None if times is None else [float(t) for t in times],
    )


def _track(a: Any, track_id: int, videos: dict[int, VisVideo], name: str) -> VisTrack:
    if not isinstance(a, dict):
        raise ConfigError(f"{name}: an annotation must be an object, got {type(a).__name__}")
    try:
        video_id, segs, category_id = int(a["video_id"]), a["segmentations"], int(a["category_id"])
    except KeyError as exc:
        raise ConfigError(f"{name}: annotation {track_id} has no {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: annotation {track_id} is malformed ({exc})") from None
    video = videos.get(video_id)
    if video is None:
        raise ConfigError(f"{name}: annotation {track_id} refers to unknown video_id {video_id}")
    if not isinstance(segs, list) or len(segs) != video.length:
        got = len(segs) if isinstance(segs, list) else type(segs).__name__
        raise ConfigError(
            f"{name}: annotation {track_id} has {got} segmentations, video {video.id} has "
            f"{video.length} frames"
        )
    rles = [None if s is None else _rle(s, video, track_id, name) for s in segs]
    score = a.get("score")
    return VisTrack(
        id=track_id,
        video_id=video.id,
        category_id=category_id,
        segmentations=rles,
        score=None if score is None else float(score),
        iscrowd=int(a.get("iscrowd", 0)),
    )


def _rle(seg: Any, video: VisVideo, track_id: int, name: str) -> rle_codec.RLE:
    size = [video.height, video.width]
    if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        if list(seg.get("size", [])) != size:
            raise ConfigError(
                f"{name}: annotation {track_id} has a {seg.get('size')} mask in video "
                f"{video.id} of size {size}"
            )
        return {"size": size, "counts": seg["counts"]}
    from segindex.formats.coco import decode_segmentation

    return rle_codec.encode(decode_segmentation(seg, video.height, video.width))


def tracks_from_ids(
    video_id: int,
    n_frames: int,
    frame_ids: Sequence[np.ndarray],
    frame_masks: Sequence[np.ndarray],
    category_of: dict[int, int],
    *,
    first_id: int = 1,
) -> list[VisTrack]:
    """Tracks of one video from per-frame results: ``frame_ids[f]`` ``(N_f,)`` int64 track ids
    and ``frame_masks[f]`` ``N_f x H x W`` bool masks of annotated frame ``f``;
    ``category_of`` maps each track id to its category id. Tracks are numbered from
    ``first_id`` in order of track id."""
    if len(frame_ids) != n_frames or len(frame_masks) != n_frames:
        raise ValueError(f"need ids and masks for {n_frames} frames")
    segs: dict[int, list[rle_codec.RLE | None]] = {}
    for f, (ids, masks) in enumerate(zip(frame_ids, frame_masks, strict=True)):
        if len(ids) != len(masks):
            raise ValueError(f"frame {f}: {len(ids)} ids for {len(masks)} masks")
        for tid, rle in zip(ids.tolist(), rle_codec.encode_many(masks), strict=True):
            segs.setdefault(int(tid), [None] * n_frames)[f] = rle
    return [
        VisTrack(first_id + k, video_id, category_of[tid], segs[tid])
        for k, tid in enumerate(sorted(segs))
    ]
