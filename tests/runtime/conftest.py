"""Fixtures of the runtime tests: one compiled-model cache and one tiny model of each kind per
session (exports are the slow part: each is made once and found in the cache afterwards)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("openvino")


@pytest.fixture(scope="session", autouse=True)
def compiled_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh cache of exported models for the session (never the user's)."""
    root = tmp_path_factory.mktemp("compiled")
    before = os.environ.get("SEGINDEX_COMPILED_CACHE")
    os.environ["SEGINDEX_COMPILED_CACHE"] = str(root)
    yield root
    if before is None:
        os.environ.pop("SEGINDEX_COMPILED_CACHE", None)
    else:
        os.environ["SEGINDEX_COMPILED_CACHE"] = before


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_clip import save_tiny_open_clip

    return save_tiny_open_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_m2f_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segindex.testing.tiny_models import save_tiny_mask2former

    return save_tiny_mask2former(tmp_path_factory.mktemp("tiny_m2f"))
