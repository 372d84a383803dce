"""Giving memory back to the operating system.

An OpenVINO model reads its weights file (or its compiled blob from the model cache) with
``mmap`` and, when it first runs on the CPU, repacks every weight into buffers of its own; the
file's pages it read stay resident afterwards, counted in the process's resident memory although
nothing needs them (twice the weights in all).
:func:`release_mapped` drops them: the mapping stays, and any page read again later comes back
from the page cache, so results cannot change.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

__all__ = ["release_mapped"]

_MADV_DONTNEED = 4


def release_mapped(path: str | Path) -> int:
    """Drop this process's resident pages of the file ``path`` (of every file under ``path``
    when it is a folder) where it is mapped into memory; return how many mappings were released
    (0 where none, and on systems other than Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    target = Path(path).resolve()
    folder = str(target) + "/" if target.is_dir() else None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    released = 0
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            name = fields[5].strip() if len(fields) == 6 else ""
            if name == str(target) or (folder is not None and name.startswith(folder)):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                released += libc.madvise(start, end - start, _MADV_DONTNEED) == 0
    return released
