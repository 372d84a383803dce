"""An index written by the schema-2 code (vectors as float32 blobs in the region rows, the crop
policy as JSON in every row) opens with today's code: its vectors move into the segment files,
the two columns go, and it answers exactly as before; a move cut short resumes where it stopped.
The fixture was made by that code (tests/store/fixtures/README.md)."""

from __future__ import annotations

import json
import sqlite3
import tarfile
from pathlib import Path

import numpy as np
import pytest

from segindex import Index
from segindex.store import migrate
from segindex.store.vector_store import VectorStore

FIXTURE = Path(__file__).parent / "fixtures" / "index_v2.tar.gz"


@pytest.fixture
def old_index(tmp_path: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    truth = json.loads((tmp_path / "v2.segindex.truth.json").read_text())
    return tmp_path / "v2.segindex", truth


def blobs(index: Path) -> dict[int, np.ndarray]:
    """The float32 vectors the old rows hold (read before anything migrates them)."""
    with sqlite3.connect(index / "meta.sqlite") as conn:
        rows = conn.execute("SELECT id, vector FROM segindex_regions").fetchall()
    return {int(i): np.frombuffer(v, dtype="<f4") for i, v in rows}


def columns(index: Path) -> set[str]:
    with sqlite3.connect(index / "meta.sqlite") as conn:
        return {r[1] for r in conn.execute("PRAGMA table_info(segindex_regions)")}


def test_old_index_is_migrated_in_place_and_answers_as_before(old_index) -> None:  # type: ignore[no-untyped-def]
    index, truth = old_index
    before = blobs(index)
    assert {"vector", "crop"} <= columns(index)
    with Index.open(index) as idx:
        assert idx.store.region_ids().tolist() == truth["ids"] == sorted(before)
        for query in ("red", "blue", "green"):
            got = [[h.region_id, round(float(h.score), 5)] for h in idx.search(query, k=5)]
            assert got == truth[query], query
        ids, vecs = idx.store.vectors_by_id(np.asarray(truth["ids"]))
        assert ids.tolist() == truth["ids"]
        old = np.stack([before[i] for i in truth["ids"]])
        assert (np.sum(old * vecs, axis=1) > 0.9999).all()  # float16 copies of the originals
        report = idx.check()
        assert report.clean and report.notes == [], report.to_dict()
        crop = json.loads(idx.store.region_rows([ids[0]])[int(ids[0])].crop)
        assert crop == idx.settings.crop.to_dict()
        # it keeps working as a new index would: ids go on after the old ones
        deleted = idx.store.image_states()
        n_before = len(ids)
        first = sorted(deleted)[0]
        idx.delete_images([deleted[first].id])
        assert idx.store.region_count() < n_before
    assert not {"vector", "crop"} & columns(index)
    with sqlite3.connect(index / "meta.sqlite") as conn:
        version = conn.execute("SELECT count(*) FROM segindex_vector_files").fetchone()[0]
    assert version == 1


def test_an_interrupted_move_resumes_without_duplicates(
    old_index,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index, truth = old_index
    before = blobs(index)
    monkeypatch.setattr(migrate, "MOVE_CHUNK", 7)
    calls = {"n": 0}
    commit = VectorStore.commit

    def crash_on_third(conn, appender):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk pulled mid-migration")
        commit(conn, appender)

    monkeypatch.setattr(VectorStore, "commit", staticmethod(crash_on_third))
    with pytest.raises(OSError, match="disk pulled"):
        Index.open(index)
    assert {"vector", "crop"} <= columns(index)  # the rows keep their blobs until the end
    with sqlite3.connect(index / "meta.sqlite") as conn:
        (moved,) = conn.execute("SELECT sum(rows) FROM segindex_vector_files").fetchone()
    assert moved == 14  # two chunks of 7 committed
    monkeypatch.setattr(VectorStore, "commit", staticmethod(commit))
    with Index.open(index) as idx:
        ids, vecs = idx.store.vectors_by_id(np.asarray(truth["ids"]))
        assert ids.tolist() == truth["ids"]
        old = np.stack([before[i] for i in truth["ids"]])
        assert (np.sum(old * vecs, axis=1) > 0.9999).all()
        stale = idx.store.vectors.stale(idx.store.region_ids())
        assert stale.dead_rows == 0 and stale.orphan_files == []  # the third chunk's tail: gone
        segments = idx.store.vectors.segments()
        assert sum(s.rows for s in segments) == len(truth["ids"])
    assert not {"vector", "crop"} & columns(index)
