"""SAM 3 concept segmentation (``sam3`` segmenter) and SAM 3 video tracking (``sam3`` tracker)
with tiny random configs saved to a temp dir and loaded by path, as users load checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segindex.errors import ConfigError, ModelLoadError
from segindex.segment import SEGMENTERS

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_sam3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_sam3 import save_tiny_sam3

    return save_tiny_sam3(tmp_path_factory.mktemp("sam3"))


def image(h: int = 60, w: int = 80) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_segment_text_returns_every_instance_labelled(tiny_sam3: Path) -> None:
    seg = SEGMENTERS.build("sam3", model=str(tiny_sam3), device="cpu", threshold=0.0)
    r = seg.segment_text(image(), "umbrella")
    assert len(r) >= 1, "threshold 0 keeps every non-empty instance of the 8 queries"
    assert r.masks.shape[1:] == (60, 80) and r.masks.dtype == bool
    assert set(r.labels.tolist()) == {"umbrella"} and set(r.label_ids.tolist()) == {0}
    assert (np.diff(r.scores) <= 0).all(), "best first"
    two = seg.segment_text(image(), ["umbrella", "dog"])
    assert set(two.label_ids.tolist()) <= {0, 1} and 1 in two.label_ids
    strict = SEGMENTERS.build("sam3", model=str(tiny_sam3), device="cpu", threshold=1.0)
    assert len(strict.segment_text(image(), "umbrella")) == 0


def test_ingest_segmenter_uses_concepts_or_the_vocabulary(tiny_sam3: Path) -> None:
    seg = SEGMENTERS.build(
        "sam3", model=str(tiny_sam3), device="cpu", threshold=0.0, concepts=["cat", "dog"]
    )
    (r,) = seg.segment([image()])
    assert set(r.labels.tolist()) <= {"cat", "dog"} and len(r)
    assert seg.describe()["concepts"] == ["cat", "dog"]
    seg.use_vocabulary(["tree"])  # explicit concepts win over the index's vocabulary
    assert seg.concepts == ("cat", "dog")
    plain = SEGMENTERS.build("sam3", model=str(tiny_sam3), device="cpu", threshold=0.0)
    plain.use_vocabulary(["tree", "car"])
    (r,) = plain.segment([image()])
    assert set(r.labels.tolist()) <= {"tree", "car"}


def test_box_prompts_give_one_mask_per_box_and_points_are_refused(tiny_sam3: Path) -> None:
    seg = SEGMENTERS.build("sam3", model=str(tiny_sam3), device="cpu", threshold=0.0)
    assert seg.promptable
    r = seg.prompt(image(), boxes=np.array([[5, 5, 40, 40], [30, 20, 70, 55]], np.float32))
    assert len(r) == 2 and r.masks.shape == (2, 60, 80)
    with pytest.raises(ConfigError, match="box prompts only"):
        seg.prompt(image(), points=np.array([[3, 3]], np.float32))


@pytest.mark.parametrize(
    "options, match",
    [({"concepts": []}, "non-empty"), ({"concepts": ["a", " "]}, "empty"),
     ({"threshold": 2}, "threshold")],
)  # fmt: skip
def test_bad_options(tiny_sam3: Path, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SEGMENTERS.build("sam3", model=str(tiny_sam3), device="cpu", **options)


def test_missing_model_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        SEGMENTERS.build("sam3", model=str(tmp_path / "none"), device="cpu")


def test_cli_segment_text_with_sam3(tiny_sam3: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from segindex.cli import main

    photo = tmp_path / "photo.png"
    Image.fromarray(image()).save(photo)
    res = CliRunner().invoke(
        main,
        ["segment", str(photo), "-o", str(tmp_path / "out"), "--segmenter", "sam3",
         "--segmenter-model", str(tiny_sam3), "--segmenter-option", "threshold=0",
         "--text", "umbrella", "--device", "cpu", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    anns = out["annotations"]
    assert len(anns) >= 1, "every instance, not the CLIP top-1"
    assert [c["name"] for c in out["categories"]] == ["umbrella"]
    assert all("similarity" not in a for a in anns), "no CLIP ranking on this path"


def test_index_ingest_segments_its_label_vocabulary(
    tiny_sam3: Path, make_index, photos: Path
) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from segindex.config import LabelPolicy

    idx = make_index(
        segmenter="sam3",
        segmenter_options={"model": str(tiny_sam3), "threshold": 0.0},
        labels=LabelPolicy(vocabulary=("tree", "car")),
    )
    report = idx.ingest(photos)
    assert not report.failed and report.regions > 0
    with idx.store.engine.connect() as conn:
        got = conn.execute(
            text("select label, label_id from segindex_regions where kind = 'segment'")
        )
        labels = {(r.label, r.label_id) for r in got}
    assert labels and labels <= {("tree", 0), ("car", 1)}


# -- SAM 3 video tracking ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam3_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_sam3 import save_tiny_sam3_video

    return save_tiny_sam3_video(tmp_path_factory.mktemp("sam3v"))


def test_sam3_tracker_follows_instances_of_its_concepts(tiny_sam3_video: Path) -> None:
    from segindex.regions import Regions
    from segindex.track import TRACKERS

    tracker = TRACKERS.build(
        "sam3", model=str(tiny_sam3_video), concepts=["dog"], device="cpu", backfill=False
    )
    assert tracker.needs_frames and tracker.describe()["concepts"] == ["dog"]
    frames = [image(), image()[::-1].copy()]
    probe = tracker.propagator.start()  # SAM 3's own instances of "dog" in frame 0
    tracker.propagator.track(probe, frames[0], {})
    found = probe.found
    state = tracker.start()
    tracker.observe(state, 0, 0.0, frames[0])  # no objects yet: nothing to propagate
    assert state.session is None
    assert found.masks.shape[1:] == (60, 80) and found.masks.dtype == bool
    assert len(found.ids) >= 1, "thresholds 0: random weights still detect"
    k = int(np.argmax(found.masks.reshape(len(found.ids), -1).sum(1)))
    region = Regions.from_masks(found.masks[k : k + 1])
    ids = tracker.update(state, 0, 0.0, region, np.ones((1, 2), np.float32))
    assert ids.tolist() == [0]
    assert state.session.bound == {0: int(found.ids[k])}, "bound to the instance it covers"
    tracker.observe(state, 1, 0.1, frames[1])
    p = state.current.propagated
    assert p.ids.tolist() == [0] and p.masks.shape == (1, 60, 80)
    assert p.scores.dtype == np.float32 and 0 <= float(p.scores[0]) <= 1


def test_sam3_tracker_needs_concepts(tiny_sam3_video: Path) -> None:
    from segindex.track import TRACKERS

    with pytest.raises(ConfigError, match="concepts"):
        TRACKERS.build("sam3", model=str(tiny_sam3_video), device="cpu")
