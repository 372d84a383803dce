"""Device selection. ``auto`` means CUDA when torch sees a GPU, else CPU."""

from __future__ import annotations

from segindex.errors import ConfigError


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but torch sees no CUDA GPU")
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}")
    return device
