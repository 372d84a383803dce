"""Ingest: files in, rows and vectors out.

plan.py          which files are new, changed, unchanged or moved (sha256 identity)
prefetch.py      decode (and the segmenter's resize/normalise) one batch ahead in worker processes
stages.py        segment, crop, embed, name: plain functions over one batch of pictures
batch.py         those stages composed over one batch (ModelStages: every engine, every video)
job.py           what an engine is handed (ImageJob): store, models, report; commit one batch
engine.py        the engine contract and the registry of engines by name (entry points)
local_engine.py  the default engine: batches in this process, one SQL transaction per batch
ray_engine.py    the Ray engine (driver side); ray_worker.py its actors
runner.py        plan, then the engine's images and videos; progress and the report
video.py         the video source: PyAV stream decoding, frame index/time, rotation, sampling
video_runner.py  one video: sampled frames through the batch stages, tracked, chunked commits
frame_feed.py    the frames between samples, for trackers that propagate masks
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
