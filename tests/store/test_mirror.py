"""The vector mirror alone, without models: a store (SQLite in tmp_path) and a VectorMirror fed
deterministic vectors through the store's batch write.

"A search sees an image whole or not at all": searches running in threads while images are
written, replaced and deleted only ever return every region of one written version of an image,
or none of it; deleting rows before vectors leaves nothing of the image visible; another mirror
on the same files (as another process) follows committed writes through the write generation;
checkpoints write the file, and a stale or damaged file is rebuilt from SQL.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from segindex.regions import Regions
from segindex.search import Hit, Query, Term, rank
from segindex.store.mirror import VectorMirror
from segindex.store.sql import ImageWrite, Store, WriteResult
from segindex.store.vectors import VectorIndex

DIM = 16
SIZE = 8  # image side in pixels
ALL = 10_000  # more hits than the test ever writes: a search returns every visible region


def vectors(path: str, version: int, n: int) -> np.ndarray:
    """``(n, DIM)`` L2-normalised float32 vectors, the same for the same image and version."""
    seed = sum(path.encode()) * 1000 + version
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def image_write(path: str, version: int, n: int) -> ImageWrite:
    """Image ``path`` at ``version`` with ``n`` regions, each labelled ``v<version>``."""
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    for j in range(n):
        masks[j, j % SIZE, :] = True
    regions = Regions.from_masks(masks, labels=[f"v{version}"] * n, scores=[0.5] * n)
    return ImageWrite(
        path=path,
        sha256=f"{path}-{version}",
        width=SIZE,
        height=SIZE,
        regions=regions,
        kinds=["segment"] * n,
        vectors=vectors(path, version, n),
    )


def make_store(root: Path) -> Store:
    store = Store(f"sqlite:///{root / 'meta.sqlite'}")
    if store.get_meta("vector_dim") is None:
        store.set_meta("vector_dim", DIM)
    return store


def search(store: Store, mirror: VectorMirror, query: np.ndarray) -> list[Hit]:
    """Every visible region, ranked against ``query``, as the searcher asks for it."""
    spec = Query(terms=(Term(vector=query),), k=ALL)
    return rank(query, spec, store, mirror.vectors, mirror.lock).hits


def by_image(hits: list[Hit]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for h in hits:
        out.setdefault(h.image_path, set()).add(h.region_id)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


def test_concurrent_searches_see_each_image_whole_or_not_at_all(root: Path) -> None:
    store = make_store(root)
    mirror = VectorMirror(root, store, checkpoint_seconds=0.05)
    paths = [f"img{i}.png" for i in range(6)]
    # region id -> (path, version), and (path, version) -> its region ids; recorded after the
    # commit and before the FAISS step, the only moment from which a search may find them
    owner: dict[int, tuple[str, int]] = {}
    regions_of: dict[tuple[str, int], set[int]] = {}
    book = threading.Lock()

    def write(path: str, version: int, n: int) -> None:
        with mirror.writing():
            result = store.write([image_write(path, version, n)])
            with book:
                ids = {int(i) for i in result.added_ids}
                owner.update(dict.fromkeys(ids, (path, version)))
                regions_of[(path, version)] = ids
            mirror.apply(result)

    for v, path in enumerate(paths):
        write(path, v, 2 + v % 3)
    done = threading.Event()
    problems: list[str] = []
    searches = [0]
    seen_versions: set[tuple[str, int]] = set()

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not done.is_set():
            query = rng.normal(size=DIM).astype(np.float32)
            hits = search(store, mirror, query / np.linalg.norm(query))
            with book:
                for h in hits:
                    if h.region_id not in owner:
                        problems.append(f"region {h.region_id} was never committed")
                    elif owner[h.region_id] != (h.image_path, int(h.label[1:])):
                        problems.append(f"region {h.region_id} shows another image's row")
                for path, ids in by_image(hits).items():
                    versions = {owner[i][1] for i in ids if i in owner}
                    if len(versions) != 1:
                        problems.append(f"{path}: regions of versions {sorted(versions)} at once")
                        continue
                    version = versions.pop()
                    if ids != regions_of[(path, version)]:
                        problems.append(
                            f"{path} v{version}: {len(ids)} of its "
                            f"{len(regions_of[(path, version)])} regions visible"
                        )
                    seen_versions.add((path, version))
                searches[0] += 1

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    try:
        rng = random.Random(3)
        version = len(paths)
        for _ in range(60):
            path = rng.choice(paths)
            version += 1
            if rng.random() < 0.25:  # delete: rows first, then their vectors
                with mirror.writing():
                    image_id = store.image_id_for_path(path)
                    if image_id is not None:
                        removed = store.delete_images([image_id])
                        mirror.apply(WriteResult.of([], [], removed.tolist()))
            else:  # add or replace, with another number of regions
                write(path, version, rng.randint(1, 6))
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not problems, problems[:5]
    assert searches[0] >= 10  # the searches did run alongside the writes
    assert len(seen_versions) > len(paths)  # ... and saw images replaced meanwhile
    mirror.flush()
    assert np.array_equal(mirror.vectors.ids(), store.region_ids())


def test_rows_deleted_before_vectors_leave_no_part_of_the_image_visible(root: Path) -> None:
    store = make_store(root)
    mirror = VectorMirror(root, store)
    with mirror.writing():  # the first batch loads the vectors from SQL (never adds twice)
        mirror.apply(store.write([image_write("a.png", 1, 3), image_write("b.png", 1, 4)]))
    assert mirror.vectors.ntotal == 7
    query = vectors("b.png", 1, 1)[0]
    assert {len(ids) for ids in by_image(search(store, mirror, query)).values()} == {3, 4}
    with mirror.writing():
        image_id = store.image_id_for_path("b.png")
        assert image_id is not None
        removed = store.delete_images([image_id])  # rows go first ...
        assert len(removed) == 4 and mirror.vectors.ntotal == 7  # ... FAISS still holds them
        hits = search(store, mirror, query)  # a search in between
        assert set(by_image(hits)) == {"a.png"} and len(hits) == 3
        mirror.apply(WriteResult.of([], [], removed.tolist()))  # then the vectors
    assert mirror.vectors.ntotal == 3
    assert set(by_image(search(store, mirror, query))) == {"a.png"}


def test_another_mirror_follows_committed_writes_through_the_generation(root: Path) -> None:
    store = make_store(root)
    writer = VectorMirror(root, store)
    with writer.writing():
        writer.apply(store.write([image_write("a.png", 1, 2)]))
    writer.flush()
    other_store = make_store(root)  # another process: its own store and mirror, same files
    reader = VectorMirror(root, other_store)
    assert reader.vectors.ntotal == 2
    generation = other_store.generation()
    with writer.writing():
        writer.apply(store.write([image_write("b.png", 1, 3)]))
    assert other_store.generation() > generation  # the commit moved the generation ...
    query = vectors("b.png", 1, 1)[0]
    seen = by_image(search(other_store, reader, query))  # ... so the reader catches up
    assert {p: len(ids) for p, ids in seen.items()} == {"a.png": 2, "b.png": 3}
    with writer.writing():
        image_id = store.image_id_for_path("a.png")
        assert image_id is not None
        writer.apply(WriteResult.of([], [], store.delete_images([image_id]).tolist()))
    assert set(by_image(search(other_store, reader, query))) == {"b.png"}
    assert np.array_equal(reader.vectors.ids(), other_store.region_ids())
    assert not reader.dirty  # a reader never writes the file
    other_store.close()


def test_a_writer_catches_up_only_with_what_it_did_not_apply(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(root)
    mirror = VectorMirror(root, store)
    assert mirror.vectors.ntotal == 0
    with mirror.writing():
        mirror.apply(store.write([image_write("a.png", 1, 2)]))
    query = vectors("a.png", 1, 1)[0]
    with monkeypatch.context() as m:  # its own applied batches: nothing to read back from SQL
        m.setattr(store, "region_ids", lambda *a: pytest.fail("caught up with its own write"))
        assert len(search(store, mirror, query)) == 2
        with mirror.writing():
            mirror.apply(store.write([image_write("b.png", 1, 3)]))
        assert len(search(store, mirror, query)) == 5
    with pytest.raises(RuntimeError), mirror.writing():
        store.write([image_write("c.png", 1, 4)])
        raise RuntimeError("died between the commit and its FAISS step")
    seen = by_image(search(store, mirror, query))  # the next use catches up: c.png whole
    assert {p: len(ids) for p, ids in seen.items()} == {"a.png": 2, "b.png": 3, "c.png": 4}


def test_checkpoints_write_the_file_and_a_stale_or_damaged_file_is_rebuilt(root: Path) -> None:
    store = make_store(root)
    mirror = VectorMirror(root, store, checkpoint_seconds=3600)
    assert mirror.vectors.ntotal == 0 and mirror.file.exists()  # missing: built and written
    with mirror.writing():
        mirror.apply(store.write([image_write("a.png", 1, 2)]))
    assert mirror.dirty  # no checkpoint due yet: the file holds none of them
    assert len(VectorIndex.load(mirror.file, DIM).ids()) == 0
    mirror.flush()
    assert not mirror.dirty
    assert np.array_equal(VectorIndex.load(mirror.file, DIM).ids(), store.region_ids())
    # a checkpoint due: the file follows each batch
    mirror.checkpoint_seconds = 0.0
    with mirror.writing():
        mirror.apply(store.write([image_write("b.png", 1, 3)]))
    assert not mirror.dirty
    assert np.array_equal(VectorIndex.load(mirror.file, DIM).ids(), store.region_ids())

    # stale: rows committed, then the writer died before its FAISS step
    store.write([image_write("c.png", 1, 2)])
    sql_ids = store.region_ids()
    assert len(VectorIndex.load(mirror.file, DIM).ids()) == len(sql_ids) - 2
    with mirror.writing():  # another writer holds the lock: a reader rebuilds in memory only
        reader = VectorMirror(root, make_store(root))
        assert np.array_equal(reader.vectors.ids(), sql_ids)
        assert len(VectorIndex.load(mirror.file, DIM).ids()) == len(sql_ids) - 2
    fresh = VectorMirror(root, make_store(root))  # no writer now: rebuilt and written
    assert np.array_equal(fresh.vectors.ids(), sql_ids)
    assert np.array_equal(VectorIndex.load(mirror.file, DIM).ids(), sql_ids)
    query = vectors("c.png", 1, 1)[0]
    assert len(by_image(search(fresh.store, fresh, query))["c.png"]) == 2

    # damaged: a truncated file is rebuilt from SQL
    mirror.file.write_bytes(mirror.file.read_bytes()[:100])
    with pytest.raises(RuntimeError):
        VectorIndex.load(mirror.file, DIM)
    again = VectorMirror(root, make_store(root))
    assert np.array_equal(again.vectors.ids(), sql_ids)
    assert np.array_equal(VectorIndex.load(mirror.file, DIM).ids(), sql_ids)


def test_an_up_to_date_file_opens_without_reading_every_id(
    make_index,  # type: ignore[no-untyped-def]
    photos: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The state file beside vectors.faiss records the store generation it reflects: a later
    open trusts the file without listing SQL's ids; after a commit the file missed (a crash
    before its rewrite) the open compares the ids and catches up."""
    from segindex import Index

    idx = make_index()
    idx.ingest(photos)
    path = idx.path
    want = [h.region_id for h in idx.search("red", k=5)]
    idx.close()
    calls = {"n": 0}
    real = Store.region_ids

    def counted(self: Store, kind: str | None = None) -> np.ndarray:
        calls["n"] += kind is None
        return real(self, kind)

    monkeypatch.setattr(Store, "region_ids", counted)
    with Index.open(path) as again:
        assert [h.region_id for h in again.search("red", k=5)] == want
        assert calls["n"] == 0
        # a commit the FAISS file does not hold, as a crash before its rewrite leaves it
        image_id = again.store.image_states()[str((photos / "a.png").resolve())].id
        again.store.delete_images([image_id])
    with Index.open(path) as third:
        got = [h.region_id for h in third.search("red", k=5)]
        assert calls["n"] >= 1  # the generation moved: the ids were compared
        assert set(got) <= set(third.store.region_ids().tolist())
        assert got != want
