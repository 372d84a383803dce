"""Device and numeric precision for the torch backends.

``device``: ``auto`` means CUDA when torch sees a GPU, else CPU.

``precision`` (what the models compute in):

    fp32   full precision everywhere (the CPU default: CPU half-precision kernels are slower)
    fp16   GPU autocast to float16 (matmuls and convolutions in half, softmax/norms in float)
    bf16   autocast to bfloat16 (CUDA from Ampere on; also CPU, slow without AMX)
    auto   on CUDA: ``bf16`` on GPUs with native bf16 (Ampere and later), else ``fp16``; the CLIP
           embedder prefers ``fp16`` (more mantissa, as CLIP itself runs on GPUs); ``fp32``
           elsewhere

Vectors are always returned as float32 and masks as bool whatever the precision, so an index
may be filled with one precision and searched with another (scores differ in the third decimal).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from segindex.errors import ConfigError

if TYPE_CHECKING:
    import torch

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but torch sees no CUDA GPU")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}")
    return device


def backend_device(backend: object) -> str:
    """The device a segmenter or embedder runs on (``cpu`` for backends that do not say)."""
    return str(getattr(backend, "device", "cpu"))


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ConfigError``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: str, cuda_auto: str | None = None) -> str:
    """``fp32``, ``fp16`` or ``bf16`` for a resolved ``device`` (``auto`` decided here;
    ``cuda_auto`` overrides what ``auto`` means on CUDA)."""
    check_precision(precision)
    if precision != "auto":
        if precision == "fp16" and device == "cpu":
            raise ConfigError(
                "precision 'fp16' needs a GPU (device 'cuda' or 'mps'); on CPU use 'bf16' or 'fp32'"
            )
        return precision
    if not device.startswith("cuda"):
        return "fp32"
    if cuda_auto is not None:
        return check_precision(cuda_auto)
    return "bf16" if native_bf16(device) else "fp16"


def native_bf16(device: str) -> bool:
    """True for CUDA devices with bf16 tensor cores (compute capability 8.0, Ampere, and up);
    ``torch.cuda.is_bf16_supported()`` also says True where bf16 is only emulated."""
    import torch

    return int(torch.cuda.get_device_capability(device)[0]) >= 8


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@contextlib.contextmanager
def autocast(device: str, precision: str) -> Iterator[None]:
    """``torch.autocast`` for a resolved ``device``/``precision``; nothing for ``fp32``.

    Autocast (not a cast of the weights) keeps numerically fragile ops (softmax, norms, losses,
    reductions) in float32, so it is safe for models that were trained in float32.
    """
    if precision == "fp32":
        yield
        return
    import torch

    device_type = device.split(":", 1)[0]
    with torch.autocast(device_type=device_type, dtype=torch_dtype(precision)):
        yield


def to_device(value: Any, device: str) -> Any:
    """A tensor (or a dict/``BatchFeature`` of tensors) on ``device``.

    For CUDA the host tensor is copied into pinned (page-locked) memory first and moved with
    ``non_blocking=True``, so the host-to-GPU copy overlaps the work already queued on the GPU.
    Other devices get a plain ``.to(device)``.
    """
    import torch

    if isinstance(value, torch.Tensor):
        if device.startswith("cuda") and value.device.type == "cpu":
            return value.pin_memory().to(device, non_blocking=True)
        return value.to(device)
    if hasattr(value, "items"):
        moved = {k: to_device(v, device) for k, v in value.items()}
        if hasattr(value, "data") and isinstance(value.data, dict):  # transformers BatchFeature
            value.data.update(moved)
            return value
        return moved
    return value


__all__ = [
    "PRECISIONS",
    "autocast",
    "backend_device",
    "check_precision",
    "resolve_device",
    "resolve_precision",
    "to_device",
    "torch_dtype",
]
