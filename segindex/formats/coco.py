"""COCO masks in and out: instance JSON (RLE or polygons) and panoptic PNG + JSON.

A :class:`MaskSet` is one COCO file's images and categories with each image's masks decoded on
demand into :class:`~segindex.regions.Regions` (``label_ids`` = COCO category ids, ``labels`` =
category names, ``scores`` = the annotation's ``score`` or 1). It serves as ground truth, as
predictions (a COCO file, or :meth:`segindex.Index.export_coco`) and as the source of the
given-masks segmenter.

File matching (:meth:`MaskSet.find`): an image file ``path`` belongs to the COCO image whose
``file_name`` is, in this order of preference,

1. the path relative to ``images_root`` (when given and ``path`` lies inside it), as POSIX text;
2. the path itself, as given or resolved to an absolute path;
3. a trailing part of the path on a folder boundary (``val/0001.jpg`` matches
   ``/data/coco/val/0001.jpg``), the longest such ``file_name`` winning;
4. the same base name (``0001.jpg``), when exactly one image has it.

A base name shared by several images is refused (:class:`~segindex.errors.ConfigError`) rather
than guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from segindex.errors import ConfigError
from segindex.regions import Regions


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    isthing: bool


@dataclass(frozen=True)
class ImageInfo:
    id: int
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class ImageMasks:
    """One image's annotations: ``regions`` plus parallel ``(N,)`` bool ``iscrowd`` and
    ``(N,)`` int64 ``ann_ids`` (annotation ids, or panoptic segment ids)."""

    image: ImageInfo
    regions: Regions
    iscrowd: np.ndarray
    ann_ids: np.ndarray


class MaskSet:
    """Images, categories and lazily decoded masks of one COCO instance or panoptic file."""

    def __init__(
        self,
        images: list[ImageInfo],
        categories: list[Category],
        annotations: dict[int, list[dict[str, Any]]],
        *,
        panoptic_dir: Path | None = None,
        panoptic_files: dict[int, str] | None = None,
        source: str = "",
    ) -> None:
        self.images = images
        self.categories = {c.id: c for c in categories}
        self.source = source
        self._anns = annotations
        self._panoptic_dir = panoptic_dir
        self._panoptic_files = panoptic_files or {}
        self._by_id = {im.id: im for im in images}
        self._by_name: dict[str, ImageInfo] = {}
        self._by_base: dict[str, list[ImageInfo]] = {}
        for im in images:
            self._by_name.setdefault(im.file_name, im)
            self._by_base.setdefault(PurePosixPath(im.file_name).name, []).append(im)

    @property
    def is_panoptic(self) -> bool:
        return self._panoptic_dir is not None

    def __len__(self) -> int:
        return len(self.images)

    def image(self, image_id: int) -> ImageInfo:
        return self._by_id[image_id]

    def category_by_name(self) -> dict[str, Category]:
        return {c.name: c for c in self.categories.values()}

    # -- matching files -----------------------------------------------------------------------

    def find(self, path: str | Path, images_root: str | Path | None = None) -> ImageInfo | None:
        """The image ``path`` belongs to (see the module docstring for the rule), or ``None``."""
        text = str(path)
        if images_root is not None:
            try:
                rel = Path(text).resolve().relative_to(Path(images_root).resolve())
            except ValueError:
                rel = None
            if rel is not None and rel.as_posix() in self._by_name:
                return self._by_name[rel.as_posix()]
        for key in (text, Path(text).as_posix(), str(Path(text).resolve())):
            if key in self._by_name:
                return self._by_name[key]
        same = self._by_base.get(Path(text).name, [])
        tails = {Path(text).as_posix(), Path(text).resolve().as_posix()}
        suffixed = [
            im for im in same if any(t.endswith("/" + im.file_name.lstrip("/")) for t in tails)
        ]
        if suffixed:
            return max(suffixed, key=lambda im: len(im.file_name))
        if len(same) > 1:
            raise ConfigError(
                f"{text!r} matches {len(same)} images by base name in {self.source!r} "
                f"({', '.join(i.file_name for i in same[:3])}...); give images_root so the "
                "file can be matched by its relative path"
            )
        return same[0] if same else None

    # -- masks ---------------------------------------------------------------------------------

    def masks(self, image_id: int) -> ImageMasks:
        """Decode one image's annotations (all of them, crowd included)."""
        im = self._by_id[image_id]
        if self._panoptic_dir is not None:
            return self._panoptic_masks(im)
        anns = self._anns.get(image_id, [])
        masks = np.zeros((len(anns), im.height, im.width), dtype=bool)
        for i, a in enumerate(anns):
            masks[i] = decode_segmentation(a.get("segmentation"), im.height, im.width)
        return self._build(im, anns, masks)

    def annotations(self, image_id: int) -> list[dict[str, Any]]:
        """One image's raw annotation dicts (panoptic: its ``segments_info``), in the order of
        :meth:`masks`; extra keys such as ``"source"`` (the evaluation set's source instance)
        are kept."""
        return list(self._anns.get(image_id, []))

    def __iter__(self) -> Iterator[ImageMasks]:
        for im in self.images:
            yield self.masks(im.id)

    def _panoptic_masks(self, im: ImageInfo) -> ImageMasks:
        from PIL import Image

        anns = self._anns.get(im.id, [])
        png = self._panoptic_files.get(im.id)
        if png is None:
            ids = np.zeros((im.height, im.width), dtype=np.int64)
        else:
            path = self._panoptic_dir / png  # type: ignore[operator]  # files come with their dir
            if not path.exists():
                raise ConfigError(f"panoptic PNG {str(path)!r} (image {im.file_name!r}) not found")
            ids = rgb_to_id(np.asarray(Image.open(path).convert("RGB")))
        if ids.shape != (im.height, im.width):
            raise ConfigError(
                f"panoptic PNG of {im.file_name!r} is {ids.shape[1]}x{ids.shape[0]}, "
                f"the JSON says {im.width}x{im.height}"
            )
        masks = np.stack([ids == int(a["id"]) for a in anns]) if anns else None
        if masks is None:
            masks = np.zeros((0, im.height, im.width), dtype=bool)
        return self._build(im, anns, masks)

    def _build(self, im: ImageInfo, anns: list[dict[str, Any]], masks: np.ndarray) -> ImageMasks:
        cats = []
        for a in anns:
            c = self.categories.get(int(a["category_id"]))
            if c is None:
                raise ConfigError(
                    f"annotation {a.get('id')} of {im.file_name!r} has unknown category "
                    f"{a['category_id']} in {self.source!r}"
                )
            cats.append(c)
        regions = Regions.from_masks(
            masks,
            label_ids=[c.id for c in cats],
            labels=[c.name for c in cats],
            scores=[float(a.get("score", 1.0)) for a in anns],
            is_thing=[c.isthing for c in cats],
        )
        return ImageMasks(
            image=im,
            regions=regions,
            iscrowd=np.asarray([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
            ann_ids=np.asarray([int(a.get("id", i)) for i, a in enumerate(anns)], dtype=np.int64),
        )


# -- reading ---------------------------------------------------------------------------------


def load_masks(path: str | Path, *, panoptic_dir: str | Path | None = None) -> MaskSet:
    """Read a COCO instance or panoptic JSON file (detected from its annotations).

    A panoptic file's PNGs are looked up in ``panoptic_dir``, else in the folder named like the
    JSON file without its suffix beside it (``panoptic_val2017.json`` -> ``panoptic_val2017/``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"COCO annotation file {str(path)!r} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{str(path)!r} is not a COCO JSON file: {e}") from None
    if not isinstance(data, dict) or "images" not in data:
        raise ConfigError(f"{str(path)!r} is not a COCO JSON file: it has no 'images' list")
    if panoptic_dir is None and _is_panoptic(data):
        panoptic_dir = path.with_suffix("")
    return from_coco_dict(data, source=str(path), panoptic_dir=panoptic_dir)


def _is_panoptic(data: dict[str, Any]) -> bool:
    anns = data.get("annotations") or []
    return bool(anns) and "segments_info" in anns[0]


def from_coco_dict(
    data: dict[str, Any], *, source: str = "<dict>", panoptic_dir: str | Path | None = None
) -> MaskSet:
    """A :class:`MaskSet` from an already parsed COCO dict (e.g. ``Index.export_coco()``)."""
    images = [
        ImageInfo(int(i["id"]), str(i["file_name"]), int(i["height"]), int(i["width"]))
        for i in data.get("images", [])
    ]
    categories = [
        Category(int(c["id"]), str(c["name"]), bool(c.get("isthing", 1)))
        for c in data.get("categories", [])
    ]
    anns: dict[int, list[dict[str, Any]]] = {}
    if _is_panoptic(data):
        if panoptic_dir is None:
            raise ConfigError(f"{source!r} is COCO panoptic: give the folder of its PNG files")
        pdir = Path(panoptic_dir)
        if not pdir.is_dir():
            raise ConfigError(f"panoptic PNG folder {str(pdir)!r} of {source!r} not found")
        files: dict[int, str] = {}
        for a in data["annotations"]:
            image_id = int(a["image_id"])
            files[image_id] = str(a["file_name"])
            anns[image_id] = list(a.get("segments_info", []))
        return MaskSet(images, categories, anns, panoptic_dir=pdir, panoptic_files=files,
                       source=source)  # fmt: skip
    for a in data.get("annotations", []):
        anns.setdefault(int(a["image_id"]), []).append(a)
    return MaskSet(images, categories, anns, source=source)


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """``HxW`` bool mask of a COCO ``segmentation``: polygons, uncompressed or compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, height, width)
    elif isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
        counts = seg["counts"]
        rle = {"size": list(seg["size"]), "counts": counts.encode() if isinstance(counts, str)
               else counts}  # fmt: skip
    else:
        raise ConfigError(f"unsupported COCO segmentation {type(seg).__name__}: {str(seg)[:80]}")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise ConfigError(f"segmentation is {mask.shape}, the image is {(height, width)}")
    return mask


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """COCO panoptic ids (``R + 256 G + 256^2 B``) of an ``HxWx3`` uint8 PNG, as int64."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """``HxWx3`` uint8 PNG colours of ``HxW`` int panoptic ids (inverse of :func:`rgb_to_id`)."""
    ids = ids.astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)
