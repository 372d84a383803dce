"""release_mapped drops the resident pages of a mapped file and nothing else: the data reads the
same afterwards."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from segindex.memory import release_mapped

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc only")


def _rss_file_kb() -> int:
    with open("/proc/self/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile"))


@linux
def test_pages_of_a_mapped_file_are_released_and_read_back(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 255, 64 * 2**20, dtype=np.uint8)
    path = tmp_path / "weights.bin"
    data.tofile(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = np.frombuffer(mapped, dtype=np.uint8)
        checksum = int(view.sum())  # touches every page
        touched = _rss_file_kb()
        assert release_mapped(path) == 1
        released = _rss_file_kb()
        assert touched - released > 48 * 1024, (touched, released)  # most of the 64 MiB
        assert int(view.sum()) == checksum  # read back from the page cache, unchanged
        assert np.array_equal(view[:: 2**20], data[:: 2**20])
        del view


@linux
def test_a_folder_releases_the_files_under_it(tmp_path: Path) -> None:
    inner = tmp_path / "entry" / "compiled"
    inner.mkdir(parents=True)
    path = inner / "model.blob"
    np.ones(16 * 2**20, dtype=np.uint8).tofile(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = np.frombuffer(mapped, dtype=np.uint8)
        assert int(view.sum()) == 16 * 2**20
        assert release_mapped(tmp_path / "entry") == 1
        assert release_mapped(tmp_path / "elsewhere") == 0
        del view


def test_a_file_that_is_not_mapped(tmp_path: Path) -> None:
    path = tmp_path / "other.bin"
    path.write_bytes(b"x")
    assert release_mapped(path) == 0
