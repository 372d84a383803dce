"""Idempotent image writes: a repeated write of the same image changes nothing.

Ray runs tasks at least once (a retried task or a restarted actor repeats its side effects), so
correctness comes from the write. An image's identity is its path (``UNIQUE`` in
``segindex_images`` since schema version 1, so no migration is needed): a writer inserts the row
with ``INSERT ... ON CONFLICT (path) DO NOTHING`` (PostgreSQL, SQLite) and otherwise locks the
existing row (``SELECT ... FOR UPDATE`` on PostgreSQL) before deciding. Within one ingest a
planned image was not indexed with its current bytes when planned, so finding it indexed with
those bytes at write time means an earlier attempt of this run (or a concurrent writer) already
wrote it: the write is skipped, never a second set of regions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

from sqlalchemy import Table, insert, select

from segindex.store.schema import images


def find_image(conn: Any, path: str, *, lock: bool) -> Any | None:
    """The ``(id, sha256, status)`` row of the image stored at ``path`` (already
    :func:`~segindex.store.sql.db_path`), locked until the transaction ends when ``lock`` (on
    dialects that lock rows; SQLite serialises writers anyway)."""
    stmt = select(images.c.id, images.c.sha256, images.c.status).where(images.c.path == path)
    if lock and conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


@overload
def insert_image(conn: Any, values: dict[str, Any], *, if_absent: Literal[False]) -> int: ...


@overload
def insert_image(conn: Any, values: dict[str, Any], *, if_absent: bool) -> int | None: ...


def insert_image(conn: Any, values: dict[str, Any], *, if_absent: bool) -> int | None:
    """Insert an image row (``values`` hold every column but ``id``); its new id, or ``None``
    when ``if_absent`` and a row with that path exists (inserted meanwhile by another writer)."""
    dialect = conn.dialect.name
    if if_absent and dialect in ("postgresql", "sqlite"):
        dialect_insert: Callable[[Table], Any]  # either dialect's INSERT with ON CONFLICT
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = (
            dialect_insert(images)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[images.c.path])
            .returning(images.c.id)
        )
        return conn.execute(stmt).scalar_one_or_none()
    return conn.execute(insert(images).values(**values).returning(images.c.id)).scalar_one()


def already_written(row: Any, values: dict[str, Any]) -> bool:
    """Whether the stored ``row`` already holds this image: the same bytes (sha256), indexed.
    (Then even a failing repeat is skipped: one attempt succeeded, its regions stay.)"""
    return row.sha256 is not None and row.sha256 == values["sha256"] and row.status == "indexed"
