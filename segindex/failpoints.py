"""Named points where a test may kill the process, to prove crash safety at that exact moment.

``SEGINDEX_KILL_AT=name:n`` (read when the process starts) makes the ``n``-th pass through
:func:`point` ``name`` send SIGKILL to this process: no cleanup, no flush, as a power cut
would. Unset (always, outside tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["point"]


def _parse(value: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in value.split(","):
        name, _, n = item.strip().partition(":")
        if name:
            out[name] = int(n or 1)
    return out


_ARMED = _parse(os.environ.get("SEGINDEX_KILL_AT", ""))
_PASSES: dict[str, int] = {}


def point(name: str) -> None:
    """Pass the failpoint ``name`` (see the module doc)."""
    if name not in _ARMED:
        return
    _PASSES[name] = _PASSES.get(name, 0) + 1
    if _PASSES[name] >= _ARMED[name]:
        os.kill(os.getpid(), signal.SIGKILL)
