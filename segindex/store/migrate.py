"""In-place schema upgrades of an existing index (SQLite and PostgreSQL).

Version 1 (images only) -> 2 (videos): nullable columns are added to ``segindex_images``
(``media``, ``duration_s``, ``fps``, ``rotation``) and ``segindex_regions`` (``frame_index``,
``time_s``, ``track_id`` + its index); the new tables (``segindex_tracks``,
``segindex_video_progress``) are made by ``metadata.create_all``. Existing rows keep ``NULL`` in
the new columns, which means "an image", so an image-only index behaves exactly as before.
Idempotent, and safe when two processes open the same old index at once (a column another
process added meanwhile is taken as done).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import Column, Table

from segindex.store.schema import SCHEMA_VERSION, images, metadata, regions, tracks

#: columns added by schema version 2, per table
_ADDED: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (images, ("media", "duration_s", "fps", "rotation")),
    (regions, ("frame_index", "time_s", "track_id")),
    (tracks, ("vector_sum", "votes", "best_id")),  # tracks made by early version-2 code
)


def _column_ddl(engine: Engine, column: Column[Any]) -> str:
    kind = column.type.compile(dialect=engine.dialect)
    return f"ALTER TABLE {column.table.name} ADD COLUMN {column.name} {kind}"


def upgrade(engine: Engine) -> list[str]:
    """Create missing tables and add missing columns and indexes; returns the columns added
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
    return added


__all__ = ["SCHEMA_VERSION", "upgrade"]
