"""The decode stage: files to ``HxWx3`` uint8 RGB, one batch ahead in spawned worker processes.

While batch ``i`` is segmented and embedded, batch ``i + 1`` is decoded by
``RuntimeOptions.decode_workers`` processes (never more than one batch ahead, so memory stays
flat), which also resize and normalise each image for the segmenter when it has a
:meth:`~segindex.segment.base.Segmenter.preprocessor`.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from segindex.errors import ImageDecodeError
from segindex.images import load_image

#: what the decode stage yields per image: pixels and the segmenter's prepared input (``None``
#: when decoded inline or without a preprocessor), or the reason the file cannot be decoded
Decoded = tuple[np.ndarray, Any] | str


def _exit_with_parent() -> None:
    """In a decode worker: end this process when the ingesting process dies (even by SIGKILL),
    so no orphan outlives it holding its stdout/stderr open."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(0)

    threading.Thread(target=watch, name="segindex-parent-watch", daemon=True).start()


#: in a decode worker: the segmenter's preprocessor, received once at start (see _init_worker)
_WORKER_PREPARE: Callable[[np.ndarray], Any] | None = None


def _init_worker(prepare_blob: bytes | None) -> None:
    """Decode worker start: die with the parent; unpickle the segmenter's preprocessor once.

    The preprocessor arrives pickled as bytes so it is unpickled here, after the worker's
    torch is limited to one thread (``OMP_NUM_THREADS`` must be set before torch is imported):
    a worker's resizing should not compete with the models' threads."""
    global _WORKER_PREPARE
    _exit_with_parent()
    if prepare_blob is None:
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        _WORKER_PREPARE = pickle.loads(prepare_blob)
    except Exception:  # noqa: BLE001 - then images go to the segmenter unprepared
        _WORKER_PREPARE = None


def _decode_in_worker(path: str, max_pixels: int | None) -> Decoded:
    return decode_and_prepare(path, max_pixels, _WORKER_PREPARE)


def decode_one(path: str, max_pixels: int | None) -> np.ndarray | str:
    """Decode one file to ``HxWx3`` uint8 RGB, or the reason it cannot be (``ImageDecodeError``).

    Module-level so spawned worker processes can run it; any other exception propagates."""
    try:
        return load_image(path, max_pixels=max_pixels)
    except ImageDecodeError as e:
        return str(e)


def decode_and_prepare(
    path: str, max_pixels: int | None, prepare: Callable[[np.ndarray], Any] | None
) -> Decoded:
    """:func:`decode_one`, then the segmenter's ``prepare`` (resize, normalise) on the pixels,
    in the worker process. A ``prepare`` failure leaves it to the segmenter (``None``), which
    then prepares the image itself and reports any error as that image's failure."""
    pixels = decode_one(path, max_pixels)
    if isinstance(pixels, str):
        return pixels
    prepared = None
    if prepare is not None:
        try:
            prepared = prepare(pixels)
        except Exception:  # noqa: BLE001 - the segmenter retries and reports it
            prepared = None
    return pixels, prepared


class Prefetcher:
    """Decodes batches of ``(path, sha256)``: ``submit`` starts one in the worker pool, ``take``
    returns its ``(path, sha256, (pixels, prepared) or reason)`` in order. Workers also run the
    segmenter's ``prepare`` (resize, normalise). With ``workers == 0``, or after the pool broke
    (a worker killed, e.g. out of memory), decoding happens inline in ``take``, unprepared."""

    def __init__(
        self,
        workers: int,
        max_pixels: int | None,
        prepare: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.workers, self.max_pixels, self.prepare = workers, max_pixels, prepare
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor | None:
        if self.workers > 0 and self._pool is None:
            blob = None
            if self.prepare is not None:
                try:
                    blob = pickle.dumps(self.prepare)
                except Exception:  # noqa: BLE001 - not picklable: the segmenter prepares
                    blob = None
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(blob,),
            )
        return self._pool

    def submit(self, batch: list[tuple[str, str]]) -> list[Future[Decoded]] | None:
        pool = self._get_pool()
        if pool is None:
            return None
        try:
            return [pool.submit(_decode_in_worker, path, self.max_pixels) for path, _ in batch]
        except BrokenProcessPool:
            self._broken()
            return None

    def take(
        self, batch: list[tuple[str, str]], futures: list[Future[Decoded]] | None
    ) -> Iterator[tuple[str, str, Decoded]]:
        for i, (path, sha) in enumerate(batch):
            result: Decoded | None = None
            if futures is not None:
                try:
                    result = futures[i].result()
                except BrokenProcessPool:
                    futures = None
                    self._broken()
                except Exception:  # noqa: BLE001 - e.g. a result that failed to pickle
                    result = None  # this image is decoded inline below
            if result is None:
                result = decode_and_prepare(path, self.max_pixels, None)
            yield path, sha, result

    def _broken(self) -> None:
        self.workers = 0
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
