"""Crash safety: SIGKILL a real ingest process at random moments, right after a batch's SQL
commit, and between a batch's vector flush and its SQL commit (the failpoint
``vectors-flushed``); `check` must then pass (a vector file left behind, or vectors past the last
commit, are notes, not damage), the index must open cleanly with every region row
matched by its vector (and vice versa), and re-running the ingest must finish the job with no
duplicates and no lost images. Also: one writer at a time."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from segindex import Index
from segindex.cli import main
from segindex.errors import IndexLockedError
from segindex.store.check import check, repair
from segindex.testing.fakes import PALETTE, draw_scene

COLOURS = [c for c in PALETTE if c not in ("gray",)]

DRIVER = textwrap.dedent(
    """
    import sys, time
    from segindex.testing.fakes import register_fakes
    register_fakes()
    from segindex import Index, RuntimeOptions
    from pathlib import Path
    index, photos = Path(sys.argv[1]), sys.argv[2]
    from segindex.store.mirror import VectorMirror
    if sys.argv[3:] == ["pause"]:  # wait to be killed after a batch's SQL commit, before the
        mirror = VectorMirror.apply  # vector file is rewritten: the state a crash leaves there
        def paused(self, result):
            print("COMMITTED", flush=True)
            time.sleep(60)
            mirror(self, result)
        VectorMirror.apply = paused
    runtime = RuntimeOptions(commit_every=2, checkpoint_seconds=0.0)
    if (index / "segindex.json").exists():
        idx = Index.open(index, runtime=runtime)
    else:
        idx = Index.create(index, segmenter="fake", embedder="fake", runtime=runtime)
    print("START", flush=True)
    idx.ingest(photos)
    idx.close()
    print("DONE", flush=True)
    """
)


def make_photos(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """``n`` scenes; returns file name -> expected number of region rows (segments + whole)."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    expected = {}
    for i in range(n):
        k = rng.randint(1, 4)
        colours = rng.sample(COLOURS, k)
        shapes = [
            (c, (10 + 40 * j, 10 + 8 * j, 45 + 40 * j, 80 + 8 * j)) for j, c in enumerate(colours)
        ]
        Image.fromarray(draw_scene(shapes, size=(240, 320))).save(root / f"img{i:03d}.png")
        expected[f"img{i:03d}.png"] = k + 1 + 1  # colours + gray background + whole image
    return expected


def assert_invariants(index: Path, expected: dict[str, int]) -> int:
    """The index opens, rows and vectors match one to one, no image is half written."""
    with Index.open(index) as idx:
        assert np.array_equal(idx.vectors.ids(), idx.store.region_ids())
        per_image: dict[str, int] = {}
        for r in idx.store.iter_regions():
            per_image[Path(r.path).name] = per_image.get(Path(r.path).name, 0) + 1
        done = {Path(r.path).name for r in idx.store.indexed_images()}
        assert set(per_image) == done
        for name in done:
            assert per_image[name] == expected[name], name
        assert check(idx.store, index / "vectors.faiss", idx.dim).ok
        return len(done)


