"""Report of a tracking evaluation: ``result.json`` and ``report.md`` (tables: summary, per
tracker, per video, per object)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segindex.eval.report import format_value, markdown_table

HEADLINE = ["J&F", "J", "F", "HOTA", "DetA", "AssA", "LocA", "IDF1", "IDP", "IDR",
            "ID switches", "MOTA"]  # fmt: skip


def write_tracking_report(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``result.json`` and ``report.md`` into ``out_dir``; returns the two files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "result.json", out / "report.md"]
    files[0].write_text(json.dumps(result, indent=2))
    files[1].write_text(markdown(result))
    return files


def markdown(result: dict[str, Any]) -> str:
    """The Markdown report of an :func:`evaluate_tracking` or :func:`compare_trackers` result."""
    lines = ["# segindex tracking evaluation", ""]
    c = result["counts"]
    lines += [f"{c['videos']} videos, {c['frames']} annotated frames, {c['gt_tracks']} "
              "ground-truth tracks.", ""]  # fmt: skip
    runs = result.get("trackers")
    if runs is None:
        runs = {"prediction": result}
    else:
        o = result["options"]
        lines += [f"Trackers run on the ground-truth masks of every frame (shuffled, each "
                  f"region dropped with probability {o['drop']}, its mask grown or shrunk by "
                  f"a pixel with probability {o['noise']}; every {o['every']}. frame, "
                  f"seed {o['seed']}), with colour vectors.", ""]  # fmt: skip
    rows = [{"tracker": name, **r["summary"], "pred tracks": r["counts"]["pred_tracks"]}
            for name, r in runs.items()]  # fmt: skip
    lines += markdown_table("Summary", rows, ["tracker", *HEADLINE, "pred tracks"])
    for name, r in runs.items():
        cols = ["video_id", "file_name", "frames", "gt_tracks", "pred_tracks", "HOTA", "IDF1",
                "ID switches", "MOTA"]  # fmt: skip
        lines += markdown_table(f"{name}: per video", r["per_video"], cols)
        cols = ["video_id", "gt_id", "category", "frames", "pred_track", "J", "F", "J&F"]
        lines += markdown_table(f"{name}: per object (DAVIS)", r["per_object"], cols)
    threshold = format_value(next(iter(runs.values()))["options"]["threshold"])
    lines += [f"Thresholds: a detection match needs IoU >= {threshold} for ID switches, MOTA "
              "and IDF1; HOTA averages IoU thresholds 0.05 ... 0.95.", ""]  # fmt: skip
    return "\n".join(lines)
