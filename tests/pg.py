"""A throwaway PostgreSQL schema for tests: starts the local server if it is down, skips when
there is none (a user's machine without PostgreSQL)."""

from __future__ import annotations

import glob
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

BASE_URL = os.environ.get("SEGINDEX_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _connectable(url: str) -> bool:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not reachable"
        return False


def ensure_server() -> None:
    """Start the machine's PostgreSQL cluster if it is installed but down; skip if absent."""
    pytest.importorskip("psycopg2")
    if _connectable(BASE_URL):
        return
    versions = [os.path.basename(p) for p in glob.glob("/etc/postgresql/*")]
    if not versions or not os.path.exists("/usr/bin/pg_ctlcluster"):
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "start"],
        capture_output=True,
        timeout=60,
    )
    for _ in range(30):
        if _connectable(BASE_URL):
            return
        time.sleep(1)
    pytest.skip("PostgreSQL is installed but could not be started")


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A URL whose search_path is a new empty schema, dropped afterwards."""
    from sqlalchemy import create_engine, text

    ensure_server()
    schema = f"segindex_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(BASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{BASE_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
