"""The ingest engine seam, idempotent writes and the database writer lock (no Ray needed).

Engines are chosen by name from the ``segindex.engines`` registry; a third party's engine (here
registered at run time, and in a subprocess through a real entry point) is chosen exactly like
the built-ins, and the index reads what it declares (``models_here``, ``rows_elsewhere``).
The Ray engine itself, on a multi-node local cluster, is tested in test_ray.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from segindex.errors import ConfigError, IndexLockedError
from segindex.ingest.engine import ENGINES, Deferred, IngestEngine, resolve_engine
from segindex.ingest.job import ImageJob
from segindex.ingest.local_engine import LocalEngine
from segindex.ingest.ray_engine import INSTALL_HINT, RayEngine, refuse_shared_sqlite
from segindex.regions import Regions
from segindex.store.sql import ImageWrite, Store
from segindex.store.vector_files import as_stored
from tests.pg import fresh_schema


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def test_resolve_engine_by_name_and_object() -> None:
    assert isinstance(resolve_engine(None), LocalEngine)
    assert isinstance(resolve_engine("local"), LocalEngine)
    ray = RayEngine(workers=2)
    assert resolve_engine(ray) is ray
    assert resolve_engine("ray", workers=3).workers == 3  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="local, ray"):
        resolve_engine("spark")
    with pytest.raises(ConfigError, match="no options"):
        resolve_engine("local", workers=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"workers": 1.5}, "workers must be an integer >= 1"),
        ({"gpus_per_worker": -1}, "gpus_per_worker must be a number >= 0"),
        ({"cpus_per_worker": float("nan")}, "cpus_per_worker must be a number >= 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"retries": -1}, "retries must be an integer >= 0"),
    ],
)
def test_ray_engine_options_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RayEngine(**kwargs)  # type: ignore[arg-type]


def test_missing_ray_is_one_clear_error_before_models_load(
    make_index, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    idx = make_index()
    idx.models.loaded_segmenter = None
    with pytest.raises(ConfigError) as info:
        idx.ingest(photos, engine="ray")
    assert INSTALL_HINT in str(info.value)
    assert idx.models.loaded_segmenter is None  # refused before the segmenter loaded
    assert idx.store.counts()["images_indexed"] == 0


def test_import_and_help_never_import_ray() -> None:
    code = (
        "import sys\n"
        "import segindex, segindex.ingest.ray_engine, segindex.ingest.ray_worker\n"
        "from segindex import RayEngine\n"
        "RayEngine(workers=2)\n"
        "from click.testing import CliRunner\n"
        "from segindex.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "assert CliRunner().invoke(main, ['ingest', '--help']).exit_code == 0\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_sqlite_refused_on_more_than_one_node() -> None:
    refuse_shared_sqlite("sqlite", 1)
    refuse_shared_sqlite("postgresql", 3)
    with pytest.raises(ConfigError, match="SQLite must not be shared over a network file system"):
        refuse_shared_sqlite("sqlite", 2)


def _write(path: str, sha: str, colours: int = 2) -> ImageWrite:
    masks = np.zeros((colours, 8, 10), dtype=bool)
    for i in range(colours):
        masks[i, i : i + 3, 2 * i : 2 * i + 4] = True
    regions = Regions.from_masks(
        masks,
        label_ids=list(range(colours)),
        labels=[f"c{i}" for i in range(colours)],
        scores=[0.5 + i / 10 for i in range(colours)],
        is_thing=[True] * colours,
    )
    vectors = np.random.default_rng(len(path)).normal(size=(colours, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ImageWrite(
        path=path,
        sha256=sha,
        width=10,
        height=8,
        regions=regions,
        kinds=["segment"] * colours,
        vectors=vectors,
        crop={"pad": 0},
    )


def _rows(store: Store) -> list[tuple[object, ...]]:
    return [(r.id, r.path, r.label, r.rle, r.x0, r.y1, r.area) for r in store.iter_regions()]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_repeated_write_changes_nothing(backend: str, tmp_path: Path, request) -> None:
    url = (
        f"sqlite:///{tmp_path / 'm.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = Store(url, vectors_dir=tmp_path / "vectors")
    try:
        first = store.write([_write("a.png", "sha-a"), _write("b.png", "sha-b", 3)], skip_done=True)
        assert len(first.added_ids) == 5
        before = _rows(store)
        # a retried task delivers a.png again (and now a new image c.png); even as a failure
        again = store.write(
            [
                _write("a.png", "sha-a"),
                ImageWrite("b.png", "sha-b", error="boom"),
                _write("c", "c"),
            ],
            skip_done=True,
        )
        assert len(again.removed_ids) == 0 and len(again.added_ids) == 2  # only c's regions
        assert _rows(store)[: len(before)] == before
        assert store.counts() == {
            "images_indexed": 3,
            "images_failed": 0,
            "regions": 7,
            "whole_image_regions": 0,
        }
        # changed bytes (another sha256) are a real replacement, and so is a plain write
        changed = store.write([_write("a.png", "sha-a2")], skip_done=True)
        assert sorted(changed.removed_ids.tolist()) == sorted(first.added_ids[:2].tolist())
        plain = store.write([_write("a.png", "sha-a2")])
        assert len(plain.removed_ids) == 2 and len(plain.added_ids) == 2
    finally:
        store.close()


def test_packed_write_stores_the_same_rows(tmp_path: Path) -> None:
    a, b = Store(f"sqlite:///{tmp_path / 'a.sqlite'}"), Store(f"sqlite:///{tmp_path / 'b.sqlite'}")
    try:
        item = _write("x.png", "sha-x", 3)
        packed = item.packed()
        assert packed.regions is None and packed.count == 3 and item.count == 3
        a.write([item])
        b.write([packed], skip_done=True)
        assert _rows(a) == _rows(b)
        ids, vecs = b.vectors_by_id(b.region_ids())
        np.testing.assert_array_equal(vecs, as_stored(item.vectors, "float16"))
    finally:
        a.close()
        b.close()


def test_database_lock_keeps_two_directories_apart(make_index, pg_url: str, tmp_path: Path) -> None:
    from segindex import Index

    first = make_index("one.segindex", db_url=pg_url)
    second = Index.open(tmp_path / "one.segindex")
    # a second directory pointing at the same database: the file lock alone would not see it
    (tmp_path / "two.segindex").mkdir()
    (tmp_path / "two.segindex" / "segindex.json").write_text(
        (tmp_path / "one.segindex" / "segindex.json").read_text()
    )
    other = Index.open(tmp_path / "two.segindex")
    try:
        with first.mirror.writer:
            with pytest.raises(IndexLockedError) as info:
                other.mirror.writer.acquire()
            message = str(info.value)
            assert "being written by another segindex writer" in message
            assert "one.segindex" in message and "PostgreSQL backend PID" in message
            assert not other.mirror.writer.held
        with other.mirror.writer:  # released: the other directory may write now
            assert other.mirror.writer.held
        with second.mirror.writer:
            pass
    finally:
        second.close()
        other.close()


def test_cli_ray_options_need_the_ray_engine(photos: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from segindex.cli import main

    index = tmp_path / "cli.segindex"
    args = ["ingest", str(photos), "--index", str(index), "--segmenter", "fake"]
    out = CliRunner().invoke(main, [*args, "--embedder", "fake", "--workers", "2"])
    assert out.exit_code == 2 and "--workers only apply with --engine ray" in out.output
    assert not index.exists()  # refused before an index is made


def test_ray_rounds_replan_only_what_is_not_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a cluster failure the next round gets only the images not committed yet; a
    segindex error raised in a worker is raised as is; retries are bounded."""
    ray = pytest.importorskip("ray")
    from segindex.errors import ModelLoadError

    calls: list[list[str]] = []
    failures: list[BaseException] = [ray.exceptions.RaySystemError("node lost")]

    def fake_round(self: RayEngine, todo: list[tuple[str, str]], job: object, written: set[str]):
        calls.append([p for p, _ in todo])
        written.update(p for p, _ in todo[:2])
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr(RayEngine, "_round", fake_round)
    todo = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]
    RayEngine(retries=1)._rounds(todo, job=None)  # type: ignore[arg-type]
    assert calls == [["a", "b", "c", "d"], ["c", "d"]]

    calls.clear()
    failures[:] = [ray.exceptions.RaySystemError("lost"), ray.exceptions.RaySystemError("again")]
    with pytest.raises(ray.exceptions.RaySystemError, match="again"):
        RayEngine(retries=1)._rounds(todo, job=None)  # type: ignore[arg-type]
    assert len(calls) == 2

    calls.clear()
    wrapped = ray.exceptions.RayTaskError("__call__", "tb", ModelLoadError("no weights"))
    failures[:] = [wrapped]
    with pytest.raises(ModelLoadError, match="no weights"):
        RayEngine(retries=3)._rounds(todo, job=None)  # type: ignore[arg-type]
    assert len(calls) == 1


