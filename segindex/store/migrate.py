"""In-place schema upgrades of an existing index (SQLite and PostgreSQL).

Version 1 (images only) -> 2 (videos): nullable columns are added to ``segindex_images``
(``media``, ``duration_s``, ``fps``, ``rotation``) and ``segindex_regions`` (``frame_index``,
``time_s``, ``track_id`` + its index); the new tables (``segindex_tracks``,
``segindex_video_progress``) are made by ``metadata.create_all``. Existing rows keep ``NULL`` in
the new columns, which means "an image", so an image-only index behaves exactly as before.
Idempotent, and safe when two processes open the same old index at once (a column another
process added meanwhile is taken as done).

Version 2 -> 3 (vectors out of SQL, :func:`move_vectors`): each region row's float32 ``vector``
blob is copied, in id order and chunks of 20k committed one by one, into the vector segment files
(float16 unless the index says otherwise); each row's ``crop`` JSON becomes a ``crop_id`` into
``segindex_crops``; then ONE transaction drops the two columns. A crash midway resumes where the
last committed chunk ended (the rows keep their blobs until the drop), so the move is resumable,
and the drop atomic. It runs under the writer lock, with a progress bar on a terminal.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import Column, Table

from segindex.progress import progress
from segindex.store.lock import WriterLock
from segindex.store.schema import (
    SCHEMA_VERSION,
    crops,
    images,
    index_meta,
    metadata,
    regions,
    tracks,
)
from segindex.store.vector_store import VectorStore

#: the rows moved per committed chunk by :func:`move_vectors`
MOVE_CHUNK = 20_000

#: columns added by schema version 2, per table
_ADDED: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (images, ("media", "duration_s", "fps", "rotation")),
    (regions, ("frame_index", "time_s", "track_id")),
    (tracks, ("vector_sum", "votes", "best_id")),  # tracks made by early version-2 code
    (regions, ("crop_id",)),  # schema version 3
)


def _column_ddl(engine: Engine, column: Column[Any]) -> str:
    kind = column.type.compile(dialect=engine.dialect)
    return f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {kind}"


def upgrade(engine: Engine, vectors: VectorStore | None = None) -> list[str]:
    """Create missing tables and add missing columns and indexes, then move the vectors of a
    version-2 index out of its rows (into ``vectors``); returns the columns added
    (``table.column``), empty when the schema was already current."""
    metadata.create_all(engine)
    added: list[str] = []
    for table, names in _ADDED:
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for name in names:
            if name in have:
                continue
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(_column_ddl(engine, table.c[name]))
            except DBAPIError:
                # another process may have added it since we looked: only then is it fine
                now = {c["name"] for c in inspect(engine).get_columns(table.name)}
                if name not in now:
                    raise
            added.append(f"{table.name}.{name}")
    for index in regions.indexes:
        if "track_id" in index.columns:
            index.create(engine, checkfirst=True)
    if vectors is not None and "vector" in _columns(engine, regions.name):
        move_vectors(engine, vectors)
    return added


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def move_vectors(engine: Engine, vectors: VectorStore) -> int:
    """Schema 2 -> 3 (see the module doc); returns the number of vectors moved."""
    with WriterLock(vectors.path.parent, engine):
        if "vector" not in _columns(engine, regions.name):  # another process did it meanwhile
            return 0
        with engine.connect() as conn:
            meta = dict(conn.execute(select(index_meta.c.key, index_meta.c.value)).all())
            done = max((r.hi for r in vectors.readers(conn)), default=0)
            total = conn.execute(
                text(f"SELECT count(*) FROM {regions.name} WHERE id > :done"), {"done": done}
            ).scalar_one()
        vectors.dtype = json.loads(meta.get("vector_dtype", '"float16"'))
        moved = 0
        with progress("moving vectors out of SQL", int(total)) as advance:
            while True:
                with engine.begin() as conn:
                    rows = conn.execute(
                        text(
                            f"SELECT id, vector FROM {regions.name} WHERE id > :done "
                            "ORDER BY id LIMIT :n"
                        ),
                        {"done": done, "n": MOVE_CHUNK},
                    ).all()
                    if not rows:
                        break
                    ids = np.asarray([r.id for r in rows], dtype=np.int64)
                    vecs = np.stack([np.frombuffer(bytes(r.vector), dtype="<f4") for r in rows])
                    out = vectors.appender(conn, int(vecs.shape[1]))
                    try:
                        out.append(ids, vecs)
                        out.flush()
                        vectors.commit(conn, out)
                    finally:
                        out.close()
                done = int(ids[-1])
                moved += len(ids)
                advance(len(ids))
        with engine.begin() as conn:
            policies = conn.execute(text(f"SELECT DISTINCT crop FROM {regions.name}")).scalars()
            for policy in list(policies):
                key = json.dumps(json.loads(policy), sort_keys=True) if policy else None
                if key is None:
                    continue
                crop_id = conn.execute(
                    select(crops.c.id).where(crops.c.policy == key)
                ).scalar_one_or_none()
                if crop_id is None:
                    crop_id = conn.execute(
                        crops.insert().values(policy=key).returning(crops.c.id)
                    ).scalar_one()
                conn.execute(
                    text(f"UPDATE {regions.name} SET crop_id = :c WHERE crop = :p"),
                    {"c": crop_id, "p": policy},
                )
            if "vector_dtype" not in meta:
                conn.execute(
                    index_meta.insert().values(key="vector_dtype", value=json.dumps(vectors.dtype))
                )
            for column in ("vector", "crop"):
                conn.exec_driver_sql(f"ALTER TABLE {regions.name} DROP COLUMN {column}")
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:  # give the blobs' pages back to the file system
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM")
        return moved


__all__ = ["SCHEMA_VERSION", "move_vectors", "upgrade"]
