"""The metadata store on a real PostgreSQL server, as on SQLite: store, ingest, search, a reader
process during an ingest, and a second writer refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from segindex import Index
from segindex.errors import IndexLockedError
from tests.ingest.test_crash import make_photos
from tests.pg import fresh_schema


@pytest.fixture
def pg_url():  # type: ignore[no-untyped-def]
    with fresh_schema() as url:
        yield url


def test_index_on_postgres_matches_sqlite(pg_url: str, photos: Path, tmp_path: Path) -> None:
    pg = Index.create(tmp_path / "pg.segindex", segmenter="fake", embedder="fake", db_url=pg_url)
    lite = Index.create(tmp_path / "lite.segindex", segmenter="fake", embedder="fake")
    try:
        assert pg.store.engine.dialect.name == "postgresql"
        for idx in (pg, lite):
            assert idx.ingest(photos).indexed == 4
        for query in ("red", "blue", "a dog"):
            a = [
                (Path(h.image_path).name, h.label, h.bbox, round(h.similarity, 5))
                for h in pg.search(query, k=6)
            ]
            b = [
                (Path(h.image_path).name, h.label, h.bbox, round(h.similarity, 5))
                for h in lite.search(query, k=6)
            ]
            assert a == b
            assert all(
                np.array_equal(x.mask(), y.mask())
                for x, y in zip(pg.search(query, k=3), lite.search(query, k=3), strict=True)
            )
        assert pg.store.counts() == lite.store.counts()
        # re-ingest no-op, changed file replaced, delete, integrity
        assert pg.ingest(photos).skipped == 4
        victim = pg.store.indexed_images()[0]
        removed = pg.delete_images([victim.id])
        assert removed > 0 and pg.check().clean
        assert np.array_equal(pg.vectors.ids(), pg.store.region_ids())
        # reopen through the manifest's URL
        pg.close()
        with Index.open(tmp_path / "pg.segindex") as again:
            assert again.store.counts()["images_indexed"] == 3
    finally:
        pg.close()
        lite.close()


WRITER = textwrap.dedent(
    """
    import sys
    from segindex.testing.fakes import register_fakes
    register_fakes()
    from segindex import Index, RuntimeOptions
    idx = Index.open(sys.argv[1], runtime=RuntimeOptions(commit_every=2))
    print("START", flush=True)
    idx.ingest(sys.argv[2])
    idx.close()
    print("DONE", flush=True)
    """
)


def test_reader_during_ingest_and_second_writer(pg_url: str, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    expected = make_photos(photos, 80)
    index = tmp_path / "shared.segindex"
    Index.create(index, segmenter="fake", embedder="fake", db_url=pg_url).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(index), str(photos)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "START"
    lock_file = index / "write.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        lock_file.exists() and lock_file.read_text().strip() == str(writer.pid)
    ):
        time.sleep(0.01)  # until the writer holds the lock
    seen: list[int] = []
    with Index.open(index) as reader:
        refused = False
        while writer.poll() is None:
            try:
                reader.delete_images([])  # any write needs the lock
            except IndexLockedError as e:
                refused = refused or f"PID {writer.pid}" in str(e)
            hits = reader.search("red", k=50, scope="all")
            # never a half-written image: every image a hit comes from has all its regions
            for image_id in {h.image_id for h in hits}:
                row, rows = reader.store.image_with_regions(image_id)
                assert row is not None and len(rows) == expected[Path(row.path).name]
            seen.append(reader.store.counts()["images_indexed"])
            time.sleep(0.05)
        out, err = writer.communicate()
        assert "DONE" in out, err
        assert refused, "a second writer was never refused while the first ingested"
        # the reader catches up with what the writer committed, without reopening
        assert np.array_equal(reader.vectors.ids(), reader.store.region_ids())
        assert reader.store.counts()["images_indexed"] == len(expected)
        assert len(list(reader.store.iter_regions())) == sum(expected.values())
    assert seen == sorted(seen) and len(set(seen)) > 1  # searches ran while images arrived