# -- engines by name: a third party's engine ---------------------------------------------------


class RecordingEngine(IngestEngine):
    """A third party's engine: the local engine's work, remembering how it was built and what
    it was handed."""

    name = "recording"
    built: ClassVar[list[dict[str, Any]]] = []
    handed: ClassVar[list[tuple[int, bool]]] = []  # (images, segmenter deferred)

    def __init__(self, tag: str = "none", rounds: int = 1) -> None:
        self.tag, self.rounds = tag, rounds
        RecordingEngine.built.append({"tag": tag, "rounds": rounds})

    def run_images(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        RecordingEngine.handed.append((len(todo), isinstance(job.segmenter, Deferred)))
        LocalEngine().run_images(todo, job)


class ElsewhereEngine(RecordingEngine):
    """Declares that its models run elsewhere and its rows are committed by other processes
    (it commits without telling the index's mirror); its ``name`` says "local" to show that the
    index goes by the declarations, never by the name."""

    name = "local"
    models_here = False
    asked: ClassVar[list[str]] = []

    @property
    def rows_elsewhere(self) -> bool:  # type: ignore[override]  # a property: to see it read
        ElsewhereEngine.asked.append("rows_elsewhere")
        return True

    def run_images(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        RecordingEngine.handed.append((len(todo), isinstance(job.segmenter, Deferred)))
        LocalEngine().run_images(todo, replace(job, on_commit=lambda _result: None))


@pytest.fixture
def plugin_engines() -> Iterator[None]:
    """The test engines in the real registry, as a plugin's entry points would put them."""
    ENGINES.register("recording", RecordingEngine)
    ENGINES.register("elsewhere", ElsewhereEngine)
    RecordingEngine.built.clear()
    RecordingEngine.handed.clear()
    ElsewhereEngine.asked.clear()
    yield
    ENGINES.unregister("recording")
    ENGINES.unregister("elsewhere")


def test_builtin_engines_are_registered_like_a_plugin() -> None:
    from importlib.metadata import entry_points

    declared = {ep.name: ep.value for ep in entry_points(group="segindex.engines")}
    assert declared["local"] == "segindex.ingest.local_engine:LocalEngine"
    assert declared["ray"] == "segindex.ingest.ray_engine:RayEngine"
    assert {"local", "ray"} <= set(ENGINES.names())
    assert LocalEngine.models_here and not LocalEngine.rows_elsewhere
    assert not RayEngine.models_here and RayEngine.rows_elsewhere


def test_a_plugin_engine_is_chosen_by_name_from_python(
    make_index, photos: Path, plugin_engines: None
) -> None:
    idx = make_index()
    report = idx.ingest(photos, engine="recording")
    assert report.indexed == 4 and report.failed == 0
    assert RecordingEngine.built == [{"tag": "none", "rounds": 1}]
    assert RecordingEngine.handed == [(4, False)]  # models_here: the index's own segmenter
    assert len(idx.search("red", k=3)) == 3
    engine = resolve_engine("recording", tag="py", rounds=2)
    assert isinstance(engine, RecordingEngine) and (engine.tag, engine.rounds) == ("py", 2)
    with pytest.raises(
        ConfigError, match=r"takes the options tag, rounds; got unknown \['speed'\]"
    ):
        resolve_engine("recording", speed=3)
    with pytest.raises(ConfigError, match="options go with an engine name"):
        resolve_engine(engine, tag="again")


def test_a_plugin_engine_is_chosen_by_name_from_the_cli(
    photos: Path, tmp_path: Path, plugin_engines: None
) -> None:
    from click.testing import CliRunner

    from segindex.cli import main

    index = tmp_path / "cli.segindex"
    args = ["ingest", str(photos), "--index", str(index), "--segmenter", "fake"]
    args += ["--embedder", "fake", "--engine", "recording", "--json"]
    out = CliRunner().invoke(
        main, [*args, "--engine-option", "tag=cli", "--engine-option", "rounds=2"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["indexed"] == 4
    assert RecordingEngine.built == [{"tag": "cli", "rounds": 2}]  # JSON values: 2 is an int
    assert RecordingEngine.handed == [(4, False)]

    listed = CliRunner().invoke(main, ["backends"])
    line = next(x for x in listed.output.splitlines() if x.startswith("engines:"))
    assert {"local", "ray", "recording"} <= {n.strip() for n in line.split(":", 1)[1].split(",")}


def test_unknown_engine_or_option_is_a_clear_error(
    make_index, photos: Path, tmp_path: Path, plugin_engines: None
) -> None:
    from click.testing import CliRunner

    from segindex.cli import main

    idx = make_index()
    with pytest.raises(
        ConfigError, match="unknown engine 'spark'; registered engines: .*local, ray"
    ):
        idx.ingest(photos, engine="spark")
    assert idx.store.counts()["images_indexed"] == 0

    index = tmp_path / "cli.segindex"
    args = ["ingest", str(photos), "--index", str(index), "--segmenter", "fake"]
    args += ["--embedder", "fake"]
    cases = [
        (["--engine", "spark"], "unknown engine 'spark'; registered engines: elsewhere, local"),
        (["--engine", "local", "--engine-option", "tag=x"], "the local engine takes no options"),
        (["--engine", "recording", "--engine-option", "speed=3"], "got unknown ['speed']"),
        (["--engine", "recording", "--engine-option", "speed"], "expected KEY=VALUE"),
        (["--engine", "recording", "--workers", "2"], "--workers only apply with --engine ray"),
        (["--engine", "ray", "--workers", "2", "--engine-option", "workers=3"], "both given"),
    ]
    for extra, message in cases:
        out = CliRunner().invoke(main, [*args, *extra])
        assert out.exit_code == 2 and message in out.output, (extra, out.output)
        assert not index.exists()  # refused before an index is made


def test_the_index_goes_by_the_engine_declarations(
    make_index, photos: Path, plugin_engines: None
) -> None:
    """``models_here = False``: the engine gets a segmenter built only if used (the index
    loads none for it); ``rows_elsewhere``: the index brings its vector mirror up to date from
    SQL after the run, whatever the engine is called."""
    idx = make_index()
    report = idx.ingest(photos, engine="elsewhere")
    assert report.indexed == 4
    assert RecordingEngine.handed == [(4, True)]
    assert "rows_elsewhere" in ElsewhereEngine.asked
    regions = idx.store.region_ids()
    assert len(regions) > 0 and idx.vectors.ntotal == len(regions)
    assert len(idx.search("red", k=3)) == 3


PLUGIN = textwrap.dedent(
    """
    from segindex.ingest.engine import IngestEngine
    from segindex.ingest.local_engine import LocalEngine


    class EchoEngine(IngestEngine):
        name = "echo"

        def __init__(self, tag: str = "none") -> None:
            self.tag = tag

        def run_images(self, todo, job):
            print(f"ECHO {self.tag} {len(todo)}", flush=True)
            LocalEngine().run_images(todo, job)
    """
)


def test_an_engine_declared_by_an_installed_plugin_is_chosen_by_name(
    photos: Path, tmp_path: Path
) -> None:
    """A distribution on the path that declares a ``segindex.engines`` entry point (no
    registration call, no edit of segindex) is listed and chosen from the CLI with its options."""
    site = tmp_path / "site"
    info = site / "segindex_echo-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "segindex_echo.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: segindex-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[segindex.engines]\necho = segindex_echo:EchoEngine\n")
    code = textwrap.dedent(
        f"""
        import sys
        from segindex.testing.fakes import register_fakes
        register_fakes()
        from segindex.cli import main
        main(["backends"], standalone_mode=False)
        main(["ingest", {str(photos)!r}, "--index", {str(tmp_path / "ep.segindex")!r},
              "--segmenter", "fake", "--embedder", "fake",
              "--engine", "echo", "--engine-option", "tag=ep"], standalone_mode=False)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "engines:    echo, local, ray" in out.stdout
    assert "ECHO ep 4" in out.stdout and "indexed 4 images" in out.stdout
