"""Ingest memory is bounded by the batch, not by the folder: the peak of traced allocations
(Python objects and numpy arrays) while ingesting 4x more images stays about the same."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from PIL import Image

from segindex import RuntimeOptions
from segindex.testing.fakes import draw_scene


def folder(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        shapes = [("red", (5 + i % 40, 5, 60 + i % 40, 50)), ("blue", (10, 60, 90, 120))]
        Image.fromarray(draw_scene(shapes, size=(192, 256))).save(root / f"{i:04d}.png")
    return root


def peak_while_ingesting(make_index, photos: Path, name: str) -> int:  # type: ignore[no-untyped-def]
    """Peak traced bytes above the start while a fresh index ingests ``photos``."""
    runtime = RuntimeOptions(commit_every=8, decode_workers=0)
    make_index(name + "-warm", runtime=runtime).ingest(photos)  # imports and caches, untraced
    idx = make_index(name, runtime=runtime)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        report = idx.ingest(photos)
        assert report.indexed == report.seen
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_folder(make_index, tmp_path: Path) -> None:
    small = peak_while_ingesting(make_index, folder(tmp_path / "s", 40), "small")
    large = peak_while_ingesting(make_index, folder(tmp_path / "l", 160), "large")
    # per image kept: a path, a sha, a few ints; pixels, masks and crops only for one batch
    print(f"peak traced: {small} B for 40 images, {large} B for 160")
    assert large < 1.5 * small + 2_000_000, (small, large)
