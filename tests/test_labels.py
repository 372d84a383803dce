"""Open-vocabulary labels for class-agnostic regions (CLIP zero-shot), with the fake embedder
whose text and crop vectors are known, and through ingestion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex.config import IndexSettings, LabelPolicy
from segindex.data.coco_panoptic import COCO_PANOPTIC_CATEGORIES
from segindex.errors import ConfigError
from segindex.labels import label_regions, name_class_agnostic, prompt_name, text_vectors
from segindex.regions import Regions
from segindex.segment import SEGMENTERS
from segindex.testing.fakes import PALETTE, FakeEmbedder, FakeSegmenter

VOCAB = ("red", "green", "blue")


def pure(colour: str) -> np.ndarray:
    return np.full((8, 8, 3), PALETTE[colour], dtype=np.uint8)


def test_label_regions_picks_the_right_names() -> None:
    emb = FakeEmbedder()
    crops = emb.embed_images([pure("blue"), pure("red"), pure("green")])
    ids, labels, conf = label_regions(crops, emb, VOCAB)
    assert ids.tolist() == [2, 0, 1] and labels.tolist() == ["blue", "red", "green"]
    assert conf.dtype == np.float32 and ((conf > 0.5) & (conf <= 1.0)).all()
    soft = label_regions(crops, emb, VOCAB, temperature=1.0)[2]
    assert (soft < conf).all()  # a lower temperature is less sure
    empty = label_regions(np.zeros((0, emb.dim), np.float32), emb, VOCAB)
    assert [len(a) for a in empty] == [0, 0, 0]
    with pytest.raises(ValueError, match=r"crop_vectors must be \(N, 13\)"):
        label_regions(np.zeros((2, 5), np.float32), emb, VOCAB)


def test_text_vectors_are_cached_per_embedder_and_vocabulary() -> None:
    emb = FakeEmbedder()
    calls = []
    original = emb._embed_texts
    emb._embed_texts = lambda texts: calls.append(len(texts)) or original(texts)  # type: ignore[method-assign]
    a = text_vectors(emb, VOCAB)
    b = text_vectors(emb, VOCAB)
    assert a is b and len(calls) == 1
    text_vectors(emb, VOCAB + ("cyan",))
    assert len(calls) == 2


def test_only_class_agnostic_segments_are_named() -> None:
    emb = FakeEmbedder()
    masks = np.ones((3, 8, 8), dtype=bool)
    regions = Regions.from_masks(
        masks, label_ids=[-1, 7, -1], labels=["object", "panoptic-cat", "image"], scores=[0.9] * 3
    )
    vectors = emb.embed_images([pure("green"), pure("red"), pure("blue")])
    kinds = ["segment", "segment", "image"]
    out = name_class_agnostic(regions, kinds, vectors, emb, LabelPolicy(vocabulary=VOCAB))
    assert out.labels.tolist() == ["green", "panoptic-cat", "image"]
    assert out.label_ids.tolist() == [1, 7, -1]
    assert out.scores[0] != 0.9 and out.scores[1:].tolist() == pytest.approx([0.9, 0.9])
    unsure = LabelPolicy(vocabulary=VOCAB, min_confidence=0.9, temperature=1.0)
    assert name_class_agnostic(regions, kinds, vectors, emb, unsure).labels[0] == "object"
    off = LabelPolicy(enabled=False)
    assert name_class_agnostic(regions, kinds, vectors, emb, off) is regions


def test_policy_vocabulary_extra_and_round_trip() -> None:
    default = LabelPolicy()
    names = default.names()
    assert names == tuple(c["name"] for c in COCO_PANOPTIC_CATEGORIES)
    extended = LabelPolicy(extra=("quokka", "person"))
    assert extended.names() == names + ("quokka",)  # no duplicates; ids continue
    custom = LabelPolicy(vocabulary=["a", "b"], extra=["c"], min_confidence=0.2)
    assert custom.vocabulary == ("a", "b")
    assert LabelPolicy.from_dict(custom.to_dict()) == custom
    assert LabelPolicy.from_dict(default.to_dict()) == default
    for bad in (
        {"vocabulary": "red"},
        {"vocabulary": ()},
        {"min_confidence": 2},
        {"temperature": 0},
    ):
        with pytest.raises(ConfigError):
            LabelPolicy(**bad)
    assert prompt_name("sky-other-merged") == "sky" and prompt_name("door-stuff") == "door"


def test_settings_without_labels_still_load() -> None:
    stored = IndexSettings().to_dict()
    assert stored["labels"]["enabled"] is True
    del stored["labels"]
    assert IndexSettings.from_dict(stored).labels == LabelPolicy()
    custom = IndexSettings(labels=LabelPolicy(vocabulary=VOCAB))
    assert IndexSettings.from_dict(custom.to_dict()) == custom


class AgnosticFake(FakeSegmenter):
    """The fake segmenter's masks without classes, as SAM returns them."""

    name = "fake_agnostic"

    def _segment_batch(self, images):  # type: ignore[no-untyped-def]
        return [
            Regions.from_masks(r.masks, scores=r.scores) for r in super()._segment_batch(images)
        ]


@pytest.fixture
def agnostic() -> None:  # type: ignore[misc]
    SEGMENTERS.register("fake_agnostic", AgnosticFake, replace=True)
    yield
    SEGMENTERS.unregister("fake_agnostic")


def test_ingest_names_class_agnostic_regions(agnostic, photos: Path, make_index) -> None:  # type: ignore[no-untyped-def]
    idx = make_index(segmenter="fake_agnostic")
    idx.ingest([photos])
    coco = idx.export_coco(include_whole_images=True)
    names = {c["id"]: c for c in coco["categories"]}
    segments = [a for a in coco["annotations"] if a["segindex_kind"] == "segment"]
    wholes = [a for a in coco["annotations"] if a["segindex_kind"] == "image"]
    vocabulary = LabelPolicy().names()
    assert segments and all(names[a["category_id"]]["name"] in vocabulary for a in segments)
    assert all(
        vocabulary[names[a["category_id"]]["segindex_label_id"]] == names[a["category_id"]]["name"]
        for a in segments
    )
    assert wholes and all(names[a["category_id"]]["name"] == "image" for a in wholes)


def test_index_label_policy_is_used_at_ingest(agnostic, photos: Path, make_index) -> None:  # type: ignore[no-untyped-def]
    """The index's own vocabulary names the regions: colour words name the fake's colour masks."""
    colours = ("red", "green", "blue", "yellow", "orange", "gray", "white")
    idx = make_index(segmenter="fake_agnostic", labels=LabelPolicy(vocabulary=colours))
    idx.ingest([photos])
    segs = [r for r in idx.store.iter_regions() if r.kind == "segment"]
    from tests.conftest import scene_truth

    for r in segs:
        name = Path(r.path).relative_to(photos).as_posix()
        truth = scene_truth(name)
        assert r.label in truth and r.label_id == colours.index(r.label)
    idx.close()
    from segindex import Index

    with Index.open(idx.path) as again:
        assert again.settings.labels.vocabulary == colours
    off = make_index("off.segindex", segmenter="fake_agnostic", labels=LabelPolicy(enabled=False))
    off.ingest([photos / "a.png"])
    assert {r.label for r in off.store.iter_regions() if r.kind == "segment"} == {"object"}
