"""Given masks: a segmenter that reads ground truth instead of running a model.

Index labelled data (COCO instance JSON with RLE or polygons, or COCO panoptic PNG + JSON) so
that retrieval can be measured apart from segmentation errors::

    segindex ingest photos/ --index gt.segindex --segmenter coco \\
        --segmenter-option annotations=panoptic_val.json --segmenter-option images_root=photos

Each ingested file is matched to a COCO image by file name (relative to ``images_root`` when
given, else as a path, a trailing part of the path, or a unique base name; see
:mod:`segindex.formats.coco`). A file with no annotation entry fails with that reason (the run goes
on); an image whose size differs from its annotation fails too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from segindex.regions import Regions
from segindex.segment.base import Segmenter


class GivenMasksSegmenter(Segmenter):
    """Masks, classes and thing/stuff flags from a COCO file; scores are 1 (or the file's).

    annotations:    COCO instance or panoptic JSON file
    images_root:    folder the ``file_name`` entries are relative to (optional)
    panoptic_dir:   folder of the panoptic PNGs (default: beside the JSON, named like it)
    include_crowd:  also index ``iscrowd`` annotations (default: no)
    """

    name = "coco"
    needs_paths = True

    def __init__(
        self,
        annotations: str,
        images_root: str | None = None,
        panoptic_dir: str | None = None,
        include_crowd: bool = False,
        device: str = "cpu",
    ) -> None:
        from segindex.formats.coco import load_masks

        self.annotations = str(annotations)
        self.images_root = images_root
        self.include_crowd = bool(include_crowd)
        self.masks = load_masks(annotations, panoptic_dir=panoptic_dir)
        self._sha256 = hashlib.sha256(Path(annotations).read_bytes()).hexdigest()

    def _segment_batch(  # type: ignore[override]  # needs_paths: called with paths=
        self, images: list[np.ndarray], paths: list[str]
    ) -> list[Regions]:
        return [self._one(im, p) for im, p in zip(images, paths, strict=True)]

    def _one(self, image: np.ndarray, path: str) -> Regions:
        info = self.masks.find(path, self.images_root)
        if info is None:
            raise LookupError(f"no annotation for {path!r} in {self.annotations!r}")
        if (info.height, info.width) != image.shape[:2]:
            raise ValueError(
                f"annotation of {info.file_name!r} is {info.width}x{info.height}, "
                f"the image is {image.shape[1]}x{image.shape[0]}"
            )
        entry = self.masks.masks(info.id)
        keep = np.ones(len(entry.regions), dtype=bool) if self.include_crowd else ~entry.iscrowd
        return entry.regions[keep]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "annotations_sha256": self._sha256,
            "include_crowd": self.include_crowd,
        }
