"""`segindex check` tells a stale vector cache (a note, exit 0: the next open rebuilds it) from
real damage (a problem, exit 1). Each state is built on disk as a crash or a tamperer leaves it,
then checked through the CLI; the stale ones are opened and checked again."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from click.testing import CliRunner, Result

from segindex import Index
from segindex.cli import main

REBUILT = "it is rebuilt from the database on the next open, or now with `segindex repair`"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def regions_of(index: Path, name: str) -> list[int]:
    """Region ids of the image whose path ends with ``name``."""
    with Index.open(index) as idx:
        return [int(r.id) for r in idx.store.iter_regions() if r.path.endswith(name)]


def sql(index: Path, statement: str, *params: object) -> None:
    """Run one statement on the SQLite file directly (no foreign keys: a tamperer's view)."""
    with sqlite3.connect(index / "meta.sqlite") as conn:
        conn.execute(statement, params)


def build(tmp_path: Path, photos: Path, first: str | None = None) -> Path:
    """An index of all ``photos``; with ``first``, the vector file as it was after ingesting
    only that image is kept beside it as ``vectors.first``."""
    index = tmp_path / "chk.segindex"
    with Index.create(index, segmenter="fake", embedder="fake") as idx:
        if first is not None:
            idx.ingest(photos / first)
            idx.flush()
            shutil.copy(index / "vectors.faiss", index / "vectors.first")
        idx.ingest(photos)
    return index


def lagging(tmp_path: Path, photos: Path) -> tuple[Path, list[str]]:
    """Crash after a batch's SQL commit, before the file is rewritten: the file lacks the rows
    of every image but the first."""
    index = build(tmp_path, photos, first="a.png")
    shutil.copy(index / "vectors.first", index / "vectors.faiss")
    behind = len(regions_of(index, "")) - len(regions_of(index, "a.png"))
    return index, [f"vector file is {behind} vectors behind the database; {REBUILT}"]


def extra_ids(tmp_path: Path, photos: Path) -> tuple[Path, list[str]]:
    """Crash after a delete's SQL commit, before the file is rewritten: the file still holds
    the deleted image's ids."""
    index = build(tmp_path, photos)
    shutil.copy(index / "vectors.faiss", index / "vectors.before")
    gone = len(regions_of(index, "a.png"))
    with Index.open(index) as idx:
        victim = next(r.id for r in idx.store.indexed_images() if r.path.endswith("a.png"))
        idx.delete_images([victim])
    shutil.copy(index / "vectors.before", index / "vectors.faiss")
    return index, [
        f"vector file holds {gone} vectors of regions no longer in the database (deleted, or "
        f"rolled back by a crash); {REBUILT}"
    ]


def behind_and_extra(tmp_path: Path, photos: Path) -> tuple[Path, list[str]]:
    """A changed image re-ingested (old rows replaced by new ones), file not rewritten."""
    index = build(tmp_path, photos, first="a.png")
    old = len(regions_of(index, "a.png"))
    with Index.open(index) as idx:
        victim = next(r.id for r in idx.store.indexed_images() if r.path.endswith("a.png"))
        idx.delete_images([victim])
        idx.ingest(photos)  # a.png comes back under new region ids
    shutil.copy(index / "vectors.first", index / "vectors.faiss")
    behind = len(regions_of(index, ""))
    return index, [
        f"vector file is {behind} vectors behind the database; {REBUILT}",
        f"vector file holds {old} vectors of regions no longer in the database (deleted, or "
        f"rolled back by a crash); {REBUILT}",
    ]


def missing_file(tmp_path: Path, photos: Path) -> tuple[Path, list[str]]:
    index = build(tmp_path, photos)
    (index / "vectors.faiss").unlink()
    rows = len(regions_of(index, ""))
    return index, [f"vector file is missing while the database holds {rows} vectors; {REBUILT}"]


STALE: dict[str, Callable[[Path, Path], tuple[Path, list[str]]]] = {
    "lagging": lagging,
    "extra_ids": extra_ids,
    "behind_and_extra": behind_and_extra,
    "missing_file": missing_file,
}


@pytest.mark.parametrize("state", sorted(STALE))
def test_stale_cache_is_a_note_and_the_next_open_rebuilds_it(
    state: str, tmp_path: Path, photos: Path
) -> None:
    index, notes = STALE[state](tmp_path, photos)
    r = cli("check", "--index", str(index))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1] == "ok: no damage; the vector file is a stale cache of the database"
    assert lines[2:] == [f"note: {n}" for n in notes]
    assert "problem" not in r.output
    report = json.loads(cli("check", "--index", str(index), "--json").output)
    assert report["ok"] and report["problems"] == [] and report["notes"] == notes
    assert report["stale_cache"]["stale"]
    # the next open (its first use of the vectors) rebuilds the file from SQL
    with Index.open(index) as idx:
        assert idx.check().ok and not idx.check().clean
        assert idx.search("red", k=1)
        assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
        assert idx.check().clean
    r = cli("check", "--index", str(index))
    assert r.exit_code == 0
    assert r.output.splitlines()[1:] == [
        "ok: every region row has its vector and every vector its row"
    ]


