"""Backend capabilities are declared on the base classes: every backend answers them, and the
methods behind a capability it lacks fail with a clear ConfigError."""

from __future__ import annotations

import numpy as np
import pytest

from segindex.embed.base import Embedder
from segindex.embed.sam_features import SamFeaturesEmbedder
from segindex.errors import ConfigError
from segindex.regions import Regions
from segindex.segment.base import Segmenter
from segindex.segment.sam3 import Sam3Segmenter
from segindex.segment.sam_auto import SamLikeSegmenter
from segindex.testing.fakes import FakeEmbedder, FakeSegmenter


def test_segmenter_defaults() -> None:
    assert (Segmenter.wants_vocabulary, Segmenter.segments_text, Segmenter.prompts_each) == (
        False,
        False,
        False,
    )
    assert Segmenter.promptable is False and Segmenter.needs_paths is False
    assert Segmenter.encoder is None
    seg = FakeSegmenter()
    image = np.zeros((8, 8, 3), np.uint8)
    assert seg.use_vocabulary(["cat"]) is None  # ignored by a segmenter that wants none
    with pytest.raises(ConfigError, match="cannot segment from text"):
        seg.segment_text(image, "cat")
    with pytest.raises(ConfigError, match="cannot turn many box prompts"):
        seg.prompt_each(image, np.zeros((1, 4), np.float32), [np.zeros((0, 2))], [np.zeros(0)])


def test_backends_declare_what_they_can() -> None:
    assert Sam3Segmenter.wants_vocabulary and Sam3Segmenter.segments_text
    assert Sam3Segmenter.promptable and not Sam3Segmenter.prompts_each
    assert SamLikeSegmenter.promptable and SamLikeSegmenter.prompts_each
    assert not SamLikeSegmenter.wants_vocabulary and not SamLikeSegmenter.segments_text


def test_embedder_defaults() -> None:
    assert Embedder.embeds_text is True and Embedder.embeds_regions is False
    assert SamFeaturesEmbedder.embeds_regions and not SamFeaturesEmbedder.embeds_text
    emb = FakeEmbedder()
    with pytest.raises(ConfigError, match="embeds crops, not regions"):
        emb.embed_regions(np.zeros((8, 8, 3), np.uint8), Regions.empty(8, 8))
