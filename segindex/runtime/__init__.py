"""Which inference runtime runs the network forward passes of the default models.

``torch`` runs the PyTorch modules as they are. ``openvino`` runs the same modules exported once
with ``openvino.convert_model`` and compiled for this CPU (cached on disk, see
:mod:`segindex.runtime.cache`); pre- and post-processing stay the torch path's own code, only
the module forward is swapped. ``auto`` (the default) is ``openvino`` on a CPU when OpenVINO is
installed (measured ~2x faster here, results within the tolerances of docs/runtimes.md), else
``torch``, with a one-line notice when OpenVINO is missing.

``SEGINDEX_RUNTIME`` (environment) replaces what ``auto`` means, e.g. ``SEGINDEX_RUNTIME=torch``.

Precision ``auto`` on a compiled runtime (:func:`auto_precision`): the CLIP towers run in bf16 on
CPUs with native bf16 (AVX512-BF16 or AMX; vectors within cosine 0.999 of fp32), the segmenter
in fp32 (bf16 moves mask borders beyond the 0.98 IoU tolerance). The precision is always given
to OpenVINO explicitly (it would pick bf16 by itself on such CPUs) and recorded.

Nothing heavy is imported here: this module and :mod:`segindex.runtime.clip_towers` load without
torch.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from segindex.errors import ConfigError

#: the names ``--runtime`` accepts
RUNTIMES: tuple[str, ...] = ("auto", "torch", "openvino")
#: the compiled runtimes (each exports from the torch modules); onnxruntime is not offered yet
COMPILED: tuple[str, ...] = ("openvino",)
ENV_VAR = "SEGINDEX_RUNTIME"
#: precision of the segindex vocabulary -> OpenVINO ``INFERENCE_PRECISION_HINT``
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16"}

_noticed: set[str] = set()


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one of :data:`RUNTIMES`, else a ``ConfigError``."""
    if runtime not in RUNTIMES:
        extra = (
            " (onnxruntime is not offered for the panoptic segmenter and CLIP: OpenVINO "
            "measured faster; see docs/runtimes.md)"
            if runtime == "onnxruntime"
            else ""
        )
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}{extra}")
    return runtime


def available(runtime: str) -> bool:
    """True if ``runtime`` can run here (``torch`` always; a compiled one when installed)."""
    if runtime == "torch":
        return True
    return importlib.util.find_spec(runtime) is not None


def resolve_runtime(runtime: str, device: str) -> str:
    """``torch`` or ``openvino`` for a resolved ``device`` (``auto`` decided here).

    Raises:
        ConfigError: unknown name; a compiled runtime asked for on a GPU, or not installed.
    """
    check_runtime(runtime)
    if runtime == "auto":
        wanted = os.environ.get(ENV_VAR, "").strip()
        if wanted and wanted != "auto":
            return resolve_runtime(check_runtime(wanted), device)
        if device != "cpu":
            return "torch"
        if available("openvino"):
            return "openvino"
        notice(
            "openvino-missing",
            "segindex: OpenVINO is not installed, the models run with PyTorch "
            "(pip install 'segindex[openvino]' for ~2x faster CPU inference)",
        )
        return "torch"
    if runtime in COMPILED:
        if device != "cpu":
            raise ConfigError(
                f"runtime {runtime!r} runs on the CPU only, got device {device!r}; use "
                f"--runtime torch on a GPU"
            )
        if not available(runtime):
            raise ConfigError(
                f"runtime {runtime!r} is not installed: pip install 'segindex[{runtime}]'"
            )
    return runtime


def openvino_hint(precision: str) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for a resolved segindex precision."""
    try:
        return OPENVINO_HINTS[precision]
    except KeyError:
        raise ConfigError(
            f"runtime 'openvino' runs in precision fp32 or bf16, got {precision!r}"
        ) from None


@functools.cache
def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic (``avx512_bf16`` or ``amx_bf16`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = set(text.split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def auto_precision(kind: str) -> str:
    """What precision ``auto`` means on a compiled runtime for a ``segmenter`` or an
    ``embedder`` (see the module doc)."""
    if kind == "embedder" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def describe_runtime(backend: Any) -> dict[str, Any]:
    """``{"runtime", "precision", ...}`` of a built segmenter or embedder (``torch`` and its
    ``precision`` for backends that do not say more)."""
    info = getattr(backend, "runtime_info", None)
    if callable(info):
        return dict(info())
    return {"runtime": "torch", "precision": str(getattr(backend, "precision", "fp32"))}


def notice(key: str, line: str) -> None:
    """Print ``line`` on stderr, once per process and ``key``."""
    if key in _noticed:
        return
    _noticed.add(key)
    print(line, file=sys.stderr)


__all__ = [
    "COMPILED",
    "auto_precision",
    "cpu_has_bf16",
    "ENV_VAR",
    "RUNTIMES",
    "available",
    "check_runtime",
    "describe_runtime",
    "notice",
    "openvino_hint",
    "resolve_runtime",
]
