"""Video storage: running track totals give exactly ``summarise_track``'s summary, and an
image-only index made before videos existed is upgraded in place (SQLite and PostgreSQL),
answering image queries exactly as before and then taking videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from segindex import Index
from segindex.config import VideoOptions
from segindex.store.migrate import upgrade
from segindex.store.track_totals import TrackTotals
from segindex.testing.clips import write_clip
from segindex.track import summarise_track


@pytest.mark.parametrize("seed", range(6))
def test_running_totals_summarise_exactly_like_summarise_track(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 40))
    names = ["dog", "cat", "person"]
    picks = rng.integers(0, 3 if seed else 1, size=m)
    labels = [names[i] for i in picks]
    label_ids = [int(i) * 7 for i in picks]
    scores = rng.choice([0.25, 0.5, 0.75, 1.0], size=m)  # equal votes happen: ties
    vectors = rng.normal(size=(m, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    times = np.sort(rng.uniform(0, 60, size=m))
    want = summarise_track(labels, label_ids, scores, vectors, times)
    totals = TrackTotals()
    for start in range(0, m, 5):  # in chunks, through the stored form between them
        for i in range(start, min(m, start + 5)):
            totals.add(labels[i], label_ids[i], float(scores[i]), vectors[i], float(times[i]))
        values = totals.to_values()
        totals = TrackTotals.from_row(_Row(**values))
    label, label_id, score = totals.label()
    assert (label, label_id) == (want.label, want.label_id)
    assert score == pytest.approx(want.score)
    assert np.allclose(totals.vector(), want.vector, atol=1e-6)
    assert (totals.start_s, totals.end_s, totals.n_frames) == (want.start_s, want.end_s, m)


class _Row:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


V1_COLUMNS = {
    "segindex_images": ("media", "duration_s", "fps", "rotation"),
    "segindex_regions": ("frame_index", "time_s", "track_id"),
}


def downgrade_to_v1(url: str) -> None:
    """Make the index's database look like one written before videos existed."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS ix_segindex_regions_track_id"))
        for table in ("segindex_video_progress", "segindex_tracks"):
            conn.execute(text(f"DROP TABLE {table}"))
        for table, columns in V1_COLUMNS.items():
            for column in columns:
                conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    engine.dispose()


def results(idx: Index) -> list[Any]:
    out = []
    for query in ("red", "blue", "green"):
        out += [(h.region_id, h.label, h.bbox, round(h.similarity, 6)) for h in idx.search(query)]
    return out


def upgrade_in_place(tmp_path: Path, photos: Path, db_url: str | None) -> None:
    path = tmp_path / "old.segindex"
    with Index.create(path, segmenter="fake", embedder="fake", db_url=db_url) as idx:
        idx.ingest(photos)
        before, counts = results(idx), idx.store.counts()
        url = idx.store.url
    downgrade_to_v1(url)
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert "segindex_tracks" not in tables
    assert "media" not in {c["name"] for c in inspect(engine).get_columns("segindex_images")}
    engine.dispose()
    with Index.open(path) as idx:  # opening upgrades
        cols = {c["name"] for c in inspect(idx.store.engine).get_columns("segindex_regions")}
        assert {"frame_index", "time_s", "track_id"} <= cols
        assert results(idx) == before and idx.store.counts() == counts
        assert idx.check().clean
        report = idx.ingest(photos)  # image-only behaviour unchanged: all unchanged, skipped
        assert (report.skipped, report.indexed) == (4, 0)
        assert upgrade(idx.store.engine) == []  # idempotent
        clips = tmp_path / "clips"
        clips.mkdir()
        write_clip(clips / "v.mkv", 10, fps=10)
        idx.set_video_options(VideoOptions(fps=5, dedup_threshold=0))
        report = idx.ingest(clips)
        assert (report.videos, report.frames, report.failed) == (1, 5, 0)
        assert len(idx.store.region_ids()) == len(idx.vectors.ids())
        assert idx.check().clean


def test_an_image_only_sqlite_index_is_upgraded_in_place(tmp_path: Path, photos: Path) -> None:
    upgrade_in_place(tmp_path, photos, None)


def test_an_image_only_postgres_index_is_upgraded_in_place(tmp_path: Path, photos: Path) -> None:
    from tests.pg import fresh_schema

    with fresh_schema() as url:
        upgrade_in_place(tmp_path, photos, url)
