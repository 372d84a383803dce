"""What an ingest reports: per-batch progress snapshots, the final report, per-stage timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

STAGES = ("hash", "decode", "segment", "crop", "embed", "track", "write")


@dataclass
class IngestProgress:
    """Snapshot passed to progress callbacks after each batch (and each chunk of a video).

    ``total``/``done`` count files (a video is one, done when complete); ``frames`` counts the
    sampled video frames processed so far, ``current`` names the video being ingested."""

    total: int
    done: int
    skipped: int
    failed: int
    regions: int
    elapsed: float
    frames: int = 0
    current: str | None = None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class IngestReport:
    """What an ingest did. ``failures`` are ``(path, reason)``; ``stage_seconds`` per stage."""

    seen: int = 0
    indexed: int = 0
    skipped: int = 0
    relinked: int = 0  # moved files re-linked to their indexed image by sha256, no model run
    failures: list[tuple[str, str]] = field(default_factory=list)
    regions: int = 0
    videos: int = 0  # of ``indexed``: videos completed
    frames: int = 0  # sampled video frames processed (segmented, embedded, tracked, stored)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "seen": self.seen,
            "indexed": self.indexed,
            "skipped": self.skipped,
            "relinked": self.relinked,
            "failed": self.failed,
            "failures": [{"path": p, "reason": r} for p, r in self.failures],
            "regions": self.regions,
            "seconds": round(self.seconds, 4),
            "images_per_second": round(self.images_per_second, 4),
            "videos": self.videos,
            "frames": self.frames,
            "frames_per_second": round(self.frames_per_second, 4),
            "stage_seconds": {k: round(v, 4) for k, v in self.stage_seconds.items()},
        }


class StageTimer:
    """``with timer("segment"): ...`` adds the block's wall time to ``report.stage_seconds``."""

    def __init__(self, report: IngestReport) -> None:
        self.report = report

    def __call__(self, stage: str) -> _Stage:
        return _Stage(self.report, stage)


class _Stage:
    def __init__(self, report: IngestReport, stage: str) -> None:
        self.report, self.stage = report, stage

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.stage_seconds[self.stage] += time.perf_counter() - self.t0
