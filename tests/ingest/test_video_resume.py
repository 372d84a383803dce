"""A long video under crashes and at length: SIGKILL after a chunk's SQL commit (before its
vectors reach the FAISS file) loses at most that chunk's mirror, and the next ingest resumes the
video after its last committed frame with the same tracks; memory does not grow with length."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from segindex import Index
from segindex.config import RuntimeOptions, VideoOptions
from segindex.testing.clips import write_clip

DRIVER = textwrap.dedent(
    """
    import json, sys, time
    from segindex.testing.fakes import register_fakes
    register_fakes()
    from segindex import Index, RuntimeOptions
    from segindex.config import VideoOptions
    from pathlib import Path
    index, clips, pause_after = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    from segindex.store.mirror import VectorMirror
    mirror, calls = VectorMirror.apply, []
    def mirrored(self, result):  # after each SQL commit, before its FAISS mirror
        calls.append(1)
        if len(calls) == pause_after:  # wait there to be killed
            print("COMMITTED", flush=True)
            time.sleep(60)
        mirror(self, result)
        print("COMMIT", flush=True)
    VectorMirror.apply = mirrored
    runtime = RuntimeOptions(checkpoint_seconds=0.0, segment_batch=2, commit_every=2)
    video = VideoOptions(fps=10, dedup_threshold=1.0, chunk=3)
    if (index / "segindex.json").exists():
        idx = Index.open(index, runtime=runtime)
    else:
        idx = Index.create(index, segmenter="fake", embedder="fake", runtime=runtime, video=video)
    print("START", flush=True)
    report = idx.ingest(clips)
    idx.close()
    print("DONE " + json.dumps(report.to_dict()), flush=True)
    """
)


def run(index: Path, clips: Path, pause_after: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(index), str(clips), str(pause_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    done = [line for line in out.splitlines() if line.startswith("DONE ")]
    return json.loads(done[0][5:])


def summary(index: Path) -> tuple[list[Any], list[Any]]:
    """(tracks as (label, n_frames, start, end), frame samples as (frame, time, label, track
    label)), independent of row ids; with the integrity checks."""
    with Index.open(index) as idx:
        assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
        assert idx.check().clean
        with idx.store.engine.connect() as conn:
            tracks = conn.execute(
                text("select label, n_frames, start_s, end_s from segindex_tracks order by label")
            ).all()
            frames = conn.execute(
                text(
                    "select r.frame_index, r.time_s, r.label, t.label as track from "
                    "segindex_regions r left join segindex_tracks t on t.id = r.track_id "
                    "where r.kind != 'track' order by r.frame_index, r.label"
                )
            ).all()
            (status,) = conn.execute(text("select status from segindex_images")).scalars()
            progress = conn.execute(text("select * from segindex_video_progress")).all()
        assert status == "indexed" and progress == []
        return [tuple(t) for t in tracks], [tuple(f) for f in frames]


def test_sigkill_mid_video_resumes_with_the_same_tracks(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    # 20 frames; with this dedup threshold every other one is a near-duplicate: samples 0, 2,
    # ..., 18 in chunks [0 2 4] [6 8 10] [12 14 16] [18], duplicates extending the tracks
    write_clip(clips / "squares.mkv", 20, fps=10)
    reference = make_reference(tmp_path, clips, frames=10)
    index = tmp_path / "crash.segindex"
    proc = run(index, clips, pause_after=3)  # begin + 2 chunks committed, mirror of #2 pending
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "START", proc.stderr.read() if proc.stderr else ""
    assert [proc.stdout.readline().strip() for _ in range(3)] == ["COMMIT", "COMMIT", "COMMITTED"]
    proc.kill()
    proc.wait()
    with Index.open(index) as idx:  # what the kill left: a partial video with a resume point
        with idx.store.engine.connect() as conn:
            (status,) = conn.execute(text("select status from segindex_images")).scalars()
            (last,) = conn.execute(text("select last_frame from segindex_video_progress")).scalars()
        assert (status, last) == ("partial", 10)
    resumed = finish(run(index, clips))
    assert resumed["frames"] == 10 - 6  # only the frames after the last committed chunk
    assert resumed["indexed"] == 1 and resumed["failed"] == 0
    assert summary(index) == summary(reference)
    tracks, _ = summary(index)
    assert tracks == [(c, 10, 0.0, pytest.approx(1.9)) for c in ("blue", "gray", "red")]


def make_reference(tmp_path: Path, clips: Path, frames: int) -> Path:
    """The driver's ingest uninterrupted, in this process."""
    reference = tmp_path / "ref.segindex"
    runtime = RuntimeOptions(segment_batch=2, commit_every=2)
    video = VideoOptions(fps=10, dedup_threshold=1.0, chunk=3)
    with Index.create(
        reference, segmenter="fake", embedder="fake", runtime=runtime, video=video
    ) as idx:
        assert idx.ingest(clips).frames == frames
    return reference


def test_sigkill_at_random_moments_ends_with_the_same_tracks(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "squares.mkv", 44, fps=10)  # 22 samples (every other frame), 8 chunks
    reference = make_reference(tmp_path, clips, frames=22)
    index = tmp_path / "crash.segindex"
    rng = random.Random(7)
    for _ in range(3):  # each run gets a few commits further, then dies at a random moment
        proc = run(index, clips)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "START", proc.stderr.read() if proc.stderr else ""
        finished = False
        for _ in range(rng.randint(1, 3)):
            line = proc.stdout.readline().strip()
            # under load an earlier run may have got through every chunk before its kill: this
            # one then finds nothing left to commit and finishes (the final run checks it all)
            finished = line.startswith("DONE")
            if finished:
                break
            assert line == "COMMIT", (line, proc.stderr.read() if proc.stderr else "")
        if not finished:
            time.sleep(rng.uniform(0.0, 0.05))
        proc.kill()
        proc.wait()
    finish(run(index, clips))
    assert summary(index) == summary(reference)


def peak_while_ingesting(make_index, clips: Path, name: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Peak traced bytes above the start while a fresh index ingests ``clips``, and frames."""
    runtime = RuntimeOptions(commit_every=8, decode_workers=0)
    idx = make_index(name, runtime=runtime, video=VideoOptions(fps=0.5, dedup_threshold=0, chunk=8))
    _ = idx.vectors
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        report = idx.ingest(clips)
        assert report.failed == 0
        return tracemalloc.get_traced_memory()[1] - base, report.frames
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_video(make_index, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib

    plan = importlib.import_module("segindex.ingest.plan")  # the module, not the function
    # hashing reads 1 MiB chunks, a buffer as large as a small file: bounded, but it would
    # differ between the two clips here, so it reads 64 KiB chunks in this test
    monkeypatch.setattr(plan, "file_sha256", small_chunk_sha256)
    short, long = tmp_path / "short", tmp_path / "long"
    short.mkdir()
    long.mkdir()
    write_clip(short / "clip.mkv", 60 * 2, fps=2)  # 1 minute
    write_clip(long / "clip.mkv", 600 * 2, fps=2)  # 10 minutes
    peak_while_ingesting(make_index, short, "warm")  # imports and caches, untraced
    small, n_small = peak_while_ingesting(make_index, short, "short")
    large, n_large = peak_while_ingesting(make_index, long, "long")
    print(f"peak traced: {small} B for {n_small} samples, {large} B for {n_large}")
    assert (n_small, n_large) == (30, 300)
    assert large < 1.2 * small + 200_000, (small, large)


def small_chunk_sha256(path: str | Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()
