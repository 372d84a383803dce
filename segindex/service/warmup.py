"""Making an index's query encoders ready before a service answers: one dummy text encode and
one dummy image encode, so the first query is as fast as the tenth (the model load, the first
inference's one-off costs and the tokenizer's imports are paid here, not by a client)."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from segindex.index import Index

__all__ = ["Readiness", "warm_up"]

log = logging.getLogger("segindex.service")

#: the dummy text (verbatim, not templated: the searcher's text cache keeps real queries only)
WARM_TEXT = "a photo"


@dataclass(frozen=True)
class Readiness:
    """What the warm-up found: ``error`` is ``None`` when the encoders answered.

    seconds:  the warm-up's wall time (the model load included)
    embedder: the embedder's ``repr``
    runtime:  its ``runtime_info()`` where it has one (``{}`` otherwise)
    torch:    whether ``torch`` is imported in this process after the warm-up
    """

    seconds: float
    embedder: str = ""
    runtime: dict[str, Any] | None = None
    torch: bool = False
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.error is None


def warm_up(index: Index, *, raise_errors: bool = True) -> Readiness:
    """Build ``index``'s embedder and encode one dummy text (if it embeds text) and one small
    dummy image. With ``raise_errors=False`` a failure (a model that cannot be loaded) is
    returned in :attr:`Readiness.error` and logged instead of raised."""
    from segindex.errors import SegindexError

    t0 = time.perf_counter()
    try:
        embedder = index.embedder
        if embedder.embeds_text:
            embedder.embed_texts([WARM_TEXT], templates=None)
        if not embedder.embeds_regions:
            embedder.embed_images([np.full((32, 32, 3), 127, dtype=np.uint8)])
    except SegindexError as e:
        if raise_errors:
            raise
        log.warning("query encoders not ready: %s", e)
        return Readiness(time.perf_counter() - t0, torch="torch" in sys.modules, error=str(e))
    info = getattr(embedder, "runtime_info", None)
    return Readiness(
        seconds=time.perf_counter() - t0,
        embedder=repr(embedder),
        runtime=dict(info()) if callable(info) else {},
        torch="torch" in sys.modules,
    )
