"""Given video masks: a segmenter that reads YouTube-VIS ground truth instead of running a model.

Index videos with their ground-truth masks, so that tracking (and track retrieval) can be
measured apart from segmentation errors::

    segindex ingest clips/videos --index gt.segindex --segmenter youtube_vis \\
        --segmenter-option annotations=clips/youtube_vis.json --segmenter-option videos_root=clips

Ingest hands a ``needs_paths`` segmenter the path ``"<video path>#frame=<index>"``
(:class:`~segindex.formats.frame_ref.FrameRef`) for each sampled frame. The video is matched to
a YouTube-VIS video by its ``file_name`` (relative to ``videos_root`` when given, else as a
path, a trailing part of the path or a unique base name, as for COCO images), the frame index
to an annotated frame by the video's ``frame_indices`` (the annotated frames are
``0 .. length-1`` when it has none). A frame that is not annotated fails with that reason.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from segindex.formats.frame_ref import FrameRef
from segindex.regions import Regions
from segindex.segment.base import Segmenter


class GivenVideoMasksSegmenter(Segmenter):
    """Masks and categories of the tracks present in each annotated frame; scores are 1.

    annotations:  YouTube-VIS JSON file (e.g. written by ``segindex eval make-set --video``)
    videos_root:  folder the videos' ``file_name`` entries are relative to (optional)
    """

    name = "youtube_vis"
    needs_paths = True

    def __init__(
        self, annotations: str, videos_root: str | None = None, device: str = "cpu"
    ) -> None:
        from segindex.formats.coco import ImageInfo, MaskSet
        from segindex.formats.youtube_vis import load_youtube_vis

        self.annotations = str(annotations)
        self.videos_root = videos_root
        self.data = load_youtube_vis(annotations)
        self._sha256 = hashlib.sha256(Path(annotations).read_bytes()).hexdigest()
        infos = [
            ImageInfo(v.id, v.file_name, v.height, v.width)
            for v in self.data.videos
            if v.file_name is not None
        ]
        self._files = MaskSet(infos, [], {}, source=self.annotations)  # file matching only
        self._names = self.data.category_names()

    def _segment_batch(  # type: ignore[override]  # needs_paths: called with paths=
        self, images: list[np.ndarray], paths: list[str]
    ) -> list[Regions]:
        return [self._one(im, p) for im, p in zip(images, paths, strict=True)]

    def _one(self, image: np.ndarray, path: str) -> Regions:
        from segindex.formats.youtube_vis import frame_regions

        try:
            ref = FrameRef.parse(path)
        except ValueError as exc:
            raise LookupError(str(exc)) from None
        video_path, frame = ref.path, ref.index
        info = self._files.find(video_path, self.videos_root)
        if info is None:
            raise LookupError(f"no video for {video_path!r} in {self.annotations!r}")
        video = self.data.video(info.id)
        indices = video.frame_indices or list(range(video.length))
        if frame not in indices:
            raise LookupError(f"frame {frame} of {video_path!r} is not annotated")
        if (video.height, video.width) != image.shape[:2]:
            raise ValueError(
                f"annotation of {video.file_name!r} is {video.width}x{video.height}, the frame "
                f"is {image.shape[1]}x{image.shape[0]}"
            )
        tracks, masks = frame_regions(self.data, video.id, indices.index(frame))
        return Regions.from_masks(
            masks,
            label_ids=[t.category_id for t in tracks],
            labels=[self._names.get(t.category_id, str(t.category_id)) for t in tracks],
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "annotations_sha256": self._sha256}
