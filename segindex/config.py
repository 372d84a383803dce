"""Typed configuration objects. Passed in explicitly; there are no module-level settings."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from segindex.device import check_precision
from segindex.errors import ConfigError
from segindex.runtime import check_runtime
from segindex.validate import integer, number, optional_integer

DEFAULT_SEGMENTER = "panoptic"
DEFAULT_SEGMENTER_MODEL = "facebook/mask2former-swin-tiny-coco-panoptic"
DEFAULT_EMBEDDER = "open_clip"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_TRACKER = "iou"

Background = Literal["keep", "mean", "blur"]


@dataclass(frozen=True)
class BackendSpec:
    """A backend by registry name plus the keyword options its builder takes."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackendSpec:
        return cls(name=str(d["name"]), options=dict(d.get("options") or {}))


def default_segmenter() -> BackendSpec:
    return BackendSpec(DEFAULT_SEGMENTER, {"model": DEFAULT_SEGMENTER_MODEL})


def default_embedder() -> BackendSpec:
    return BackendSpec(
        DEFAULT_EMBEDDER, {"model": DEFAULT_CLIP_MODEL, "pretrained": DEFAULT_CLIP_PRETRAINED}
    )


@dataclass(frozen=True)
class CropPolicy:
    """How a mask becomes the picture the embedder sees.

    margin:         context added around the mask's box on each side, as a fraction of the box's
                    width/height (0.1 = 10 %), clipped to the image.
    background:     pixels inside the crop but outside the mask: ``keep`` them, fill with the
                    region's ``mean`` colour, or ``blur`` them (Gaussian, ``blur_radius`` px).
    min_area_px:    regions with fewer mask pixels are dropped...
    min_area_frac:  ...and so are regions smaller than this fraction of the image.
    square:         pad the crop to a square (with the fill colour) before the embedder's own
                    resize/centre-crop, so nothing of the object is cut away.
    whole_image:    also index the whole image as one region (kind ``image``).
    """

    margin: float = 0.1
    background: Background = "mean"
    blur_radius: float = 12.0
    min_area_px: int = 64
    min_area_frac: float = 0.0005
    square: bool = True
    whole_image: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 2.0:
            raise ConfigError(f"crop margin must be in [0, 2], got {self.margin}")
        if self.background not in ("keep", "mean", "blur"):
            raise ConfigError(
                f"crop background must be 'keep', 'mean' or 'blur', got {self.background!r}"
            )
        if self.blur_radius <= 0:
            raise ConfigError(f"blur_radius must be > 0, got {self.blur_radius}")
        if self.min_area_px < 0 or not 0.0 <= self.min_area_frac < 1.0:
            raise ConfigError(
                f"min_area_px must be >= 0 and min_area_frac in [0, 1), got "
                f"{self.min_area_px}, {self.min_area_frac}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropPolicy:
        return cls(**d)


@dataclass(frozen=True)
class LabelPolicy:
    """Open-vocabulary names for class-agnostic regions (``label_id == -1``, e.g. SAM's masks).

    At ingest each such region's crop vector is compared with CLIP text vectors of a vocabulary
    (zero-shot classification); the best name becomes its label, its softmax probability its
    score, and its position in the vocabulary its ``label_id``.

    enabled:        name class-agnostic regions at all.
    vocabulary:     class names; ``None`` means the 133 COCO-panoptic names in their label-id
                    order (so ids and names match the panoptic segmenter's).
    extra:          names appended to the vocabulary (ids continue after it).
    min_confidence: below this probability a region keeps label ``object`` / id -1.
    temperature:    logit scale of the softmax (CLIP's is 100).
    """

    enabled: bool = True
    vocabulary: tuple[str, ...] | None = None
    extra: tuple[str, ...] = ()
    min_confidence: float = 0.0
    temperature: float = 100.0

    def __post_init__(self) -> None:
        for name in ("vocabulary", "extra"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(
                    f"label {name} must be a sequence of non-empty names, got {value!r}"
                )
            object.__setattr__(self, name, tuple(value))
        if self.vocabulary is not None and not self.vocabulary and not self.extra:
            raise ConfigError("label vocabulary is empty")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"label min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.temperature <= 0:
            raise ConfigError(f"label temperature must be > 0, got {self.temperature}")

    def names(self) -> tuple[str, ...]:
        """The full vocabulary: ``vocabulary`` (or COCO panoptic) then ``extra``."""
        if self.vocabulary is None:
            from segindex.data.coco_panoptic import COCO_PANOPTIC_CATEGORIES

            base = tuple(c["name"] for c in COCO_PANOPTIC_CATEGORIES)
        else:
            base = self.vocabulary
        return base + tuple(e for e in self.extra if e not in base)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocabulary"] = None if self.vocabulary is None else list(self.vocabulary)
        d["extra"] = list(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelPolicy:
        d = dict(d)
        if d.get("vocabulary") is not None:
            d["vocabulary"] = tuple(d["vocabulary"])
        d["extra"] = tuple(d.get("extra") or ())
        return cls(**d)


def default_tracker() -> BackendSpec:
    return BackendSpec(DEFAULT_TRACKER)


@dataclass(frozen=True)
class VideoOptions:
    """How videos are sampled and tracked; stored with the index (``settings["video"]``).

    fps:              sample at most this many frames per second of presentation time: the first
                      decoded frame of each ``1/fps`` slot of the timeline is kept (2.0).
    keyframes_only:   decode key frames only (PyAV ``skip_frame="NONKEY"``, the fastest); the
                      ``fps`` limit still applies to them (False).
    dedup_threshold:  skip a sample whose 32x32 grey thumbnail differs from the last *kept*
                      sample's by less than this mean absolute difference in grey levels (0-255),
                      so a static shot costs no model time; 0 keeps every sample (2.0).
    max_frames:       at most this many sampled frames per video; ``None``: no limit.
    chunk:            sampled frames per SQL transaction: a crash loses at most one chunk and
                      the next ingest resumes the video after the last committed frame (30).
    tracker:          the tracker by registry name (``segindex.track.TRACKERS``) and options
                      (``iou``).
    """

    fps: float = 2.0
    keyframes_only: bool = False
    dedup_threshold: float = 2.0
    max_frames: int | None = None
    chunk: int = 30
    tracker: BackendSpec = field(default_factory=default_tracker)

    def __post_init__(self) -> None:
        fps = number("video fps", self.fps, lo=0, hi=1000, lo_open=True)
        dedup = number("video dedup_threshold (grey levels)", self.dedup_threshold, lo=0, hi=255)
        optional_integer("max_frames", self.max_frames, lo=1)
        integer("video chunk", self.chunk, lo=1)
        if not isinstance(self.tracker, BackendSpec):
            raise ConfigError(f"tracker must be a BackendSpec, got {self.tracker!r}")
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "dedup_threshold", dedup)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fps": self.fps,
            "keyframes_only": self.keyframes_only,
            "dedup_threshold": self.dedup_threshold,
            "max_frames": self.max_frames,
            "chunk": self.chunk,
            "tracker": self.tracker.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VideoOptions:
        d = dict(d)
        d["tracker"] = BackendSpec.from_dict(d["tracker"]) if "tracker" in d else default_tracker()
        return cls(**d)


@dataclass(frozen=True)
class IndexSettings:
    """What an index is made of; stored in the index and checked when it is reopened."""

    segmenter: BackendSpec = field(default_factory=default_segmenter)
    embedder: BackendSpec = field(default_factory=default_embedder)
    crop: CropPolicy = field(default_factory=CropPolicy)
    labels: LabelPolicy = field(default_factory=LabelPolicy)
    video: VideoOptions = field(default_factory=VideoOptions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "segmenter": self.segmenter.to_dict(),
            "embedder": self.embedder.to_dict(),
            "crop": self.crop.to_dict(),
            "labels": self.labels.to_dict(),
            "video": self.video.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexSettings:
        return cls(
            segmenter=BackendSpec.from_dict(d["segmenter"]),
            embedder=BackendSpec.from_dict(d["embedder"]),
            crop=CropPolicy.from_dict(d["crop"]),
            # settings stored before labels existed get the default policy
            labels=LabelPolicy.from_dict(d["labels"]) if "labels" in d else LabelPolicy(),
            # ... and settings stored before videos existed the default video options
            video=VideoOptions.from_dict(d["video"]) if "video" in d else VideoOptions(),
        )


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run (not stored with the index): device, precision, batch sizes and decode
    parallelism.

    device:         ``auto`` (CUDA when present), ``cpu``, ``cuda[:N]`` or ``mps``.
    precision:      ``auto``, ``fp32``, ``fp16`` or ``bf16`` for the torch backends (see
                    :mod:`segindex.device`; ``auto`` is bf16/fp16 on CUDA, fp32 elsewhere).
                    With a compiled runtime: its precision hint (``fp32`` or ``bf16``).
    runtime:        what runs the segmenter's and embedder's networks (backends that take a
                    ``runtime``: the panoptic segmenter, open_clip): ``torch``, ``openvino``
                    (exported once, compiled for this CPU) or ``auto``: OpenVINO on a CPU when it
                    is installed, else torch (:mod:`segindex.runtime`, docs/runtimes.md).

    decode_workers: processes that decode the next batch of images while the current one is
                    segmented and embedded (at most one batch ahead, so memory stays flat);
                    0 decodes inline in the calling process, with no overlap; ``None`` (the
                    default) picks 1 when the machine has more than 2 CPUs, else 0: on 2 cores a
                    decode process competes with the models' threads (measured: end-to-end /
                    model time 1.31 with a worker, 1.05 without; benchmarks/RESULTS.md).
    """

    device: str = "auto"
    precision: str = "auto"
    segment_batch: int | None = None  # images per segmenter call; None: by device (batch_sizes)
    embed_batch: int | None = None  # crops per embedder call; None: by device (batch_sizes)
    commit_every: int = 16  # images per SQL transaction
    checkpoint_seconds: float = 30.0  # at most this long between FAISS file saves while ingesting
    max_pixels: int | None = 200_000_000  # larger images are recorded as failed, not decoded
    max_regions: int = 256  # per image: the highest-scoring (then largest) regions are kept
    decode_workers: int | None = None
    runtime: str = "auto"

    def __post_init__(self) -> None:
        for name in ("segment_batch", "embed_batch", "commit_every", "max_regions"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_precision(self.precision)
        check_runtime(self.runtime)
        if self.decode_workers is not None and self.decode_workers < 0:
            raise ConfigError(f"decode_workers must be >= 0, got {self.decode_workers}")

    def batch_sizes(self, segment_device: str, embed_device: str) -> tuple[int, int]:
        """``(segment batch, embed batch)`` for backends on these (resolved) devices: as set,
        else 2 images and 32 crops on CPU/MPS (CPU segmentation gains nothing from batching,
        measured in benchmarks/RESULTS.md), 8 images and 256 crops on CUDA, where batching is
        what keeps the GPU busy."""
        cuda_seg, cuda_emb = segment_device.startswith("cuda"), embed_device.startswith("cuda")
        return (
            self.segment_batch or (8 if cuda_seg else 2),
            self.embed_batch or (256 if cuda_emb else 32),
        )

    @property
    def decode_processes(self) -> int:
        """The number of decode worker processes to use (``decode_workers`` resolved)."""
        if self.decode_workers is not None:
            return self.decode_workers
        return 1 if (os.cpu_count() or 1) > 2 else 0
