"""SAM as ONNX: an image encoder + prompt decoder pair through onnxruntime.

The pair follows the standard SAM ONNX export (segment-anything ``scripts/export_onnx_model.py``,
as used for SAM, MobileSAM, EfficientSAM exports):

* encoder: one float32 input ``(1, 3, S, S)`` (S = 1024 unless the graph says otherwise): RGB
  resized so the longest side is S, normalised with ``pixel_mean``/``pixel_std`` (0-255 scale),
  zero-padded right/bottom. One output ``(1, C, h, w)``: the image embedding.
* decoder: inputs ``image_embeddings``, ``point_coords (1, P, 2)`` (XY in the resized S frame),
  ``point_labels (1, P)`` (1 foreground, 0 background, 2/3 box corners, -1 padding point),
  ``mask_input (1, 1, 4h, 4w)``, ``has_mask_input (1,)``, ``orig_im_size (2,)``; outputs
  ``masks`` (mask logits at ``orig_im_size``) and ``iou_predictions``.

Input/output names of the encoder are read from the session. The decoder of such exports takes one
prompt per call (batch dimension fixed at 1); when a graph accepts a batch of prompts it is used,
else prompts are decoded one by one. onnxruntime is imported only when a segmenter is built.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from segindex.errors import ConfigError, ModelLoadError
from segindex.segment.hf import local_file
from segindex.segment.sam_auto import (
    LABEL_BOX_BOTTOM_RIGHT,
    LABEL_BOX_TOP_LEFT,
    SamLikeSegmenter,
)
from segindex.validate import optional_integer

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
ENCODER_NAMES = ("encoder.onnx", "image_encoder.onnx", "vision_encoder.onnx")
DECODER_NAMES = ("decoder.onnx", "sam.onnx", "mask_decoder.onnx", "prompt_decoder.onnx")
#: file names looked for in a model directory, first found wins, by part
ONNX_NAMES = {"encoder": ENCODER_NAMES, "decoder": DECODER_NAMES}
_PADDING_LABEL = -1.0


class SamOnnxSegmenter(SamLikeSegmenter):
    """SAM encoder + decoder ONNX pair; automatic mode and box/point prompts.

    Args:
        model: directory holding the pair (``encoder.onnx`` and ``decoder.onnx`` or ``sam.onnx``);
            or pass ``encoder`` and ``decoder`` file paths instead.
        encoder, decoder: explicit ONNX files (override what ``model`` would find).
        device: ``auto``/``cuda[:N]`` use onnxruntime's CUDA provider when it is installed,
            ``cpu`` the CPU provider.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).
        pixel_mean, pixel_std: encoder input normalisation (0-255 scale), SAM's by default.
        **sam_options: see :class:`~segindex.segment.sam_auto.SamLikeSegmenter`.

    :meth:`segment` returns class-agnostic regions (``label_ids`` -1, scores = predicted IoU);
    :meth:`prompt` one mask per box.

    Raises:
        ModelLoadError: files missing, unreadable, or not in the SAM ONNX export format.
        ConfigError: an option is out of range.
    """

    name = "sam_onnx"

    def __init__(
        self,
        model: str | None = None,
        *,
        encoder: str | None = None,
        decoder: str | None = None,
        device: str = "auto",
        threads: int | None = None,
        pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = SAM_PIXEL_STD,
        **sam_options: Any,
    ) -> None:
        super().__init__(**sam_options)
        threads = optional_integer("threads", threads, lo=1)
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ConfigError(
                f"pixel_mean/pixel_std must be 3 numbers (std > 0), got {pixel_mean}, {pixel_std}"
            )
        self.model_path = model
        files = find_onnx_files(
            model,
            {"encoder": encoder, "decoder": decoder},
            who="segmenter 'sam_onnx'",
            needs="its ONNX files",
            hint=(
                "pass the directory holding an exported SAM encoder.onnx + decoder.onnx (or "
                "sam.onnx) with --segmenter-model DIR on the CLI or segmenter_options="
                "{'model': 'DIR'} in Python (or the files as encoder=PATH decoder=PATH)"
            ),
        )
        enc_path, dec_path = files["encoder"], files["decoder"]
        self.encoder_path, self.decoder_path = str(enc_path), str(dec_path)
        self.device = device
        self.threads = threads
        self.encoder = OnnxSamEncoder(enc_path, device, threads, pixel_mean, pixel_std)
        self.input_size = self.encoder.input_size
        self._decoder = _session(dec_path, device, threads)
        names = {i.name for i in self._decoder.get_inputs()}
        missing = [n for n in DECODER_INPUTS if n not in names]
        outputs = {o.name for o in self._decoder.get_outputs()}
        if missing or not {"masks", "iou_predictions"} <= outputs:
            raise ModelLoadError(
                f"SAM decoder {self.decoder_path!r} is not in the SAM ONNX export format: "
                f"inputs {sorted(names)} (need {list(DECODER_INPUTS)}), outputs {sorted(outputs)}"
            )
        coords = next(i for i in self._decoder.get_inputs() if i.name == "point_coords")
        self._batched_decoder = not (isinstance(coords.shape[0], int) and coords.shape[0] == 1)
        mask_input = next(i for i in self._decoder.get_inputs() if i.name == "mask_input")
        self._mask_input_shape = tuple(d if isinstance(d, int) else 256 for d in mask_input.shape)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "encoder": Path(self.encoder_path).name,
            "decoder": Path(self.decoder_path).name,
            **self._sam_settings(),
        }

    # -- encoder --------------------------------------------------------------------------------

    def _embed(self, image: np.ndarray) -> dict[str, Any]:
        return self.encoder.encode(image)

    # -- decoder --------------------------------------------------------------------------------

    def _decode(
        self,
        state: dict[str, Any],
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        multimask: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        coords, codes = _prompt_arrays(points, labels, boxes)  # (B, Q, 2) px, (B, Q)
        coords = coords * state["scale"]
        n = len(coords)
        if not self._batched_decoder:
            outs = [self._run_decoder(state, coords[i : i + 1], codes[i : i + 1]) for i in range(n)]
            logits = np.concatenate([o[0] for o in outs])
            iou = np.concatenate([o[1] for o in outs])
        else:
            logits, iou = self._run_decoder(state, coords, codes)
        return logits.astype(np.float32, copy=False), iou.astype(np.float32, copy=False)

    def _run_decoder(
        self, state: dict[str, Any], coords: np.ndarray, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        b = len(coords)
        feeds = {
            "image_embeddings": state["embedding"],
            "point_coords": coords.astype(np.float32),
            "point_labels": codes.astype(np.float32),
            "mask_input": np.zeros((b, *self._mask_input_shape[1:]), dtype=np.float32),
            "has_mask_input": np.zeros(b if self._batched_decoder else 1, dtype=np.float32),
            "orig_im_size": np.asarray(state["size"], dtype=np.float32),
        }
        masks, iou = self._decoder.run(["masks", "iou_predictions"], feeds)
        return masks, iou  # (b, K, H, W), (b, K)


class OnnxSamEncoder:
    """A SAM image encoder ONNX session with SAM's preprocessing; it remembers the embeddings of
    the last ``cache_size`` images (8, a CUDA ingest batch), keyed by shape and a hash of the
    pixel bytes (so a mutated array is never confused with another), which lets a
    ``sam_features`` embedder reuse the pass a ``sam_onnx`` segmenter made of the same image.

    :meth:`encode` returns ``{"embedding": (1, C, h, w) float32, "size": (H, W) of the image,
    "scale": (2,) float32 XY factor from image pixels to the S x S input frame}``.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = SAM_PIXEL_STD,
        cache_size: int = 8,
    ) -> None:
        self.path = str(path)
        self.pixel_mean = np.asarray(pixel_mean, dtype=np.float32)
        self.pixel_std = np.asarray(pixel_std, dtype=np.float32)
        self._session = _session(Path(path), device, threads)
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(
                f"SAM encoder {self.path!r} must take one (1, 3, S, S) image input, got "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        self._input = inputs[0].name
        side = inputs[0].shape[-1]
        self.input_size = int(side) if isinstance(side, int) else 1024
        output = self._session.get_outputs()[0]
        self._output = output.name
        channels = output.shape[1] if len(output.shape) == 4 else None
        self.channels = int(channels) if isinstance(channels, int) else None
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0  # encoder passes made, for tests

    def encode(self, image: np.ndarray) -> dict[str, Any]:
        """The embedding of an ``HxWx3`` uint8 RGB image (from the cache when it was just made)."""
        key = (
            image.shape,
            hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest(),
        )
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        state = self._run(image)
        with self._lock:
            self._cache[key] = state
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return state

    def _run(self, image: np.ndarray) -> dict[str, Any]:
        from PIL import Image

        height, width = image.shape[:2]
        new_h, new_w = resized_shape(height, width, self.input_size)
        resized = np.asarray(
            Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
        x = np.zeros((1, 3, self.input_size, self.input_size), dtype=np.float32)
        x[0, :, :new_h, :new_w] = ((resized - self.pixel_mean) / self.pixel_std).transpose(2, 0, 1)
        (embedding,) = self._session.run([self._output], {self._input: x})
        self.runs += 1
        return {
            "embedding": embedding,
            "size": (height, width),
            "scale": np.array([new_w / width, new_h / height], dtype=np.float32),
        }


def resized_shape(height: int, width: int, longest: int) -> tuple[int, int]:
    """``(new_h, new_w)`` with the longest side ``longest`` (SAM's ResizeLongestSide)."""
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _prompt_arrays(
    points: np.ndarray | None, labels: np.ndarray | None, boxes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """SAM ONNX prompt encoding: ``(B, Q, 2)`` XY pixels and ``(B, Q)`` labels; box corners get
    labels 2/3, and without a box a padding point (label -1) is appended."""
    parts_xy: list[np.ndarray] = []
    parts_lab: list[np.ndarray] = []
    n = len(boxes) if boxes is not None else len(points)  # type: ignore[arg-type]  # boxes or points
    if points is not None:
        pts = np.broadcast_to(points, (n, *points.shape[1:]))
        parts_xy.append(pts)
        parts_lab.append(np.broadcast_to(labels, (n, points.shape[1])).astype(np.float32))  # type: ignore[arg-type]  # labels come with points
    if boxes is not None:
        parts_xy.append(boxes.reshape(n, 2, 2))
        parts_lab.append(
            np.tile(np.array([[LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]], np.float32), (n, 1))
        )
    else:
        parts_xy.append(np.zeros((n, 1, 2), dtype=np.float32))
        parts_lab.append(np.full((n, 1), _PADDING_LABEL, dtype=np.float32))
    return (
        np.concatenate(parts_xy, axis=1).astype(np.float32),
        np.concatenate(parts_lab, axis=1).astype(np.float32),
    )


def find_onnx_files(
    model: str | None,
    given: dict[str, str | None],
    *,
    who: str,
    needs: str,
    hint: str,
) -> dict[str, Path]:
    """The SAM ONNX files a backend runs: each part of ``given`` (``"encoder"``,
    ``"decoder"``) is its explicit path when not ``None``, else the first of the part's
    :data:`ONNX_NAMES` found in the directory ``model``.

    who, needs, hint: the backend (``"embedder 'sam_features'"``), what it needs (``"a SAM
    ONNX image encoder"``) and how to pass it, for the messages.

    Raises:
        ModelLoadError: no directory and a part not given, the directory missing (or a
            file), a part not found in it, or a given file missing.
    """
    if model is None and any(path is None for path in given.values()):
        raise ModelLoadError(f"{who} needs {needs}: {hint}")
    root = None if model is None else Path(model).expanduser()
    if root is not None and not root.is_dir():
        raise ModelLoadError(
            f"SAM ONNX model directory {model!r} "
            f"{'is a file' if root.exists() else 'does not exist'}; {hint}"
        )
    found: dict[str, Path] = {}
    for part, path in given.items():
        if path is not None:
            found[part] = Path(local_file(path, f"SAM ONNX {part}", part))
            continue
        names = ONNX_NAMES[part]
        hit = (
            None if root is None else next((root / n for n in names if (root / n).is_file()), None)
        )
        if hit is None:
            raise ModelLoadError(
                f"no SAM ONNX {part} in {model!r} (looked for {', '.join(names)}); {hint}"
            )
        found[part] = hit
    return found


def _session(path: Path, device: str, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelLoadError(
            "segmenter 'sam_onnx' needs onnxruntime: pip install 'segindex[onnx]'"
        ) from exc
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]' for ONNX, got {device!r}")
    providers: list[Any] = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
    elif device.startswith("cuda"):
        raise ConfigError(f"device {device!r} requested but onnxruntime has no CUDA provider")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...) types
        raise ModelLoadError(f"could not load ONNX model {str(path)!r}: {exc}") from exc


__all__ = ["OnnxSamEncoder", "SamOnnxSegmenter", "resized_shape"]
