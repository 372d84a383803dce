"""The on-disk cache of exported models, beside the user's Hugging Face model cache.

Layout: ``<root>/<runtime>/<kind>/<key>/`` holding the exported model files and
``manifest.json``; ``<root>`` is ``$SEGINDEX_COMPILED_CACHE``, else ``<HF_HOME>/segindex-compiled``
(``HF_HOME``: ``$HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``).

An entry's ``<key>`` is a digest of its key fields: the model name or path, a sha256 of its
weights, the runtime and its version, the export format and the input shape. The manifest repeats
the fields, and an entry is used only when they are all equal to what is asked for and its files
are there; anything else is removed and exported anew, never used.

``sources/<kind>/<digest of model + pretrained>.json`` remembers which weight files a named model
was loaded from and which entry they made, so a process without torch
(:mod:`segindex.runtime.clip_towers`) can find the entry by checking those files (size and mtime,
then their sha256 when either changed) instead of hashing a state dict.

Torch-free: numpy, json, hashlib and the file system only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

ENV_VAR = "SEGINDEX_COMPILED_CACHE"
MANIFEST = "manifest.json"
#: bumped when what an export writes changes, so older entries are not used
FORMAT = 1
_CHUNK = 1 << 22


def cache_root() -> Path:
    """Where exported models are kept (see the module doc)."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "segindex-compiled"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "segindex-compiled"


def digest(fields: dict[str, Any]) -> str:
    """A short stable hex digest of JSON-able ``fields``."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def arrays_sha256(items: Iterable[tuple[str, np.ndarray]]) -> str:
    """sha256 over ``(name, array)`` pairs in the given order: names, dtypes, shapes and bytes
    (a state dict's identity)."""
    h = hashlib.sha256()
    for name, array in items:
        a = np.ascontiguousarray(array)
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns", "sha256"}`` of a weights file."""
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": file_sha256(path),
    }


def unchanged(recorded: dict[str, Any]) -> bool:
    """True if the file of a :func:`fingerprint` still holds the same bytes (size and mtime
    equal, or else the same sha256)."""
    path = Path(recorded["path"])
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != recorded["size"]:
        return False
    if st.st_mtime_ns == recorded["mtime_ns"]:
        return True
    return file_sha256(path) == recorded["sha256"]


def entry_dir(runtime: str, kind: str, key: dict[str, Any]) -> Path:
    return cache_root() / runtime / kind / digest(key)


def find_entry(runtime: str, kind: str, key: dict[str, Any], files: Iterable[str]) -> Path | None:
    """The entry for ``key`` if it is complete and its manifest holds exactly ``key``; an entry
    in its place that does not match is removed (to be exported again)."""
    where = entry_dir(runtime, kind, key)
    if not where.exists():
        return None
    try:
        manifest = json.loads((where / MANIFEST).read_text(encoding="utf-8"))
        ok = manifest.get("key") == json.loads(json.dumps(key, default=str)) and all(
            (where / f).is_file() for f in files
        )
    except (OSError, ValueError):
        ok = False
    if ok:
        return where
    shutil.rmtree(where, ignore_errors=True)
    return None


def read_manifest(where: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((where / MANIFEST).read_text(encoding="utf-8"))
    return manifest


def publish(
    runtime: str, kind: str, key: dict[str, Any], write: Callable[[Path], dict[str, Any]]
) -> Path:
    """Make the entry for ``key``: ``write(tmp_dir)`` writes the model files there and returns
    metadata for the manifest; the directory is then renamed into place (atomic, so a reader never
    sees half an entry; if another process got there first, its entry is kept)."""
    where = entry_dir(runtime, kind, key)
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=where.parent))
    try:
        meta = write(tmp)
        manifest = {"key": key, "meta": meta}
        (tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8"
        )
        try:
            os.rename(tmp, where)
        except OSError:
            if not where.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return where


def _source_path(runtime: str, kind: str, source: dict[str, Any]) -> Path:
    return cache_root() / runtime / "sources" / kind / f"{digest(source)}.json"


def record_source(
    runtime: str, kind: str, source: dict[str, Any], files: list[Path], key: dict[str, Any]
) -> None:
    """Remember that the model ``source`` (name/path and weights option), loaded from the weight
    ``files``, made the entry of ``key``."""
    path = _source_path(runtime, kind, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"source": source, "files": [fingerprint(f) for f in files], "key": key}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def lookup_source(runtime: str, kind: str, source: dict[str, Any]) -> dict[str, Any] | None:
    """The entry key recorded for ``source`` if its weight files are unchanged, else ``None``."""
    path = _source_path(runtime, kind, source)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("source") != source or not record.get("files"):
        return None
    if not all(unchanged(f) for f in record["files"]):
        return None
    key: dict[str, Any] = record["key"]
    return key


__all__ = [
    "ENV_VAR",
    "FORMAT",
    "arrays_sha256",
    "cache_root",
    "digest",
    "entry_dir",
    "find_entry",
    "fingerprint",
    "lookup_source",
    "publish",
    "read_manifest",
    "record_source",
]
