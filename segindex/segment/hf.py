"""Loading model files for segmenters: hub id or local path, offline-aware, one clear error.

Every backend that loads weights by name goes through :func:`load_pretrained` (transformers
checkpoints: a directory) or :func:`local_file` (a single weights file: ONNX graphs, torchvision
state dicts), so a missing model always ends in a ``ModelLoadError`` that names the model and says
how to pass a local copy. Nothing heavy is imported here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from segindex.errors import ModelLoadError
from segindex.hub import hub_offline, missing_note, unreachable, unreachable_note

T = TypeVar("T")

_PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")
#: how a user passes a local copy, appended to every "cannot load" message
PASS_LOCAL_HINT = "--segmenter-model DIR on the CLI or segmenter_options={'model': 'DIR'} in Python"


def looks_like_path(model: str) -> bool:
    """True if ``model`` names a filesystem location rather than a hub id."""
    return model.startswith(_PATH_PREFIXES) or os.path.isabs(model) or Path(model).exists()


def load_pretrained(
    model: str,
    build: Callable[[str, bool], T],
    *,
    expected: str,
    wrong_kind: Callable[[Exception], str] | None = None,
) -> T:
    """``build(source, local_files_only)`` for a hub id or a local checkpoint directory.

    ``expected`` says what the directory should hold (for messages). ``wrong_kind`` turns a
    ``ValueError``/``KeyError`` from a downloadable-but-unsuitable checkpoint into a message.
    The local cache is tried first (no network round trips, no retries when offline).

    Raises:
        ModelLoadError: not a directory, not in the cache and not downloadable, or unreadable.
    """
    if looks_like_path(model):
        path = _local_dir(model, expected)
        try:
            return build(str(path), True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(
                f"could not load segmenter model from directory {model!r}: {exc}"
            ) from exc

    try:
        return build(model, True)
    except (OSError, ValueError, KeyError):
        pass
    get_it = _get_it(model)
    reason = unreachable()  # one bounded probe instead of the Hub client's minute of retries
    if reason is not None:
        raise ModelLoadError(_not_reachable(model, unreachable_note(reason)))
    try:
        return build(model, hub_offline())
    except OSError as exc:
        raise ModelLoadError(
            f"could not load segmenter model {model!r}: not a local directory and not "
            f"downloadable (offline or wrong name). {get_it}"
        ) from exc
    except (ValueError, KeyError) as exc:
        detail = wrong_kind(exc) if wrong_kind is not None else f"unsuitable checkpoint: {exc}"
        raise ModelLoadError(f"segmenter model {model!r}: {detail}") from exc


def check_available(model: str, *, expected: str = "config.json and the weights") -> None:
    """Before any framework is imported: raise the :func:`load_pretrained` error for a model
    that is neither a local directory nor in the local Hub cache while the Hub is offline or
    unreachable; return quietly when it may load (cached: no probe at all)."""
    if looks_like_path(model):
        _local_dir(model, expected)
        return
    cause = missing_note(model, "config.json")
    if cause is not None:
        raise ModelLoadError(_not_reachable(model, cause))


def _local_dir(model: str, expected: str) -> Path:
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelLoadError(f"segmenter model directory {model!r} does not exist")
    if not path.is_dir():
        raise ModelLoadError(
            f"segmenter model {model!r} is a file; pass the directory that holds {expected}"
        )
    return path


def _get_it(model: str) -> str:
    return (
        f"Download it where you have network (e.g. `hf download {model} --local-dir DIR`) and "
        f"pass the directory: {PASS_LOCAL_HINT}."
    )


def _not_reachable(model: str, cause: str) -> str:
    return (
        f"could not load segmenter model {model!r}: not a local directory, not in the local "
        f"cache, and {cause}. {_get_it(model)}"
    )


def local_file(path: str | os.PathLike[str], what: str, option: str = "model") -> Path:
    """``path`` as an existing file, else a ``ModelLoadError`` saying how to pass one."""
    p = Path(path).expanduser()
    if not p.is_file():
        state = "is a directory" if p.is_dir() else "does not exist"
        raise ModelLoadError(
            f"{what} {str(path)!r} {state}; pass the file with --segmenter-option "
            f"{option}=PATH on the CLI or segmenter_options={{'{option}': 'PATH'}} in Python"
        )
    return p


__all__ = [
    "PASS_LOCAL_HINT",
    "check_available",
    "hub_offline",
    "load_pretrained",
    "local_file",
    "looks_like_path",
]
