"""Integrity of an index: every region row has its vector and every vector its row.

SQL is the source of truth (each region row carries its vector); the FAISS file is a cache of it.
:func:`check` inspects what is on disk without changing anything; :func:`repair` restores the
invariants: rebuilds the FAISS file from SQL and marks images whose rows are incomplete for
re-ingestion (status ``failed`` with the reason, so the next ingest redoes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, update

from segindex.store.kinds import KindSpec
from segindex.store.schema import images, regions
from segindex.store.sql import Store, _bump_generation
from segindex.store.vectors import VectorIndex


@dataclass
class CheckReport:
    """Findings of :func:`check`. ``ok`` when there are no problems."""

    region_rows: int = 0
    vectors_in_file: int = 0
    missing_from_file: int = 0  # rows whose vector the FAISS file lacks
    orphan_vectors: int = 0  # vectors in the file with no row
    bad_vector_rows: list[int] = field(default_factory=list)  # wrong byte length / not finite
    incomplete_images: list[str] = field(default_factory=list)  # n_regions != rows
    vector_file: str = "ok"  # ok | missing | unreadable: ... | wrong dimension ...

    @property
    def problems(self) -> list[str]:
        out = []
        if self.vector_file != "ok":
            out.append(f"vector file {self.vector_file}")
        if self.missing_from_file:
            out.append(f"{self.missing_from_file} region rows have no vector in the FAISS file")
        if self.orphan_vectors:
            out.append(f"{self.orphan_vectors} vectors in the FAISS file have no region row")
        if self.bad_vector_rows:
            out.append(f"{len(self.bad_vector_rows)} region rows hold a malformed vector")
        if self.incomplete_images:
            out.append(f"{len(self.incomplete_images)} images have fewer region rows than recorded")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "region_rows": self.region_rows,
            "vectors_in_file": self.vectors_in_file,
            "missing_from_file": self.missing_from_file,
            "orphan_vectors": self.orphan_vectors,
            "bad_vector_rows": self.bad_vector_rows[:100],
            "incomplete_images": self.incomplete_images[:100],
        }


def check(store: Store, vector_file: Path, dim: int) -> CheckReport:
    """Compare SQL rows with the FAISS file on disk; change nothing."""
    report = CheckReport()
    sql_ids = store.region_ids()
    report.region_rows = len(sql_ids)
    report.bad_vector_rows = _malformed_vector_rows(store, dim)
    file_ids = np.zeros(0, dtype=np.int64)
    if not vector_file.exists():
        report.vector_file = "missing" if len(sql_ids) else "ok"
    else:
        try:
            vi = VectorIndex.load(vector_file, dim)
            file_ids = vi.ids()
        except Exception as e:  # noqa: BLE001 - any unreadable file is a finding, not a crash
            report.vector_file = f"unreadable: {type(e).__name__}: {e}"
    report.vectors_in_file = len(file_ids)
    if report.vector_file == "ok" or file_ids.size:
        report.missing_from_file = int(np.setdiff1d(sql_ids, file_ids).size)
        report.orphan_vectors = int(np.setdiff1d(file_ids, sql_ids).size)
    with store.engine.connect() as conn:
        counted = (
            select(regions.c.image_id, func.count().label("n"))
            .group_by(regions.c.image_id)
            .subquery()
        )
        rows = conn.execute(
            select(images.c.path)
            .outerjoin(counted, counted.c.image_id == images.c.id)
            .where(images.c.status == "indexed")
            .where(func.coalesce(counted.c.n, 0) != images.c.n_regions)
        )
        report.incomplete_images = [r.path for r in rows]
    return report


def _malformed_vector_rows(store: Store, dim: int) -> list[int]:
    """Ids of region rows whose stored vector has the wrong length or is not finite."""
    bad: list[int] = []
    last = 0
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(regions.c.id, regions.c.vector)
                .where(regions.c.id > last)
                .order_by(regions.c.id)
                .limit(20_000)
            ).all()
        if not rows:
            return bad
        for r in rows:
            raw = bytes(r.vector)
            if len(raw) != 4 * dim or not np.isfinite(np.frombuffer(raw, dtype="<f4")).all():
                bad.append(int(r.id))
        last = int(rows[-1].id)


def repair(store: Store, vector_file: Path, dim: int, spec: KindSpec | None = None) -> CheckReport:
    """Restore the invariants and return a fresh :func:`check` of the result.

    Malformed vector rows and incomplete images are dropped and their images marked ``failed``
    (reason: needs re-ingestion) so the next ``ingest`` redoes them; the FAISS file is rebuilt
    from the vectors in SQL and written atomically.
    """
    before = check(store, vector_file, dim)
    with store.engine.begin() as conn:
        _bump_generation(conn)  # readers resync, cached allowed-id sets are dropped
        if before.bad_vector_rows:
            hit = conn.execute(
                select(regions.c.image_id).where(regions.c.id.in_(before.bad_vector_rows))
            ).scalars()
            image_ids = sorted(set(hit))
            conn.execute(regions.delete().where(regions.c.image_id.in_(image_ids)))
            conn.execute(
                update(images)
                .where(images.c.id.in_(image_ids))
                .values(
                    status="failed",
                    sha256=None,
                    error="repair: malformed vector, re-ingest",
                    n_regions=0,
                )
            )
        if before.incomplete_images:
            ids = select(images.c.id).where(images.c.path.in_(before.incomplete_images))
            conn.execute(regions.delete().where(regions.c.image_id.in_(ids)))
            conn.execute(
                update(images)
                .where(images.c.path.in_(before.incomplete_images))
                .values(
                    status="failed",
                    sha256=None,
                    error="repair: incomplete regions, re-ingest",
                    n_regions=0,
                )
            )
    vi = VectorIndex.build(  # as the index kind ``spec`` picks (default ``auto``)
        dim,
        spec or KindSpec(),
        store.region_count(),
        store.iter_vectors(),
        sample=store.sample_vectors,
    )
    vi.save(vector_file)
    return check(store, vector_file, dim)
