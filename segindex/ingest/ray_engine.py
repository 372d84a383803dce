"""The Ray engine: the same ingest on a Ray cluster (Ray Data), one driver writing to SQL.

Registered as the ``ray`` engine in the ``segindex.engines`` entry points.

Plan (the driver, :func:`segindex.ingest.runner.run_ingest`): skip what SQL already holds by
sha256, exactly like local ingest; this engine gets the remaining ``(path, sha256)`` pairs.

Dataset: ``ray.data.from_items`` of the paths (plus the absolute file name and planned sha256),
one block per worker call. Paths rather than ``read_binary_files``: the bytes are read by the
actor that decodes them, so they never travel through the object store (every node sees the
files, as it must see the index directory), and the plan already hashed every file once.

Workers: ``map_batches(IngestWorker, compute=ActorPoolStrategy(size=workers), num_gpus=...,
batch_size=...)``: each actor loads its segmenter and embedder once and runs the local engine's
model stages (:mod:`segindex.ingest.ray_worker`), returning per image its regions as RLE rows
and vectors, or the reason it failed.

Writes: the driver consumes the results (``iter_batches``, ``commit_every`` images per SQL
transaction) and writes them with ``Store.write(..., skip_done=True)``: a result delivered twice
(a retried task, a restarted actor) changes nothing (:mod:`segindex.store.claim`). Each commit
goes to the FAISS mirror as in local ingest; at the end the index brings its FAISS file up to
date from SQL. If the cluster fails under a round (a node lost with results not yet read), the
driver re-plans what is not written yet and runs another round, ``retries`` times.

Videos: each video is one task of a second actor pool (:class:`~segindex.ingest.ray_worker.
VideoWorker`) that runs the local engine's video ingest and commits the video's chunks itself
(its resume state with them), so a retried task resumes a partial video and keeps its tracks,
and skips one already indexed; the driver adds the counts to the report.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from segindex.config import VideoOptions
from segindex.errors import ConfigError, SegindexError
from segindex.ingest.engine import BackendRecipe, IngestEngine
from segindex.ingest.job import ImageJob
from segindex.store.sql import ImageState, db_path
from segindex.validate import integer, number, optional_integer, positive_int

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'segindex[ray]'"


@dataclass(frozen=True)
class RayEngine(IngestEngine):
    """Ingest on Ray.

    ``address``: ``None`` starts a local Ray instance for the run and stops it after (unless
    this process is already connected to one, which is then used); ``"auto"`` joins the
    cluster started with ``ray start`` on this machine; ``"ray://host:10001"`` or
    ``"host:6379"`` joins that cluster. ``workers``: actors, each holding one segmenter and one
    embedder; ``gpus_per_worker`` / ``cpus_per_worker``: what each actor reserves;
    ``batch_size``: images per actor call (``None``: the segment batch for the device, see
    :meth:`~segindex.config.RuntimeOptions.batch_sizes`); ``retries``: rounds re-planned after
    a cluster failure; ``setup``: a picklable function run in each actor before its models load
    (e.g. to register a plugin backend)."""

    address: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int | None = None
    retries: int = 2
    setup: Callable[[], None] | None = field(default=None, repr=False)
    segmenter: BackendRecipe | None = field(default=None, repr=False, compare=False)
    embedder: BackendRecipe | None = field(default=None, repr=False, compare=False)
    _state: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    name: ClassVar[str] = "ray"
    models_here: ClassVar[bool] = False
    rows_elsewhere: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("workers", self.workers)
        number("gpus_per_worker", self.gpus_per_worker, lo=0)
        number("cpus_per_worker", self.cpus_per_worker, lo=0)
        optional_integer("batch_size", self.batch_size, lo=1)
        integer("retries", self.retries, lo=0)

    def check(self) -> None:
        """Ray Data must be installed (the ``ray`` extra)."""
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise ConfigError(
                f"the ray engine needs Ray Data, which is not installed: {INSTALL_HINT}"
            )
        try:
            import ray.data  # noqa: F401
        except ImportError as e:
            raise ConfigError(f"the ray engine needs Ray Data ({e}): {INSTALL_HINT}") from None

    def with_backends(self, segmenter: BackendRecipe, embedder: BackendRecipe) -> RayEngine:
        return replace(self, segmenter=segmenter, embedder=embedder, _state={})

    # -- the run ------------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[None]:
        """One ingest (images, then videos) on one Ray connection, made by the first pass that
        has work (a run with nothing to do starts nothing); a local instance started here is
        stopped at the end. Ray's own log lines are kept quiet meanwhile."""
        import ray

        with _quiet_ray():
            self._state["session"] = True
            try:
                yield
            finally:
                del self._state["session"]
                if self._state.pop("started", False):
                    ray.shutdown()

    @contextmanager
    def _ready(self, job: ImageJob) -> Iterator[None]:
        """Checks, and a connection, around one pass."""
        if self.segmenter is None or self.embedder is None:
            raise ConfigError(
                "RayEngine does not know how to build the index's backends; ingest through "
                "Index.ingest(..., engine=RayEngine(...)) (or call with_backends first)"
            )
        self.check()
        import ray

        started = False
        if not ray.is_initialized():
            started = connect(self.address)
            if "session" in self._state:  # kept for the videos; stopped by the session
                self._state["started"], started = started, False
        try:
            with _quiet_ray():
                refuse_shared_sqlite(job.store.engine.dialect.name, _alive_nodes())
                yield
        finally:
            if started:
                ray.shutdown()

    def run_images(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        if not todo:
            return
        with self._ready(job):
            self._rounds(todo, job)

    def run_videos(
        self,
        videos: list[tuple[str, str]],
        known: dict[str, ImageState],
        job: ImageJob,
        video: VideoOptions,
    ) -> None:
        """Each video is one Ray task (``batch_size=1``) of a :class:`VideoWorker` actor pool;
        a worker commits the video's chunks itself (and resumes a partial one), the driver adds
        its counts to the report. The FAISS file follows SQL at the end of the ingest."""
        if not videos:
            return
        with self._ready(job):
            self._videos(videos, job, video)

    def _rounds(self, todo: list[tuple[str, str]], job: ImageJob) -> None:
        """Rounds until every planned image is written: after a cluster failure the rest is
        run again (at most ``retries`` times); a segindex error raised in a worker is raised."""
        import ray

        written: set[str] = set()
        for attempt in range(self.retries + 1):
            remaining = [(p, s) for p, s in todo if db_path(p) not in written]
            if not remaining:
                return
            try:
                self._round(remaining, job, written)
                return
            except Exception as e:  # noqa: BLE001 - sorted out just below
                cause = _segindex_cause(e)
                if cause is not None:
                    raise cause from e  # our own error (e.g. a model that cannot load)
                if attempt == self.retries or not isinstance(e, ray.exceptions.RayError):
                    raise
                log.warning("Ray round %d failed (%s); re-planning the rest", attempt + 1, e)

    def _round(self, todo: list[tuple[str, str]], job: ImageJob, written: set[str]) -> None:
        """One Ray Data pass over ``todo``; adds each committed image's stored path to
        ``written``."""
        from segindex.ingest.ray_worker import WORKER_STAGES, IngestWorker, unpack

        ds = self.dataset(todo, job, IngestWorker)
        for out in ds.iter_batches(
            batch_size=job.runtime.commit_every, batch_format="numpy", prefetch_batches=1
        ):
            writes = [unpack(b) for b in out["write"]]
            fresh = [w for w in writes if db_path(w.path) not in written]
            job.commit(fresh, skip_done=True)
            written.update(db_path(w.path) for w in fresh)
            for stage in WORKER_STAGES:
                job.report.stage_seconds[stage] += float(out[f"{stage}_s"].sum())
            job.tick()

    def _videos(self, videos: list[tuple[str, str]], job: ImageJob, video: VideoOptions) -> None:
        import pickle

        import ray.data
        from ray.data import ActorPoolStrategy

        from segindex.ingest.ray_worker import VideoWorker

        items = [{"path": p, "sha256": s} for p, s in videos]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            VideoWorker,
            fn_constructor_kwargs={
                **self._worker_kwargs(job),
                "video": video,
                "url": job.store.url,
                "vectors_dir": str(job.store.vectors.path),
                "cwd": os.getcwd(),
            },
            compute=ActorPoolStrategy(size=min(self.workers, len(items))),
            batch_size=1,
            batch_format="numpy",
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
        )
        report = job.report
        for out in ds.iter_batches(batch_size=1, batch_format="numpy"):
            for name in ("indexed", "videos", "frames", "regions"):
                setattr(report, name, getattr(report, name) + int(out[name].sum()))
            for blob in out["failures"]:
                report.failures.extend(pickle.loads(blob))
            for stage in report.stage_seconds:
                report.stage_seconds[stage] += float(out[f"{stage}_s"].sum())
            job.tick(None)

    def _worker_kwargs(self, job: ImageJob) -> dict[str, Any]:
        return {
            "segmenter": self.segmenter,
            "embedder": self.embedder,
            "crop": job.crop,
            "runtime": job.runtime,
            "labels": job.labels,
            "setup": self.setup,
        }

    def dataset(self, todo: list[tuple[str, str]], job: ImageJob, worker: type) -> Any:
        """The Ray Data plan: ``from_items`` of the planned images, one block per worker call,
        mapped by ``worker`` actors (``ActorPoolStrategy(size=workers)``)."""
        import ray.data
        from ray.data import ActorPoolStrategy

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows segindex's own progress
        batch = (
            self.batch_size
            or job.runtime.batch_sizes("cuda" if self.gpus_per_worker > 0 else "cpu", "cpu")[0]
        )
        items = [{"path": p, "file": os.path.abspath(p), "sha256": s} for p, s in todo]
        blocks = max(1, math.ceil(len(items) / batch))
        ds = ray.data.from_items(items, override_num_blocks=blocks)
        return ds.map_batches(
            worker,
            fn_constructor_kwargs=self._worker_kwargs(job),
            compute=ActorPoolStrategy(size=self.workers),
            batch_size=batch,
            batch_format="numpy",
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
        )