def test_info_reports_a_stale_cache_as_check_does(tmp_path: Path, photos: Path) -> None:
    index, notes = lagging(tmp_path, photos)
    r = cli("info", "--index", str(index))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("integrity:"))
    assert lines[at : at + 2] == [
        "integrity:   ok: no damage; the vector file is a stale cache of the database",
        f"             note: {notes[0]}",
    ]
    data = json.loads(cli("info", "--index", str(index), "--json").output)
    # info loaded (and so rebuilt) the file after the first call: the second one is clean
    assert data["integrity"]["ok"] and data["integrity"]["notes"] == []
    assert data["vectors"] == data["integrity"]["region_rows"]


def test_repair_clears_a_stale_cache_now(tmp_path: Path, photos: Path) -> None:
    index, _ = lagging(tmp_path, photos)
    r = cli("repair", "--index", str(index), "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["ok"] and report["notes"] == [] and not report["stale_cache"]["stale"]
    assert report["vectors_in_file"] == report["region_rows"] > 0


def _first_region(index: Path) -> int:
    return regions_of(index, "a.png")[0]


def _damage_vector(index: Path, how: str) -> int:
    """Damage one region's stored vector: ``nan`` overwrites it with NaNs in its segment file,
    ``missing`` un-commits the last stored vector (its row stays). Returns that region's id."""
    with sqlite3.connect(index / "meta.sqlite") as conn:
        name, rows, dim = conn.execute(
            "SELECT name, rows, dim FROM segindex_vector_files ORDER BY id DESC LIMIT 1"
        ).fetchone()
        ids = np.fromfile(index / "vectors" / f"{name}.ids", dtype="<i8")[:rows]
        if how == "missing":
            conn.execute(
                "UPDATE segindex_vector_files SET rows = ? WHERE name = ?", (rows - 1, name)
            )
            return int(ids[-1])
    vec = np.memmap(index / "vectors" / f"{name}.vec", dtype="<f2", mode="r+").reshape(-1, dim)
    vec[0] = np.nan
    vec.flush()
    return int(ids[0])


@pytest.mark.parametrize("how", ["nan", "missing"])
def test_missing_or_malformed_vector_is_a_problem(how: str, tmp_path: Path, photos: Path) -> None:
    index = build(tmp_path, photos)
    rid = _damage_vector(index, how)
    r = cli("check", "--index", str(index))
    assert r.exit_code == 1, (how, r.output)
    problems = [line for line in r.output.splitlines()[1:] if line.startswith("problem")]
    assert problems == [
        f"problem: 1 region rows have no stored vector or one that is not finite, ids {rid}"
    ]
    r = cli("repair", "--index", str(index))
    assert r.exit_code == 0, r.output  # the image is marked for re-ingestion
    with Index.open(index) as idx:
        assert "repair: missing or malformed vector" in str(idx.store.failed_images())
    assert cli("check", "--index", str(index)).exit_code == 0


def test_short_image_is_a_problem(tmp_path: Path, photos: Path) -> None:
    index = build(tmp_path, photos)
    rid = _first_region(index)
    sql(index, "DELETE FROM segindex_regions WHERE id = ?", rid)
    r = cli("check", "--index", str(index))
    assert r.exit_code == 1, r.output
    path = str((photos / "a.png").resolve())
    assert r.output.splitlines()[1:] == [
        f"problem: 1 images have fewer (or more) region rows than recorded: {path}",
        # the file still holds the deleted row's id: that part alone would be a note
        "note: vector file holds 1 vectors of regions no longer in the database (deleted, or "
        f"rolled back by a crash); {REBUILT}",
    ]
    report = json.loads(cli("check", "--index", str(index), "--json").output)
    assert not report["ok"] and report["incomplete_images"] == [path]
    assert report["stale_cache"] == {"stale": True, "vector_file": "ok", "behind": 0, "extra": 1}
    with Index.open(index) as idx:  # an open rebuilds the cache but cannot repair the image
        _ = idx.vectors
    assert cli("check", "--index", str(index)).exit_code == 1


def test_rows_without_an_image_are_a_problem_that_repair_removes(
    tmp_path: Path, photos: Path
) -> None:
    index = build(tmp_path, photos)
    orphans = regions_of(index, "a.png")
    sql(index, "DELETE FROM segindex_images WHERE path LIKE ?", "%a.png")  # FKs off: no cascade
    r = cli("check", "--index", str(index))
    assert r.exit_code == 1, r.output
    ids = ", ".join(str(i) for i in orphans)
    assert r.output.splitlines()[1:] == [
        f"problem: {len(orphans)} region rows belong to no image, ids {ids}"
    ]
    r = cli("repair", "--index", str(index))
    assert r.exit_code == 0, r.output
    assert not set(orphans) & set(regions_of(index, ""))


def _wrong_dimension(file: Path) -> None:
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(14)), str(file))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: f.write_bytes(b"garbage"), 'RuntimeError: Index type 0x62726167 ("garb")'),
        (_wrong_dimension, "ValueError: vector index has dimension 14, expected 13"),
    ],
    ids=["garbage", "wrong_dimension"],
)
def test_unreadable_vector_file_is_a_stale_cache_the_next_open_rebuilds(
    damage: Callable[[Path], None], reason: str, tmp_path: Path, photos: Path
) -> None:
    index = build(tmp_path, photos)
    damage(index / "vectors.faiss")
    r = cli("check", "--index", str(index))
    assert r.exit_code == 0, r.output
    (line,) = r.output.splitlines()[2:]
    assert line.startswith(f"note: vector file unreadable: {reason}")
    assert line.endswith(
        "it is rebuilt from the database on the next open, or now with `segindex repair`"
    )
    with Index.open(index) as idx:  # the file is a cache: loading rebuilds it from SQL
        assert idx.search("red") and np.array_equal(idx.vectors.ids(), idx.store.region_ids())
    assert cli("check", "--index", str(index)).output.splitlines()[1:] == [
        "ok: every region row has its vector and every vector its row"
    ]
    damage(index / "vectors.faiss")
    r = cli("info", "--index", str(index))
    assert r.exit_code == 0, r.output
    assert "integrity:   ok: no damage; the vector file is a stale cache" in r.output
    assert f"note: vector file unreadable: {reason}" in r.output
    damage(index / "vectors.faiss")
    assert cli("repair", "--index", str(index)).exit_code == 0
    assert cli("check", "--index", str(index)).exit_code == 0
