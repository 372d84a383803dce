"""OpenVINO: compile an exported model for this CPU with an explicit precision and run it on
numpy arrays (torch-free; ``openvino`` is imported when a model is compiled).

OpenVINO picks bf16 by itself on CPUs that have it; here the precision is always set
(``INFERENCE_PRECISION_HINT`` ``f32`` or ``bf16``) and the precision the compiled model reports is
what :attr:`CompiledModel.precision` records. Compiled blobs are kept by OpenVINO's own model
cache (``CACHE_DIR``) inside the export's cache entry, so a second process compiles faster.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

#: the files an OpenVINO export writes (IR graph and its weights, float32)
MODEL_FILES = ("model.xml", "model.bin")


def version() -> str:
    """The installed OpenVINO version (part of every cache key)."""
    import openvino

    return str(openvino.get_version())


class CompiledModel:
    """An OpenVINO model from ``<where>/model.xml`` compiled for the CPU in ``hint`` (``f32`` or
    ``bf16``); calling it runs one inference (serialised: one request, a lock around it).

    ``__call__(*inputs)`` takes numpy arrays in the model's input order and returns its outputs as
    new numpy arrays (float32 for float outputs whatever the precision).
    """

    def __init__(self, where: Path, hint: str) -> None:
        import openvino as ov

        core = ov.Core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": hint,
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(where / "compiled"),
        }
        self.where = where
        self._compiled = core.compile_model(str(where / "model.xml"), "CPU", config)
        #: the precision OpenVINO reports it runs in (``f32``/``bf16``), as asked unless the CPU
        #: cannot (then OpenVINO says what it does)
        reported = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = str(getattr(reported, "to_string", lambda: reported)())
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            result = self._request.infer(list(inputs), share_inputs=False, share_outputs=False)
            return [np.asarray(v) for v in result.to_tuple()]


__all__ = ["MODEL_FILES", "CompiledModel", "version"]
