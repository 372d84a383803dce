"""Exporting PyTorch modules to OpenVINO (this module is the torch side of the runtime package).

:func:`export_openvino` converts a module straight from PyTorch (``openvino.convert_model``,
traced on example inputs) and saves the IR with float32 weights; :func:`state_sha256` is the
weights part of a cache key. torch and openvino are imported inside the functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segindex.runtime.cache import arrays_sha256

if TYPE_CHECKING:
    import torch


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and bytes)."""
    import torch

    def items() -> Iterator[tuple[str, Any]]:
        for name, t in module.state_dict().items():
            t = t.detach().cpu().contiguous()
            yield name, (t.view(torch.uint8) if t.dim() else t.reshape(1).view(torch.uint8)).numpy()

    return arrays_sha256(items())


@contextlib.contextmanager
def mha_fastpath_off() -> Iterator[None]:
    """PyTorch's fused ``MultiheadAttention`` fast path off (open_clip's towers trace only so)."""
    import torch

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def export_openvino(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    inputs: Sequence[tuple[Sequence[int], str]],
    out: Path,
) -> None:
    """Convert ``module`` (traced on ``example``) to ``out/model.xml`` + ``model.bin``.

    inputs: per input its shape (``-1`` for a dynamic dimension) and OpenVINO element type
        (``f32``, ``i64``).
    """
    import openvino as ov
    import torch

    spec = [(ov.PartialShape(list(shape)), getattr(ov.Type, kind)) for shape, kind in inputs]
    with torch.no_grad(), mha_fastpath_off():
        model = ov.convert_model(module.eval(), example_input=example, input=spec)
    # float32 weights: the default would halve them to fp16 on disk
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)


__all__ = ["export_openvino", "mha_fastpath_off", "state_sha256"]
