"""The plan stage: which files are new or changed (the sha256 of the bytes identifies a file),
which are unchanged (skipped), and which moved (re-linked without running any model)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from segindex.images import file_sha256
from segindex.store.sql import ImageState, Store, db_path


def plan(
    paths: Iterable[Path], known: dict[str, ImageState], retry_failed: bool = False
) -> tuple[list[tuple[str, str]], int, list[tuple[str, str]]]:
    """Split paths into ``(path, sha256)`` to process, a skipped count, and unreadable files.

    A video left ``"partial"`` by an interrupted ingest is always to process: unchanged, it is
    resumed after its last committed chunk; changed, it starts over."""
    todo: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str]] = []
    skipped = 0
    for p in paths:
        path = str(p)
        try:
            sha = file_sha256(p)
        except OSError as e:
            broken = os.path.islink(p) and not os.path.exists(p)
            reason = "broken symbolic link" if broken else f"cannot read file: {e.strerror or e}"
            unreadable.append((db_path(path), reason))
            continue
        state = known.get(db_path(path))
        if (
            state is not None
            and state.sha256 == sha
            and state.status != "partial"
            and (state.status == "indexed" or not retry_failed)
        ):
            skipped += 1
            continue
        todo.append((path, sha))
    return todo, skipped, unreadable


def relink_moved(
    todo: list[tuple[str, str]], known: dict[str, ImageState], store: Store
) -> list[tuple[str, str]]:
    """Re-link files that moved: a new path whose bytes (sha256) belong to an indexed image whose
    old path no longer exists takes over that image, its regions and vectors, without running
    any model. Returns what is still to be processed."""
    gone: dict[str, list[tuple[str, ImageState]]] = {}
    for old_path, state in known.items():
        if state.status == "indexed" and state.sha256 and not os.path.lexists(old_path):
            gone.setdefault(state.sha256, []).append((old_path, state))
    if not gone:
        return todo
    remaining = []
    for path, sha in todo:
        candidates = gone.get(sha)
        if candidates and db_path(path) not in known:
            old_path, state = candidates.pop()
            store.relink(state.id, path)
            known[db_path(path)] = state
            del known[old_path]
        else:
            remaining.append((path, sha))
    return remaining
