"""COCO export of indexed regions (dataset layout, annotations carry scores and RLE masks)."""

from __future__ import annotations

from typing import Any

from segindex.store.sql import Store


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
