"""The FAISS index as a mirror of the SQL store: :class:`VectorMirror`.

SQL holds the truth (rows and their vectors); ``vectors.faiss`` is a cache of the vectors, loaded
on first use, written when it changed (:meth:`VectorMirror.flush`, at most every
``checkpoint_seconds`` while writing), and rebuilt from SQL when it is missing, damaged or stale.

**A search sees an image whole or not at all.** A batch's rows commit in ONE transaction
(:meth:`Store.write <segindex.store.sql.Store.write>`) before their vectors enter FAISS, and rows
are deleted before their vectors leave it; the vectors of a committed batch (new ones in, replaced
and deleted ones out) change in ONE step under :attr:`VectorMirror.lock`, which searches hold
while they read FAISS; and a search skips a FAISS id without a row. So between the commit and the
FAISS step an image is invisible (new vectors not yet in FAISS, old ids without rows), after it
whole.

One writer at a time: :meth:`VectorMirror.writing` holds the thread lock and the
:class:`~segindex.store.lock.WriterLock` (other processes and machines) and first brings the
vectors up to date with what other writers committed. Readers never lock: they catch up with
other processes' writes through the store's write generation whenever it moved.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from segindex.errors import IndexLockedError, IndexNotFoundError
from segindex.store.kinds import META_KEY as KIND_META_KEY
from segindex.store.kinds import KindSpec
from segindex.store.lock import WriterLock
from segindex.store.sql import Store, WriteResult
from segindex.store.vectors import VectorIndex

VECTORS_FILE = "vectors.faiss"
#: beside the FAISS file: the store generation it reflects and its size, so an open can trust
#: an up-to-date file without reading every id from SQL (10M ids: seconds)
STATE_FILE = "vectors.faiss.state"

__all__ = ["STATE_FILE", "VECTORS_FILE", "VectorMirror"]


class VectorMirror:
    """The FAISS index of the index directory ``directory``, kept equal to ``store``'s vectors.

    lock:    guards the FAISS index (load, search, add/remove, save); searches hold it while
             they read FAISS
    writer:  the writer lock across processes (``write.lock`` in ``directory``; an advisory lock
             too on PostgreSQL)
    checkpoint_seconds: while writing, the file is saved when its last save is older than this
    """

    def __init__(self, directory: Path, store: Store, *, checkpoint_seconds: float = 30.0) -> None:
        self.directory = Path(directory)
        self.file = self.directory / VECTORS_FILE
        self.store = store
        self.checkpoint_seconds = checkpoint_seconds
        self.lock = threading.RLock()
        self.writer = WriterLock(self.directory, store.engine)
        self._write_lock = threading.RLock()  # one writing thread in this process
        self._vectors: VectorIndex | None = None
        self._generation = 0  # the store generation the loaded vectors reflect
        self._dirty = False  # the loaded vectors differ from the file
        self._last_save = time.monotonic()
        self._dim: int | None = None

    # -- reading -----------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """The vector dimension (``vector_dim``, set when the index was created)."""
        if self._dim is None:
            dim = self.store.get_meta("vector_dim")
            if dim is None:
                raise IndexNotFoundError(f"the store of {str(self.directory)!r} has no vector_dim")
            self._dim = int(dim)
        return self._dim

    @property
    def kind_spec(self) -> KindSpec:
        """The configured vector index kind (``vector_index`` setting; ``auto`` if unset)."""
        return KindSpec.from_dict(self.store.get_meta(KIND_META_KEY))

    @property
    def vectors(self) -> VectorIndex:
        """The FAISS index: loaded on first use (rebuilt from SQL if the file is missing or
        stale), and brought up to date with what other processes committed since (a reader
        process sees a writer's new images without reopening)."""
        with self.lock:
            if self._vectors is None:
                self._generation = self.store.generation()
                self._vectors = self._load()
            elif not self.writer.held:
                self._catch_up(self._vectors)
            return self._vectors

    @property
    def dirty(self) -> bool:
        """Whether the loaded vectors changed since the file was last written."""
        return self._dirty

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer locks (threads of this process, then other processes) and, when the
        vectors are loaded, bring them up to date with what other writers committed meanwhile:
        every write to the index happens inside this, and applies what it commits."""
        with self._write_lock, self.writer:
            with self.lock:
                if self._vectors is not None:
                    self._catch_up(self._vectors)
            yield
            with self.lock:  # what was committed inside was applied: nothing to catch up with
                if self._vectors is not None:  # (after an error, the next use catches up)
                    self._generation = self.store.generation()
                    if not self._dirty and self.file.exists():
                        self._write_state(self._vectors)

    def apply(self, result: WriteResult) -> None:
        """Mirror a committed batch: its removed ids leave FAISS and its new vectors enter, in
        ONE step under :attr:`lock`; the file is written when a checkpoint is due. Vectors not
        loaded yet are loaded instead: from SQL, which holds the batch already."""
        with self.lock:
            if self._vectors is None:
                _ = self.vectors
                return
            vi = self._vectors
            vi.remove(result.removed_ids)
            vi.add(result.added_ids, result.added_vectors)
            self._dirty = self._dirty or bool(len(result.removed_ids) or len(result.added_ids))
        if time.monotonic() - self._last_save > self.checkpoint_seconds:
            self.flush()

    def sync(self) -> None:
        """Make the vectors hold exactly the SQL store's ids, after rows were written elsewhere
        (e.g. by Ray workers) while this process held the writer lock."""
        with self.lock:
            vi = self.vectors
            before = vi.ntotal
            self._sync(vi)
            self._dirty = self._dirty or vi.ntotal != before

    def flush(self) -> None:
        """Write the FAISS file if it changed since it was last saved."""
        with self.lock:
            if self._dirty and self._vectors is not None:
                self._vectors.save(self.file)
                self._write_state(self._vectors)  # a lower bound: later commits may be in
                self._dirty = False
                self._last_save = time.monotonic()

    def rebuild(self, spec: KindSpec) -> VectorIndex:
        """Build the index ``spec`` picks from SQL, install and write it (inside
        :meth:`writing`)."""
        with self.lock:
            vi = self._build(spec)
            vi.save(self.file)
            self._vectors = vi
            self._generation = self.store.generation()
            self._write_state(vi)
            self._dirty = False
            self._last_save = time.monotonic()
            return vi

    def migrate_kind(self) -> None:
        """After an ingest: rebuild once if the index grew past its kind (``auto`` crossing a
        size threshold, or ``ivfpq`` that now has enough vectors to train)."""
        spec = self.kind_spec
        with self.lock:
            vi = self.vectors
            if spec.target(vi.ntotal, self.dim) != vi.kind:
                self.rebuild(spec)

    def discard(self) -> None:
        """Forget the loaded vectors (the file was replaced, e.g. by a repair): they are loaded
        again on next use."""
        with self.lock:
            self._vectors = None
            self._dirty = False

    # -- internals ---------------------------------------------------------------------------

    def _catch_up(self, vi: VectorIndex) -> None:
        """Follow what was committed since the vectors were loaded or last caught up."""
        generation = self.store.generation()
        if generation != self._generation:
            self._sync(vi)
            self._generation = generation

    def _sync(self, vi: VectorIndex) -> None:
        """Make ``vi`` hold exactly the SQL store's ids: drop deleted ones, add new ones."""
        sql_ids, mem_ids = self.store.region_ids(), vi.ids()
        vi.remove(np.setdiff1d(mem_ids, sql_ids, assume_unique=True))
        new = np.setdiff1d(sql_ids, mem_ids, assume_unique=True)
        if len(new):
            found = self.store.region_vectors(new.tolist())
            ids = np.asarray([i for i in new.tolist() if i in found], dtype=np.int64)
            if len(ids):
                vi.add(ids, np.stack([found[int(i)] for i in ids]))

    def _fetch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.vectors_by_id(ids)

    def _build(self, spec: KindSpec) -> VectorIndex:
        """A FAISS index of the kind ``spec`` picks for the stored vectors, built from SQL."""
        return VectorIndex.build(
            self.dim,
            spec,
            self.store.region_count(),
            self.store.iter_vectors(),
            sample=self.store.sample_vectors,
            fetch=self._fetch,
        )

    def _write_state(self, vi: VectorIndex) -> None:
        """Record that the FAISS file holds what the store held at ``self._generation``."""
        state = {"generation": self._generation, "ntotal": vi.ntotal, "dim": self.dim}
        tmp = self.directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.directory / STATE_FILE)

    def _state_matches(self, vi: VectorIndex) -> bool:
        """The file was saved with every commit up to the store's current generation."""
        try:
            state = json.loads((self.directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return False
        return bool(
            state.get("generation") == self._generation
            and state.get("ntotal") == vi.ntotal
            and state.get("dim") == self.dim
        )

    def _load(self) -> VectorIndex:
        spec = self.kind_spec
        vi: VectorIndex | None = None
        if self.file.exists():
            try:
                vi = VectorIndex.load(self.file, self.dim, spec=spec, fetch=self._fetch)
            except (RuntimeError, ValueError, OSError):  # damaged, truncated, another dimension
                vi = None
            if vi is not None and self._state_matches(vi):
                return vi
        sql_ids = self.store.region_ids()
        if vi is not None and np.array_equal(vi.ids(), sql_ids):
            return vi
        # missing, unreadable or stale (ids differ: a crash before the last checkpoint, or a
        # foreign file): the file is a cache of SQL, rebuilt from it; ids are never reused, but a
        # foreign file's vectors cannot be trusted
        vi = self._build(spec)
        if self._try_writer():  # only a writer replaces the file; readers rebuild in memory
            try:
                vi.save(self.file)
                self._write_state(vi)
            finally:
                self.writer.release()
        return vi

    def _try_writer(self) -> bool:
        try:
            self.writer.acquire()
        except IndexLockedError:
            return False
        return True
