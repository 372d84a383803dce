"""The given-masks segmenter (``coco``): COCO files in, regions out, matched by file name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segindex.config import CropPolicy
from segindex.errors import ConfigError
from segindex.formats.coco import from_coco_dict, load_masks
from segindex.rle import decode, encode
from segindex.segment import SEGMENTERS
from segindex.testing.fakes import draw_scene

SHAPES = [("red", (10, 10, 50, 40)), ("blue", (60, 50, 120, 90))]


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Two images in nested folders and a COCO instance file: a polygon, a compressed RLE, an
    uncompressed RLE and a crowd annotation."""
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir(parents=True)
    img = draw_scene(SHAPES)
    Image.fromarray(img).save(root / "a" / "x.png")
    Image.fromarray(img).save(root / "b" / "y.png")
    red = np.zeros((96, 128), bool)
    red[10:40, 10:50] = True
    blue = np.zeros((96, 128), bool)
    blue[50:90, 60:120] = True
    uncompressed = {"size": [96, 128], "counts": _uncompressed_counts(blue)}
    data = {
        "images": [
            {"id": 1, "file_name": "a/x.png", "height": 96, "width": 128},
            {"id": 2, "file_name": "b/y.png", "height": 96, "width": 128},
        ],
        "categories": [
            {"id": 1, "name": "red thing", "isthing": 1},
            {"id": 2, "name": "blue thing"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0,
             "segmentation": dict(encode(blue))},
            {"id": 3, "image_id": 2, "category_id": 2, "iscrowd": 0, "segmentation": uncompressed},
            {"id": 4, "image_id": 2, "category_id": 1, "iscrowd": 1,
             "segmentation": dict(encode(red))},
        ],
    }  # fmt: skip
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return root, ann, {"red": red, "blue": blue}


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.ravel().astype(np.int8)  # column-major, as COCO RLE
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return np.diff(np.concatenate([[0], changes])).tolist()


def test_registered_by_entry_point() -> None:
    assert "coco" in SEGMENTERS.names()


def test_segments_polygons_and_rles_by_path(labelled) -> None:  # type: ignore[no-untyped-def]
    root, ann, truth = labelled
    seg = SEGMENTERS.build("coco", annotations=str(ann))
    img = draw_scene(SHAPES)
    x, y = seg.segment([img, img], paths=[str(root / "a" / "x.png"), str(root / "b" / "y.png")])
    assert list(x.labels) == ["red thing", "blue thing"] and list(x.label_ids) == [1, 2]
    assert x.is_thing.tolist() == [True, True]
    # polygon vertices lie on pixel corners: pycocotools rasterises the rectangle's interior
    assert abs(int(x.masks[0].sum()) - int(truth["red"].sum())) <= 80
    np.testing.assert_array_equal(x.masks[1], truth["blue"])
    assert list(y.labels) == ["blue thing"]  # crowd left out by default
    np.testing.assert_array_equal(y.masks[0], truth["blue"])
    crowd = SEGMENTERS.build("coco", annotations=str(ann), include_crowd=True)
    assert len(crowd.segment([img], paths=[str(root / "b" / "y.png")])[0]) == 2


def test_needs_paths_seam(labelled) -> None:  # type: ignore[no-untyped-def]
    _, ann, _ = labelled
    seg = SEGMENTERS.build("coco", annotations=str(ann))
    with pytest.raises(ConfigError, match="needs the source path"):
        seg.segment([draw_scene(SHAPES)])
    fake = SEGMENTERS.build("fake")
    assert not fake.needs_paths
    assert len(fake.segment([draw_scene(SHAPES)], paths=["ignored.png"])) == 1


def test_file_matching_rule(labelled, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, ann, _ = labelled
    ms = load_masks(ann)
    assert ms.find(root / "a" / "x.png", images_root=root).id == 1  # relative to the root
    assert ms.find("/elsewhere/b/y.png").id == 2  # trailing part of the path
    assert ms.find("y.png").id == 2  # unique base name
    assert ms.find("zzz.png") is None
    dup = json.loads(ann.read_text())
    dup["images"][1]["file_name"] = "b/x.png"
    p = tmp_path / "dup.json"
    p.write_text(json.dumps(dup))
    with pytest.raises(ConfigError, match="base name"):
        load_masks(p).find("/other/x.png")
    assert load_masks(p).find(root / "b" / "x.png", images_root=root).id == 2


def test_ingest_with_given_masks_records_unannotated_files(labelled, make_index) -> None:  # type: ignore[no-untyped-def]
    root, ann, truth = labelled
    Image.fromarray(draw_scene(SHAPES)).save(root / "stray.png")
    idx = make_index(
        segmenter="coco",
        segmenter_options={"annotations": str(ann), "images_root": str(root)},
        crop=CropPolicy(min_area_px=1, min_area_frac=0.0),
    )
    report = idx.ingest(root)
    assert report.indexed == 2 and report.regions == 3
    assert [Path(p).name for p, _ in report.failures] == ["stray.png"]
    assert "no annotation" in report.failures[0][1]
    coco = idx.export_coco()
    blue = [a for a in coco["annotations"] if a["category_id"] == 2]
    for a in blue:
        np.testing.assert_array_equal(decode(a["segmentation"]), truth["blue"])
    assert from_coco_dict(coco).category_by_name().keys() == {"red thing", "blue thing"}


def test_panoptic_ground_truth_ingests_exactly(tmp_path: Path, make_index) -> None:  # type: ignore[no-untyped-def]
    from segindex.eval.makeset import make_set
    from segindex.eval.segmentation import evaluate_segmentation

    info = make_set(tmp_path / "set", n=3, seed=1, size=(96, 128))
    idx = make_index(
        segmenter="coco",
        segmenter_options={"annotations": info["panoptic"]},
        crop=CropPolicy(min_area_px=1, min_area_frac=0.0),
    )
    report = idx.ingest(info["images_root"])
    assert report.indexed == 3 and report.failed == 0
    assert report.regions == info["segments"]
    r = evaluate_segmentation(from_coco_dict(idx.export_coco()), load_masks(info["panoptic"]))
    assert r["summary"]["pq"] == 1.0 and r["summary"]["miou"] == 1.0


def test_bad_annotation_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        SEGMENTERS.build("coco", annotations=str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a COCO JSON"):
        load_masks(bad)
