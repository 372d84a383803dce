"""Where an open_clip model comes from, decided without importing open_clip or torch.

:func:`resolve_clip_source` checks an embedder's ``model``/``pretrained`` options and says what
they name: an open_clip architecture with a weight tag (whose files are a Hugging Face Hub
repository), a local checkpoint, a Hub repository (``hf-hub:org/repo``) or a local model
directory. Its :class:`ClipSource` finds the model's files in the local Hub cache
(:meth:`ClipSource.check_available`: a missing model is reported in one line, in well under a
second, before any framework is imported) and reads the model's config (for the torch-free
tokenizer of a search process).

open_clip's tables (architecture configs, the weight-tag table of ``pretrained.py``) are read
from its installed files without running the open_clip package, whose import loads torch. Only a
name open_clip does not ship (one registered at run time) makes this module import open_clip.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from segindex.errors import ConfigError, ModelLoadError
from segindex.hub import cached_file, missing_note

__all__ = ["ClipSource", "clip_identity", "hub_failure", "local_copy_hint", "resolve_clip_source"]

HF_HUB = "hf-hub:"
LOCAL_DIR = "local-dir:"
CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_pytorch_model.bin"
SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"
_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".npz", ".ckpt")
_TABLES_PACKAGE = "_segindex_open_clip_tables"


@dataclass(frozen=True)
class ClipSource:
    """What an embedder's ``model``/``pretrained`` name, canonical.

    model, pretrained: as the embedder records them (``describe()``): directories and files as
        absolute paths; ``pretrained`` ``None`` for random weights and for Hub/directory models
    model_id: the string open_clip is given (``ViT-B-32``, ``hf-hub:org/repo``, ``local-dir:D``)
    schema: ``hf-hub``, ``local-dir`` or ``None`` (an architecture name)
    hub_repo: the Hub repository holding the weights (a Hub model, or a weight tag's), else None
    hub_weights: file names in ``hub_repo``, any one of which is the weights (preferred first)
    """

    model: str
    pretrained: str | None
    model_id: str
    schema: str | None
    hub_repo: str | None = None
    hub_weights: tuple[str, ...] = ()

    def check_available(self) -> None:
        """Raise the one-line :class:`ModelLoadError` when the model's Hub files are neither in
        the local cache nor downloadable now (offline mode, or the Hub unreachable); return
        quietly otherwise. Touches only files (and at most one bounded probe), never torch."""
        if self.hub_repo is None:
            return
        needed = [(CONFIG_NAME,)] if self.schema == "hf-hub" else []
        for names in [*needed, self.hub_weights]:
            cause = missing_note(self.hub_repo, *names)
            if cause is not None:
                raise ModelLoadError(hub_failure(self.model, self.pretrained, cause))

    def weights_file(self) -> Path | None:
        """The local weights file (a checkpoint, a directory's weights, or the cached Hub file),
        ``None`` for random weights or weights not cached."""
        if self.schema == "local-dir":
            folder = Path(self.model)
            return next(
                (folder / n for n in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME) if (folder / n).is_file()),
                None,
            )
        if self.hub_repo is not None:
            found = cached_file(self.hub_repo, *self.hub_weights)
            return Path(found) if found is not None else None
        if self.pretrained is not None and os.path.isfile(self.pretrained):
            return Path(self.pretrained)
        return None

    def model_cfg(self) -> dict[str, Any] | None:
        """open_clip's model config (``embed_dim``, ``vision_cfg``, ``text_cfg``), read from
        files only; ``None`` when it is not on disk (a Hub model not cached)."""
        if self.schema is None:
            return _builtin_config(self.model_id)
        if self.schema == "local-dir":
            path: str | None = str(Path(self.model) / CONFIG_NAME)
        else:
            assert self.hub_repo is not None
            path = cached_file(self.hub_repo, CONFIG_NAME)
        if path is None or not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f).get("model_cfg")
        return cfg if isinstance(cfg, dict) else None


def clip_identity(model: str, pretrained: str | None, dim: int) -> dict[str, Any]:
    """What identifies an open_clip vector space (stored with an index, checked on reopen):
    backend name, canonical model and weights, dimension; never the device or runtime."""
    return {"name": "open_clip", "model": model, "pretrained": pretrained, "dim": dim}


def local_copy_hint(model: str) -> str:
    """How to pass a downloaded copy of CLIP model ``model`` (CLI and Python)."""
    return (
        "Download the checkpoint where you have network and pass it: "
        "--clip-pretrained /path/to/open_clip_pytorch_model.bin (or a directory with "
        "open_clip_config.json and the weights via --clip-model DIR); Python: "
        f"embedder_options={{'model': {model!r}, "
        "'pretrained': '/path/to/open_clip_pytorch_model.bin'} or "
        "embedder_options={'model': '/path/to/DIR'}"
    )


def hub_failure(model: str, pretrained: str | None, cause: str) -> str:
    """The one-line error for a CLIP model that could not be had from the Hugging Face Hub:
    a Hub repository ``model`` (``hf-hub:...``) or an architecture with weight tag
    ``pretrained``."""
    if model.startswith(HF_HUB):
        return (
            f"could not load CLIP model {model!r} from the Hugging Face Hub (offline, no "
            f"access, or unknown repository). Download the repository (open_clip_config.json "
            f"and open_clip_pytorch_model.bin) where you have network and pass the directory: "
            f"--clip-model DIR; Python: embedder_options={{'model': '/path/to/DIR'}}. "
            f"Cause: {cause}"
        )
    return (
        f"could not load CLIP model {model!r} with weights {pretrained!r} "
        f"(offline, no access to the Hugging Face Hub, or not in its cache). "
        f"{local_copy_hint(model)}. Cause: {cause}"
    )


def _looks_like_path(s: str) -> bool:
    return (
        os.sep in s
        or (os.altsep is not None and os.altsep in s)
        or s.startswith((".", "~"))
        or s.lower().endswith(_WEIGHT_SUFFIXES)
    )


def resolve_clip_source(
    model: str | os.PathLike[str], pretrained: str | os.PathLike[str] | None
) -> ClipSource:
    """Check ``model``/``pretrained`` before any loading and say what they name.

    Fails fast with :class:`ModelLoadError` on unknown names and tags and on missing paths,
    with :class:`ConfigError` on values of a wrong type. Imports neither torch nor open_clip
    (except for a name that open_clip does not ship: one registered at run time).
    """
    model = os.fspath(model) if isinstance(model, os.PathLike) else model
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"CLIP model must be a non-empty string or path, got {model!r}")
    model = model.strip()
    pretrained = os.fspath(pretrained) if isinstance(pretrained, os.PathLike) else pretrained
    if pretrained is not None and not isinstance(pretrained, str):
        raise ConfigError(f"CLIP pretrained must be a string, path or None, got {pretrained!r}")
    if pretrained is not None and not pretrained.strip():
        pretrained = None  # "" (e.g. an empty CLI option) means random weights, like None

    if model.startswith(HF_HUB):
        repo = model[len(HF_HUB) :].strip("/")
        if not repo:
            raise ModelLoadError(f"CLIP model {model!r}: missing repository after 'hf-hub:'")
        return ClipSource(model, None, model, "hf-hub", repo, (SAFE_WEIGHTS_NAME, WEIGHTS_NAME))

    if model.startswith(LOCAL_DIR) or os.path.isdir(os.path.expanduser(model)):
        raw = model[len(LOCAL_DIR) :] if model.startswith(LOCAL_DIR) else model
        directory = Path(raw).expanduser().resolve()
        if not directory.is_dir():
            raise ModelLoadError(f"CLIP model directory {str(directory)!r} does not exist")
        if not (directory / CONFIG_NAME).is_file():
            raise ModelLoadError(
                f"CLIP model directory {str(directory)!r} has no open_clip_config.json; expected "
                f"an open_clip model directory (open_clip_config.json + "
                f"open_clip_pytorch_model.bin or open_clip_model.safetensors)"
            )
        return ClipSource(str(directory), None, f"{LOCAL_DIR}{directory}", "local-dir")

    name = model.replace("/", "-")  # open_clip accepts 'ViT-B/32' for 'ViT-B-32'
    tables = _Tables.load(name)
    if name not in tables.names:
        if _looks_like_path(model):
            raise ModelLoadError(
                f"CLIP model directory {model!r} does not exist (and it is not an open_clip "
                f"model name)"
            )
        close = difflib.get_close_matches(name, sorted(tables.names), n=5, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelLoadError(
            f"unknown CLIP model {model!r}: {hint}open_clip knows {len(tables.names)} "
            f"architectures (list them with open_clip.list_models()), or pass 'hf-hub:org/repo' "
            f"or a local directory with open_clip_config.json"
        )

    if pretrained is None:
        return ClipSource(name, None, name, None)
    pretrained = pretrained.strip()
    cfg = tables.pretrained_cfg(name, pretrained)
    if cfg:
        hub_repo, weights = _hub_weights(cfg)
        return ClipSource(name, pretrained, name, None, hub_repo, weights)
    path = Path(pretrained).expanduser()
    if path.is_file():
        return ClipSource(name, str(path.resolve()), name, None)
    if _looks_like_path(pretrained):
        raise ModelLoadError(
            f"CLIP weights file {pretrained!r} for model {name!r} does not exist "
            f"(expected a local open_clip checkpoint such as open_clip_pytorch_model.bin)"
        )
    tags = tables.tags(name)
    raise ModelLoadError(
        f"unknown weights {pretrained!r} for CLIP model {name!r}: not an open_clip tag for this "
        f"model (known: {', '.join(tags) or 'none'}) and not an existing file"
    )


def _hub_weights(cfg: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The Hub repository and weight file names of an open_clip weight tag's config (as
    open_clip's ``download_pretrained`` reads it: ``org/repo/`` or ``org/repo/file``; a
    ``.safetensors`` twin is preferred); ``(None, ())`` for a local file or a plain URL."""
    hub = cfg.get("hf_hub") or ""
    if "file" in cfg or not hub:
        return None, ()
    repo, filename = os.path.split(hub)
    filename = filename or WEIGHTS_NAME
    if filename == WEIGHTS_NAME:
        return repo, (SAFE_WEIGHTS_NAME, filename)
    if filename.endswith((".bin", ".pth")):
        return repo, (filename[:-4] + ".safetensors", filename)
    return repo, (filename,)


# -- open_clip's tables, read without importing open_clip -------------------------------------


def _open_clip_folder() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package; does not import it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(folders[0]) if folders else None


def _builtin_config(name: str) -> dict[str, Any] | None:
    """open_clip's shipped config of architecture ``name`` (or a registered one, when open_clip
    is already imported)."""
    if "open_clip" in sys.modules:
        cfg = sys.modules["open_clip"].get_model_config(name)
        return dict(cfg) if cfg else None
    folder = _open_clip_folder()
    path = folder / "model_configs" / f"{name}.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    return cfg if isinstance(cfg, dict) else None


@contextmanager
def _without(module: str) -> Iterator[None]:
    """Within the block, ``import module`` fails (open_clip's ``pretrained.py`` tries
    ``safetensors.torch``, which imports torch; without it, it only skips a preference)."""

    class Refuse:
        @staticmethod
        def find_spec(fullname: str, *_: object) -> None:
            if fullname == module:
                raise ImportError(f"{module} is not loaded while reading open_clip's tables")

    finder = Refuse()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@lru_cache(maxsize=1)
def _pretrained_table() -> dict[str, dict[str, Any]] | None:
    """open_clip's ``_PRETRAINED`` (architecture -> tag -> config), from its ``pretrained.py``
    run as a module of a private package (open_clip's ``__init__`` is not run)."""
    folder = _open_clip_folder()
    if folder is None or not (folder / "pretrained.py").is_file():
        return None
    package = types.ModuleType(_TABLES_PACKAGE)
    package.__path__ = [str(folder)]
    sys.modules[_TABLES_PACKAGE] = package
    try:
        with _without("safetensors.torch"):
            module = importlib.import_module(f"{_TABLES_PACKAGE}.pretrained")
        table = getattr(module, "_PRETRAINED", None)
        return table if isinstance(table, dict) else None
    except Exception:  # noqa: BLE001 - another open_clip layout: open_clip itself answers
        return None
    finally:
        for key in [k for k in list(sys.modules) if k.startswith(_TABLES_PACKAGE)]:
            del sys.modules[key]


@dataclass(frozen=True)
class _Tables:
    """Architecture names and the weight-tag table: from files, or from open_clip itself when
    it is imported already or the name is not one open_clip ships."""

    names: frozenset[str]
    table: dict[str, dict[str, Any]] | None
    module: Any = None

    @classmethod
    def load(cls, name: str) -> _Tables:
        module: Any = sys.modules.get("open_clip")
        folder = _open_clip_folder()
        table = _pretrained_table() if module is None else None
        builtin = folder is not None and (folder / "model_configs" / f"{name}.json").is_file()
        if module is None and (not builtin or table is None):
            # a name registered at run time, or an unknown name: open_clip itself answers
            module = importlib.import_module("open_clip")
        if module is not None:
            return cls(frozenset(module.list_models()), None, module)
        assert folder is not None
        names = frozenset(p.stem for p in (folder / "model_configs").glob("*.json"))
        return cls(names, table)

    def pretrained_cfg(self, name: str, tag: str) -> dict[str, Any]:
        if self.module is not None:
            return dict(self.module.get_pretrained_cfg(name, tag) or {})
        assert self.table is not None
        return dict(self.table.get(name, {}).get(tag.lower().replace("-", "_"), {}))

    def tags(self, name: str) -> list[str]:
        if self.module is not None:
            return list(self.module.list_pretrained_tags_by_model(name))
        assert self.table is not None
        return list(self.table.get(name, {}))
