"""The video frame reference: what ingest builds is what the given-video segmenter parses."""

from __future__ import annotations

import pytest

from segindex.formats.frame_ref import FrameRef


@pytest.mark.parametrize(
    ("path", "index"),
    [("clips/a.mkv", 0), ("/data/v 1.mp4", 1234), ("odd#frame=1.mkv", 7), ("C:\\v\\x.avi", 3)],
)
def test_round_trip(path: str, index: int) -> None:
    text = FrameRef(path, index).to_str()
    assert text == f"{path}#frame={index}" and str(FrameRef(path, index)) == text
    assert FrameRef.parse(text) == FrameRef(path, index)
    assert FrameRef.is_frame(text)


@pytest.mark.parametrize(
    "text",
    ["clips/a.mkv", "clips/a.mkv#frame=", "clips/a.mkv#frame=x", "clips/a.mkv#frame=-1",
     "#frame=3", "a.mkv#frame=1.5", "a.mkv#frame=\u0663"],
)  # fmt: skip
def test_not_a_frame(text: str) -> None:
    assert not FrameRef.is_frame(text)
    with pytest.raises(ValueError, match="is not a video frame"):
        FrameRef.parse(text)


@pytest.mark.parametrize("index", [-1, True, 1.0, "2"])
def test_bad_index(index: object) -> None:
    with pytest.raises(ValueError, match="frame index must be an integer >= 0"):
        FrameRef("a.mkv", index)  # type: ignore[arg-type]
