"""Integrity of an index: every region row has its vector and every vector its row.

SQL is the source of truth, and the commit point of the vector segment files (a region row is
committed only after its vector is durable in a segment); the FAISS file is a cache of both.
:func:`check` inspects what is on disk without changing anything; :func:`repair` restores the
invariants: rebuilds the FAISS file from SQL and marks images whose rows are incomplete for
re-ingestion (status ``failed`` with the reason, so the next ingest redoes them).

Findings come in two grades. A *stale cache* is a vector file whose ids differ from the SQL ids,
a missing file, or one that cannot be read (damaged on disk, or of another dimension): a crash
between a batch's SQL commit and the file's rewrite leaves it behind, a crash between a delete's
commit and the rewrite leaves extra ids. Nothing is lost: :meth:`segindex.Index.vectors` reads the
file on first use and rebuilds it from SQL when its ids differ or it is missing or unreadable, so
these are *notes*. Stored vectors that no row references are notes too (*stale vectors*: the tail a
crash left between the vector flush and the SQL commit, segment files never registered, and the
tombstones of deleted regions): ``repair`` truncates, removes and compacts them. *Problems* are
what no open repairs: region rows whose vector is missing or malformed (not finite), images whose
row count differs from the one recorded, and rows without an image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select, update

from segindex.store.kinds import KindSpec
from segindex.store.schema import images, regions
from segindex.store.sql import Store, bump_generation
from segindex.store.vector_store import Stale
from segindex.store.vectors import VectorIndex

#: how a stale cache is repaired, appended to each note
_REBUILT = "it is rebuilt from the database on the next open, or now with `segindex repair`"
#: how many ids or paths of each finding ``to_dict`` and the messages carry
_SHOWN = 100


@dataclass
class CheckReport:
    """Findings of :func:`check`: ``problems`` (real damage; ``ok`` when there are none) and
    ``notes`` (a stale vector file, which the next open rebuilds from SQL)."""

    region_rows: int = 0
    vectors_in_file: int = 0
    missing_from_file: int = 0  # rows whose vector the FAISS file lacks (all, if it is missing)
    orphan_vectors: int = 0  # ids in the FAISS file with no row (deleted or rolled back)
    bad_vector_rows: list[int] = field(default_factory=list)  # vector missing / not finite
    incomplete_images: list[str] = field(default_factory=list)  # n_regions != rows
    rows_without_image: list[int] = field(default_factory=list)  # image_id matches no image
    vector_file: str = "ok"  # ok | missing | unreadable: ... (wrong dimension included)
    stale_vectors: Stale = field(default_factory=Stale)  # in the segment files, unreferenced

    @property
    def file_readable(self) -> bool:
        """The vector file was read (or is missing), so its ids could be compared with SQL."""
        return self.vector_file in ("ok", "missing")

    @property
    def stale(self) -> bool:
        """The vector file lags SQL or holds extra ids (or is missing while SQL holds rows, or
        cannot be read)."""
        return not self.file_readable or bool(self.missing_from_file or self.orphan_vectors)

    @property
    def problems(self) -> list[str]:
        """Damage the next open does not repair (``segindex repair`` does)."""
        out = []
        if self.bad_vector_rows:
            out.append(
                f"{len(self.bad_vector_rows)} region rows have no stored vector or one that is "
                f"not finite, ids {_listed(self.bad_vector_rows)}"
            )
        if self.incomplete_images:
            out.append(
                f"{len(self.incomplete_images)} images have fewer (or more) region rows than "
                f"recorded: {_listed(self.incomplete_images)}"
            )
        if self.rows_without_image:
            out.append(
                f"{len(self.rows_without_image)} region rows belong to no image, "
                f"ids {_listed(self.rows_without_image)}"
            )
        return out

    @property
    def notes(self) -> list[str]:
        """Stale vectors and a stale vector file: what differs and what will happen (no
        damage)."""
        out = self._stale_vector_notes()
        if not self.stale:
            return out
        if not self.file_readable:
            return [*out, f"vector file {self.vector_file}; " + _REBUILT]
        if self.vector_file == "missing":
            return [
                *out,
                f"vector file is missing while the database holds {self.region_rows} vectors; "
                + _REBUILT,
            ]
        if self.missing_from_file:
            out.append(
                f"vector file is {self.missing_from_file} vectors behind the database; " + _REBUILT
            )
        if self.orphan_vectors:
            out.append(
                f"vector file holds {self.orphan_vectors} vectors of regions no longer in the "
                "database (deleted, or rolled back by a crash); " + _REBUILT
            )
        return out

    def _stale_vector_notes(self) -> list[str]:
        st, out = self.stale_vectors, []
        if st.tail_rows:
            out.append(
                f"{st.tail_rows} vectors were written past the last commit (a crash between the "
                "vector flush and the database commit); the next write or `segindex repair` "
                "drops them"
            )
        if st.orphan_files:
            out.append(
                f"{len(st.orphan_files)} vector files are not registered in the database "
                f"({_listed(st.orphan_files)}); `segindex repair` removes them"
            )
        return out  # tombstones (st.dead_rows) are the normal state after deletes: counted only

    @property
    def ok(self) -> bool:
        """No damage (a stale vector file may remain: see ``notes``)."""
        return not self.problems

    @property
    def clean(self) -> bool:
        """No damage and the vector file holds exactly the SQL ids."""
        return self.ok and not self.stale

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "notes": self.notes,
            "stale_cache": {
                "stale": self.stale,
                "vector_file": self.vector_file if self.file_readable else "unreadable",
                "behind": self.missing_from_file if self.file_readable else 0,
                "extra": self.orphan_vectors if self.file_readable else 0,
            },
            "region_rows": self.region_rows,
            "vectors_in_file": self.vectors_in_file,
            "vector_file": self.vector_file,
            "missing_from_file": self.missing_from_file,
            "orphan_vectors": self.orphan_vectors,
            "bad_vector_rows": self.bad_vector_rows[:_SHOWN],
            "stale_vectors": {
                "tail_rows": self.stale_vectors.tail_rows,
                "orphan_files": self.stale_vectors.orphan_files[:_SHOWN],
                "dead_rows": self.stale_vectors.dead_rows,
            },
            "incomplete_images": self.incomplete_images[:_SHOWN],
            "rows_without_image": self.rows_without_image[:_SHOWN],
        }


def _listed(items: list[int] | list[str], n: int = 5) -> str:
    """The first ``n`` items, comma-separated, with how many more there are."""
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def check(store: Store, vector_file: Path, dim: int) -> CheckReport:
    """Compare SQL rows with the FAISS file on disk; change nothing."""
    report = CheckReport()
    sql_ids = store.region_ids()
    report.region_rows = len(sql_ids)
    report.bad_vector_rows = _malformed_vector_rows(store, sql_ids)
    report.stale_vectors = store.vectors.stale(sql_ids)
    file_ids = np.zeros(0, dtype=np.int64)
    if not vector_file.exists():
        report.vector_file = "missing" if len(sql_ids) else "ok"
    else:
        try:
            vi = VectorIndex.load(vector_file, dim)
            file_ids = vi.ids()
        except Exception as e:  # noqa: BLE001 - any unreadable file is a finding, not a crash
            # FAISS prefixes "Error in <C++ function> at <file>:<line>: "; the rest is the reason
            reason = re.sub(r"^Error in .* at \S+:\d+: ", "", str(e).strip())
            report.vector_file = f"unreadable: {type(e).__name__}: {reason}"
    report.vectors_in_file = len(file_ids)
    if report.file_readable:
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
            .order_by(images.c.path)
        )
        report.incomplete_images = [r.path for r in rows]
        report.rows_without_image = list(
            conn.execute(
                select(regions.c.id)
                .outerjoin(images, images.c.id == regions.c.image_id)
                .where(images.c.id.is_(None))
                .order_by(regions.c.id)
            ).scalars()
        )
    return report


def _malformed_vector_rows(store: Store, sql_ids: np.ndarray) -> list[int]:
    """Ids of region rows whose vector is not stored, or not finite."""
    seen = np.zeros(0, np.int64)
    bad: list[np.ndarray] = []
    for ids, vecs in store.vectors.chunks(sql_ids):
        seen = np.concatenate([seen, ids])
        bad.append(ids[~np.isfinite(vecs).all(axis=1)])
    bad.append(np.setdiff1d(sql_ids, seen))
    return sorted(int(i) for i in np.unique(np.concatenate(bad)))


def repair(store: Store, vector_file: Path, dim: int, spec: KindSpec | None = None) -> CheckReport:
    """Restore the invariants and return a fresh :func:`check` of the result.

    Rows without (or with a malformed) vector and incomplete images are dropped and their
    images marked ``failed`` (reason: needs re-ingestion) so the next ``ingest`` redoes them;
    rows without an image are deleted; stale vectors are dropped (tails truncated, unregistered
    files removed, segments compacted); the FAISS file is rebuilt from the stored vectors and
    written atomically. Run inside the writer lock.
    """
    before = check(store, vector_file, dim)
    with store.engine.begin() as conn:
        bump_generation(conn)  # readers resync, cached allowed-id sets are dropped
        if before.rows_without_image:
            conn.execute(regions.delete().where(regions.c.id.in_(before.rows_without_image)))
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
                    error="repair: missing or malformed vector, re-ingest",
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
    store.vectors.clean(store.region_ids(), compact_all=True)
    vi = VectorIndex.build(  # as the index kind ``spec`` picks (default ``auto``)
        dim,
        spec or KindSpec(),
        store.region_count(),
        store.iter_vectors(),
        sample=store.sample_vectors,
        fetch=store.vectors_by_id,
    )
    vi.save(vector_file)
    return check(store, vector_file, dim)
