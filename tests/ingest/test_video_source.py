"""The video source: recognising videos by content, exact frame indices and times (constant and
variable frame rate), display-matrix rotation, and sampling (fps, key frames, near-duplicates,
max frames), resumable from a saved sampler state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segindex.config import VideoOptions
from segindex.errors import ConfigError, VideoDecodeError
from segindex.images import discover, media_kind
from segindex.ingest.video import SamplerState, probe, sample_frames, upright
from segindex.testing.clips import moving_squares, write_clip
from segindex.testing.fakes import draw_scene

ALL = VideoOptions(fps=1000, dedup_threshold=0)  # every frame


def sampled(path: Path, options: VideoOptions, state: SamplerState | None = None) -> list:
    return [
        (f.index, round(f.time_s, 6)) for f in sample_frames(path, options, state or SamplerState())
    ]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mkv", 30, fps=10)


def test_videos_are_recognised_by_content_whatever_their_name(tmp_path: Path) -> None:
    mkv = write_clip(tmp_path / "a.mkv", 3)
    mp4 = write_clip(tmp_path / "b.mp4", 3, codec="mpeg4")
    disguised = tmp_path / "holiday.jpg"
    disguised.write_bytes(mp4.read_bytes())
    png = tmp_path / "c.png"
    from PIL import Image

    Image.fromarray(draw_scene([("red", (1, 1, 9, 9))])).save(png)
    heif_like = tmp_path / "d.heic"
    heif_like.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 32)
    assert [media_kind(p) for p in (mkv, mp4, disguised, png, heif_like)] == [
        "video",
        "video",
        "video",
        "image",
        "image",
    ]
    assert media_kind(tmp_path / "missing.mp4") == "image"  # its decoder reports the problem
    (tmp_path / "notes.txt").write_text("x")
    found = sorted(p.name for p in discover(tmp_path))
    assert found == ["a.mkv", "b.mp4", "c.png", "holiday.jpg"]  # .heic/.txt: not media suffixes
    assert [p.name for p in discover(str(tmp_path / "*.mkv"))] == ["a.mkv"]


def test_every_frame_has_its_index_and_presentation_time(clip: Path) -> None:
    assert sampled(clip, ALL) == [(i, round(i / 10, 6)) for i in range(30)]
    info = probe(clip)
    assert (info.width, info.height, info.rotation, info.fps) == (64, 48, 0, 10.0)
    assert info.duration_s == pytest.approx(3.0, abs=0.11)
    frame = next(sample_frames(clip, ALL, SamplerState()))
    assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
    assert np.array_equal(frame.image, moving_squares(0))  # ffv1 is lossless


@pytest.mark.parametrize("codec", ["ffv1", "mpeg4"])
def test_variable_frame_rate_times_are_pts_times_time_base(tmp_path: Path, codec: str) -> None:
    times = [0.0, 0.05, 0.3, 0.31, 0.9, 1.0, 1.75, 2.2]
    name = "vfr.mkv" if codec == "ffv1" else "vfr.mp4"
    path = write_clip(tmp_path / name, len(times), codec=codec, times_s=times, gop=100)
    assert sampled(path, ALL) == [(i, t) for i, t in enumerate(times)]
    # 2 fps: the first frame of each half-second slot
    assert sampled(path, VideoOptions(fps=2, dedup_threshold=0)) == [
        (0, 0.0),
        (4, 0.9),
        (5, 1.0),
        (6, 1.75),
        (7, 2.2),
    ]


def test_fps_sampling_takes_the_first_frame_of_each_slot(clip: Path) -> None:
    assert sampled(clip, VideoOptions(fps=2, dedup_threshold=0)) == [
        (0, 0.0),
        (5, 0.5),
        (10, 1.0),
        (15, 1.5),
        (20, 2.0),
        (25, 2.5),
    ]
    assert [i for i, _ in sampled(clip, VideoOptions(fps=3, dedup_threshold=0))] == [
        0, 4, 7, 10, 14, 17, 20, 24, 27,
    ]  # fmt: skip


def test_keyframes_only_decodes_key_frames_with_their_indices(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "gop.mp4", 23, codec="mpeg4", gop=5)
    assert sampled(path, VideoOptions(fps=1000, keyframes_only=True, dedup_threshold=0)) == [
        (0, 0.0),
        (5, 0.5),
        (10, 1.0),
        (15, 1.5),
        (20, 2.0),
    ]
    # with an fps limit on top
    assert [
        i for i, _ in sampled(path, VideoOptions(fps=1, keyframes_only=True, dedup_threshold=0))
    ] == [0, 10, 20]


def test_near_duplicates_are_skipped_against_the_last_kept_sample(tmp_path: Path) -> None:
    def draw(i: int) -> np.ndarray:
        # frames 0-9 static, 10-19 a big square appears (a real change), then static again
        shapes = [("blue", (40, 20, 60, 44))] if i >= 10 else []
        return draw_scene([("red", (4, 4, 20, 20)), *shapes], size=(48, 64))

    path = write_clip(tmp_path / "static.mkv", 20, fps=10, draw=draw)
    assert sampled(path, VideoOptions(fps=10, dedup_threshold=2.0)) == [(0, 0.0), (10, 1.0)]
    assert len(sampled(path, VideoOptions(fps=10, dedup_threshold=0))) == 20
    # slow drift: each frame differs little from the previous, but the comparison is with the
    # last KEPT sample, so the drift is caught once it adds up
    drift = write_clip(tmp_path / "drift.mkv", 40, fps=10, draw=moving_squares)
    kept = sampled(drift, VideoOptions(fps=10, dedup_threshold=3.0))
    assert 1 < len(kept) < 40


def test_max_frames_stops_sampling(clip: Path) -> None:
    assert sampled(clip, VideoOptions(fps=10, dedup_threshold=0, max_frames=4)) == [
        (0, 0.0),
        (1, 0.1),
        (2, 0.2),
        (3, 0.3),
    ]


@pytest.mark.parametrize(
    ("codec", "keyframes_only", "seeks"),
    [("ffv1", False, True), ("mpeg4", False, True), ("mpeg4", True, False)],
)
def test_sampling_resumes_from_a_saved_state_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str, keyframes_only: bool, seeks: bool
) -> None:
    import segindex.ingest.video as video

    name = "drift.mkv" if codec == "ffv1" else "drift.mp4"
    path = write_clip(tmp_path / name, 60, fps=10, codec=codec, gop=7)
    options = VideoOptions(fps=5, dedup_threshold=1.0, max_frames=12, keyframes_only=keyframes_only)
    whole = sampled(path, options)
    state = SamplerState()
    first = []
    for f in sample_frames(path, options, state):
        first.append((f.index, round(f.time_s, 6)))
        state.last_frame, state.last_pts = f.index, f.pts  # committed
        if len(first) == 3:
            break
    saved = SamplerState.from_dict(state.to_dict())  # through JSON-able data, as stored
    landed: list[bool] = []
    after = video._after

    def spy(*args: object) -> object:
        found = after(*args)  # type: ignore[arg-type]
        landed.append(found is not None)
        return found

    monkeypatch.setattr(video, "_after", spy)
    rest = sampled(path, options, saved)
    assert first + rest == whole and len(whole) > 3
    assert landed == ([True] if seeks else [])  # resumed by seeking near the committed frame


def test_display_matrix_rotation_is_applied(tmp_path: Path) -> None:
    def draw(_: int) -> np.ndarray:
        return draw_scene([("red", (0, 0, 16, 16))], size=(48, 64), background="gray")

    path = tmp_path / "phone.mp4"
    try:
        write_clip(path, 3, codec="mpeg4", rotation=90, draw=draw)
    except AttributeError:
        pytest.skip("this PyAV cannot write a display matrix")
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)
    frame = next(sample_frames(path, ALL, SamplerState()))
    assert frame.image.shape == (64, 48, 3)
    # turned 90 degrees counter-clockwise: the red top-left corner is now bottom-left
    assert frame.image[-4, 4, 0] > 180 and frame.image[4, 4, 0] < 160
    assert np.array_equal(upright(draw(0), 270), np.rot90(draw(0), k=3))


def test_corrupt_and_truncated_videos_raise_a_clear_error(tmp_path: Path, clip: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        probe(bad)
    truncated = tmp_path / "cut.mp4"
    whole = write_clip(tmp_path / "whole.mp4", 20, codec="mpeg4").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])  # mp4 writes its index (moov) at the end
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        list(sample_frames(truncated, ALL, SamplerState()))
    sound = tmp_path / "sound.m4a"  # an mp4 container with audio only
    _write_audio(sound)
    assert media_kind(sound) == "video"
    with pytest.raises(VideoDecodeError, match="no video stream"):
        probe(sound)


def _write_audio(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize(
    "kwargs",
    [{"fps": 0}, {"fps": -1}, {"dedup_threshold": 300}, {"max_frames": 0}, {"chunk": 0}],
)
def test_bad_video_options_are_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        VideoOptions(**kwargs)


def test_video_options_round_trip_through_the_stored_settings() -> None:
    from segindex.config import BackendSpec, IndexSettings

    custom = IndexSettings(
        video=VideoOptions(fps=5, keyframes_only=True, tracker=BackendSpec("none"), chunk=7)
    )
    assert IndexSettings.from_dict(custom.to_dict()) == custom
    old = custom.to_dict()
    del old["video"]  # settings stored before videos existed
    assert IndexSettings.from_dict(old).video == VideoOptions()