@contextmanager
def _quiet_ray() -> Iterator[None]:
    """Ray's own INFO/WARNING lines (start-up, dataset plans) stay out of segindex's output
    unless logging is verbose (``-v``: the root logger at INFO or below)."""
    if logging.getLogger().getEffectiveLevel() <= logging.INFO:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("ray", "ray.data")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def connect(address: str | None) -> bool:
    """Connect this process to Ray; returns whether a local instance was started here (then
    the caller stops it). Already connected: that connection is used."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a library sends no telemetry
    quiet: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address is None:
        ray.init(**quiet)
        return True
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address!r} ({e}); start one with `ray start "
            "--head`, or leave the address out to run a local Ray for this ingest"
        ) from None
    return True


def refuse_shared_sqlite(dialect: str, nodes: int) -> None:
    """SQLite must not be shared over a network file system: with more than one Ray node the
    store has to be a server database."""
    if dialect == "sqlite" and nodes > 1:
        raise ConfigError(
            f"the ray engine on a {nodes}-node cluster needs a server database: SQLite must not "
            "be shared over a network file system. Create the index with "
            "--db-url postgresql+psycopg2://user@host/db (pip install 'segindex[postgres]'), or "
            "run Ray on one machine"
        )


def _alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def _segindex_cause(error: BaseException) -> SegindexError | None:
    """The segindex error a Ray error wraps (raised in a worker), if any."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, SegindexError):
            return e
        e = getattr(e, "cause", None) or e.__cause__
    return None