def run_driver(
    index: Path, photos: Path, *flags: str, kill_at: str | None = None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SEGINDEX_KILL_AT"}
    if kill_at is not None:
        env["SEGINDEX_KILL_AT"] = kill_at
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(index), str(photos), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def contents(index: Path) -> list[tuple[str, str, str, int, str, bytes]]:
    """Everything an ingest stored, independent of ids: per region its image's file name, kind,
    label, area, mask and stored vector (as bytes)."""
    with Index.open(index) as idx:
        rows = list(idx.store.iter_regions())
        vecs = idx.store.region_vectors([r.id for r in rows])
        return sorted(
            (Path(r.path).name, r.kind, r.label, r.area, r.rle, vecs[r.id].tobytes()) for r in rows
        )


def test_sigkill_at_random_moments_never_corrupts(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    expected = make_photos(photos, 100)
    index = tmp_path / "crash.segindex"
    rng = random.Random(1234)
    kills, progress, completed, stale = 0, [], 0, 0
    flushed_kills = 0
    while kills < 20:
        # a third of the kills land between a batch's SQL commit and the FAISS file write, a
        # third between its vector flush and its SQL commit, a third at random
        at_commit, at_flush = kills % 3 == 1, kills % 3 == 2
        kill_at = f"vectors-flushed:{rng.randint(1, 8)}" if at_flush else None
        proc = run_driver(index, photos, *(["pause"] if at_commit else []), kill_at=kill_at)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "START", proc.stderr.read()
        line = ""
        if at_flush:  # the process kills itself at the failpoint (or finishes first)
            proc.wait()
            if proc.returncode == -signal.SIGKILL:
                kills += 1
                flushed_kills += 1
                r = CliRunner().invoke(main, ["check", "--index", str(index), "--json"])
                assert r.exit_code == 0, r.output
                raw = json.loads(r.output)
                assert raw["ok"] and raw["problems"] == [], raw
                # the flushed batch is stale (past the commit), reported as a note, not damage
                assert raw["stale_vectors"]["tail_rows"] > 0, raw
                assert any("past the last commit" in n for n in raw["notes"]), raw
                progress.append(assert_invariants(index, expected))
                continue
        elif at_commit:
            # "DONE" instead: the previous kill came after the last commit, nothing was left
            line = proc.stdout.readline().strip()
            assert line in ("COMMITTED", "DONE"), proc.stderr.read()
            if line == "DONE":
                proc.wait()
        else:
            time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is not None:  # it finished first: check it is complete, start afresh
            out, err = proc.communicate()
            assert "DONE" in out or line == "DONE", err
            assert assert_invariants(index, expected) == len(expected)
            shutil.rmtree(index)
            completed += 1
            progress = []
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        # the raw state on disk, before anything loads the vectors: SQL is always consistent;
        # the FAISS file may lag behind or hold rolled-back ids (it is a cache), which `check`
        # reports as a note and exits 0; the next open rebuilds it (assert_invariants)
        r = CliRunner().invoke(main, ["check", "--index", str(index), "--json"])
        assert r.exit_code == 0, r.output
        raw = json.loads(r.output)
        assert raw["ok"] and raw["problems"] == [], raw
        cache_notes = [n for n in raw["notes"] if "past the last commit" not in n]
        assert bool(cache_notes) == raw["stale_cache"]["stale"], raw
        if at_commit:  # the file lacks the committed batch: exactly what the note says
            behind = raw["stale_cache"]["behind"]
            assert behind > 0 and raw["stale_cache"]["extra"] == 0, raw
            assert cache_notes == [
                f"vector file is {behind} vectors behind the database; it is rebuilt from the "
                "database on the next open, or now with `segindex repair`"
            ]
        stale += raw["stale_cache"]["stale"]
        progress.append(assert_invariants(index, expected))
    assert progress == sorted(progress)  # committed work is never lost between kills
    assert stale >= kills // 3, (stale, kills)
    assert flushed_kills >= 5, flushed_kills
    # resume: the same ingest finishes with no duplicates and no lost images
    proc = run_driver(index, photos)
    out, err = proc.communicate(timeout=300)
    assert "DONE" in out, err
    assert assert_invariants(index, expected) == len(expected)
    with Index.open(index) as idx:
        assert idx.store.counts()["images_indexed"] == len(expected)
        assert len(list(idx.store.iter_regions())) == sum(expected.values())
    # ... and equal to an uninterrupted run: same regions, masks and stored vectors
    clean = tmp_path / "clean.segindex"
    out, err = run_driver(clean, photos).communicate(timeout=300)
    assert "DONE" in out, err
    assert contents(index) == contents(clean)
    # repair drops what the kills left behind (stale tails; the tombstones of replaced rows)
    r = CliRunner().invoke(main, ["repair", "--index", str(index), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["check", "--index", str(index), "--json"])
    after = json.loads(r.output)["stale_vectors"]
    assert after == {"tail_rows": 0, "orphan_files": [], "dead_rows": 0}, after
    assert contents(index) == contents(clean)


def test_second_writer_is_refused_and_stale_lock_taken_over(tmp_path: Path, photos: Path) -> None:
    index = tmp_path / "lock.segindex"
    Index.create(index, segmenter="fake", embedder="fake").close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            from segindex.store.lock import WriterLock
            import time, sys
            lock = WriterLock({str(index)!r}); lock.acquire()
            print("HELD", flush=True); time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
    with Index.open(index) as idx:
        with pytest.raises(IndexLockedError, match=f"locked by PID {holder.pid}"):
            idx.ingest(photos)
        assert idx.search("red", k=1) == []  # reads still work while locked
        holder.kill()
        holder.wait()
        report = idx.ingest(photos)  # the dead holder's lock is taken over
        assert report.indexed == 4


def test_repair_rebuilds_a_damaged_vector_file(tmp_path: Path, photos: Path) -> None:
    index = tmp_path / "rep.segindex"
    with Index.create(index, segmenter="fake", embedder="fake") as idx:
        idx.ingest(photos)
        dim = idx.dim
        store = idx.store
        (index / "vectors.faiss").write_bytes(b"garbage")
        report = check(store, index / "vectors.faiss", dim)
        assert report.ok and report.stale and "unreadable" in report.notes[0]
        fixed = repair(store, index / "vectors.faiss", dim)
        assert fixed.clean and fixed.vectors_in_file == fixed.region_rows > 0


def test_cli_check_and_repair(tmp_path: Path, photos: Path) -> None:
    index = tmp_path / "cli.segindex"
    with Index.create(index, segmenter="fake", embedder="fake") as idx:
        idx.ingest(photos)
    r = CliRunner().invoke(main, ["check", "--index", str(index)])
    assert r.exit_code == 0 and "ok: every region row has its vector" in r.stdout
    (index / "vectors.faiss").unlink()  # a missing cache is stale, not damage: a note, exit 0
    r = CliRunner().invoke(main, ["check", "--index", str(index)])
    assert r.exit_code == 0 and "note: vector file is missing while the database" in r.stdout
    r = CliRunner().invoke(main, ["repair", "--index", str(index), "--json"])
    assert r.exit_code == 0 and '"ok": true' in r.stdout and '"notes": []' in r.stdout
    assert (index / "vectors.faiss").exists()
    (index / "vectors.faiss").write_bytes(b"garbage")  # unreadable: the next open rebuilds it
    r = CliRunner().invoke(main, ["check", "--index", str(index)])
    assert r.exit_code == 0 and "note: vector file unreadable" in r.stdout
    r = CliRunner().invoke(main, ["info", "--index", str(index)])
    assert "note: vector file unreadable" in r.stdout
    r = CliRunner().invoke(main, ["check", "--index", str(index)])
    assert r.exit_code == 0 and "ok: every region row has its vector" in r.stdout
