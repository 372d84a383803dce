"""Reaching the Hugging Face Hub: fail in seconds, not minutes, when it cannot be reached.

Model loaders try the local cache first with no network at all (``offline()``); only a model that
is not cached needs the Hub, and before the first download of a process :func:`unreachable`
probes the endpoint once (one bounded HTTP request, proxies honoured). When the probe fails the
loader raises its one clear error at once instead of letting the Hub client retry for a minute.

:func:`missing_note` makes that decision from the cache's files alone (``huggingface_hub``'s
cache functions), so a loader can report a missing model before it imports torch, transformers
or open_clip.

Nothing heavy is imported at module import; ``huggingface_hub`` only when it is needed.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_ENDPOINT = "https://huggingface.co"
#: seconds one probe may take in all (DNS, connect, first response byte)
PROBE_TIMEOUT = 3.0

_probed: dict[str, str | None] = {}
_probe_lock = threading.Lock()


def endpoint() -> str:
    """The Hub address this process uses (``HF_ENDPOINT`` or the public Hub)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when offline mode is asked for: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` as set now
    (huggingface_hub reads them only once, at import), or set by :func:`offline`."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    if value.strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


@contextmanager
def offline() -> Iterator[None]:
    """Within the block, the Hub client (and transformers and open_clip through it) reads only the
    local cache: a cached model loads with no network round trip, a missing one fails at once."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _probe(url: str) -> str | None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "segindex"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return None
    except urllib.error.HTTPError:
        return None  # the server answered: reachable (a 4xx/5xx here is about this one URL)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason


def unreachable() -> str | None:
    """Why the Hub cannot be reached now (``None`` when it answers, or when offline mode is set,
    where the Hub client fails fast by itself). Probed once per process and endpoint, in at most
    about :data:`PROBE_TIMEOUT` seconds even when name resolution hangs."""
    if hub_offline():
        return None
    url = endpoint()
    with _probe_lock:
        if url in _probed:
            return _probed[url]
        result: list[str | None] = []
        worker = threading.Thread(target=lambda: result.append(_probe(url)), daemon=True)
        worker.start()
        worker.join(PROBE_TIMEOUT + 0.5)
        reason = result[0] if result else f"no answer within {PROBE_TIMEOUT:g} s"
        _probed[url] = reason
        return reason


def unreachable_note(reason: str) -> str:
    """The part of a loading error that says the Hub could not be reached."""
    return f"the Hugging Face Hub at {endpoint()} cannot be reached ({reason})"


def cached_file(repo_id: str, *filenames: str) -> str | None:
    """The local path of the first of ``filenames`` that the Hub cache holds for ``repo_id``
    (its ``main`` revision), or ``None``: files only, no network, no torch; cheap (a few stats).
    """
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        try:
            found = try_to_load_from_cache(repo_id, name)
        except ValueError:  # not a valid repository id or file name: certainly not cached
            return None
        if isinstance(found, str):
            return found
    return None


def missing_note(repo_id: str, *filenames: str) -> str | None:
    """Why the Hub files of a model cannot be had now, before any framework is imported:
    ``None`` when one of ``filenames`` is in the local cache, or when the Hub answers (the
    loader may download); otherwise the cause, for the loader's one-line error (offline mode
    is on, or the one bounded probe of :func:`unreachable` failed)."""
    if cached_file(repo_id, *filenames) is not None:
        return None
    if hub_offline():
        return "offline mode is on (HF_HUB_OFFLINE)"
    reason = unreachable()
    return None if reason is None else unreachable_note(reason)


__all__ = [
    "cached_file",
    "endpoint",
    "hub_offline",
    "missing_note",
    "offline",
    "unreachable",
    "unreachable_note",
]
