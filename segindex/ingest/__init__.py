"""Ingest: files in, rows and vectors out.

plan.py          which files are new, changed, unchanged or moved (sha256 identity)
prefetch.py      decode (and the segmenter's resize/normalise) one batch ahead in worker processes
stages.py        segment, crop, embed, name: plain functions over one batch of pictures
batch.py         those stages composed over one batch (every engine and the video runner)
engine.py        who runs the images' batches: this process, or Ray (ray_engine.py, ray_worker.py)
runner.py        batching, timing, progress, one SQL transaction per batch; videos after images
video.py         the video source: PyAV stream decoding, frame index/time, rotation, sampling
video_runner.py  one video: sampled frames through the batch stages, tracked, chunked commits
report.py        IngestReport / IngestProgress
"""

from __future__ import annotations

from segindex.ingest.plan import plan, relink_moved
from segindex.ingest.prefetch import Decoded, decode_and_prepare, decode_one
from segindex.ingest.report import STAGES, IngestProgress, IngestReport
from segindex.ingest.runner import run_ingest
from segindex.ingest.stages import (
    Cropped,
    crop_stage,
    embed_stage,
    name_stage,
    segment_safely,
    top_regions,
    whole_image_region,
)

__all__ = [
    "STAGES",
    "Cropped",
    "Decoded",
    "IngestProgress",
    "IngestReport",
    "crop_stage",
    "decode_and_prepare",
    "decode_one",
    "embed_stage",
    "name_stage",
    "plan",
    "relink_moved",
    "run_ingest",
    "segment_safely",
    "top_regions",
    "whole_image_region",
]
