"""Reports of an evaluation result: ``result.json``, ``report.md`` and PNG plots (matplotlib, Agg).

Plots: segmentation -> ``per_class.png`` (IoU, Dice, PQ per class), ``scores.png`` (IoU of
matched segments and best IoU per ground-truth instance); retrieval -> ``pr_curve.png``
(text->region precision-recall per class), ``per_class.png`` (AP per class, text and image
queries), ``scores.png`` (similarities of relevant vs irrelevant results).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """``(metric, value)`` rows of a result's summary, values formatted to 4 decimals."""
    return [(k, format_value(v)) for k, v in result["summary"].items()]


def format_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def write_report(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the JSON, the Markdown report and the plots into ``out_dir``; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "result.json"]
    files[0].write_text(json.dumps(result, indent=2))
    plots = _plots(result, out)
    md = out / "report.md"
    md.write_text(_markdown(result, plots))
    return [*files, md, *plots]


def _markdown(result: dict[str, Any], plots: list[Path]) -> str:
    kind = result["kind"]
    lines = [f"# segindex {kind} evaluation", ""]
    lines += ["## Summary", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary_rows(result)]
    lines += ["", "Images: " + ", ".join(f"{k} {v}" for k, v in result["images"].items()), ""]
    if kind == "segmentation":
        lines += markdown_table(
            "Per class",
            result["per_class"],
            ["name", "isthing", "iou", "dice", "accuracy", "boundary_f", "boundary_iou",
             "pq", "sq", "rq", "tp", "fp", "fn", "best_iou"],
        )  # fmt: skip
        p = result["panoptic"]
        lines += [
            "## Panoptic quality",
            "",
            "| | PQ | SQ | RQ | classes |",
            "|---|---|---|---|---|",
        ]
        for part in ("all", "things", "stuff"):
            q = p[part]
            pq, sq, rq = (format_value(q[key]) for key in ("pq", "sq", "rq"))
            lines.append(f"| {part} | {pq} | {sq} | {rq} | {q['n']} |")
        lines.append("")
    else:
        r = result["regions"]
        lines += ["Regions: " + ", ".join(f"{k} {v}" for k, v in r.items()), ""]
        ks = result["options"]["ks"]
        cols = ["name", "n_relevant", "ap"] + [f"recall@{k}" for k in ks]
        cols += [f"ndcg@{k}" for k in ks]
        lines += markdown_table(
            "Text -> region, per class", result["text_to_region"]["per_class"], cols
        )
        if "text_skipped" in result:
            lines += [f"Text queries skipped: {result['text_skipped']}.", ""]
        cols = ["name", "queries", "ap", "chance"] + [f"recall@{k}" for k in ks]
        for key, title in (
            ("image_to_region", "Image -> region, per class"),
            ("instance_to_region", "Image -> region, same source instance, per class"),
        ):
            if key in result:
                lines += markdown_table(title, result[key]["per_class"], cols)
        cols = ["name", "n_relevant", "whole_ap", "region_ap"]
        cols += [f"{t}_recall@{k}" for k in ks for t in ("whole", "region")]
        title = "Finding images: whole-image vectors vs regions"
        lines += markdown_table(title, result["whole_vs_region"]["per_class"], cols)
        a = result["ann"]
        lines += ["## ANN vs exact", "",
                  f"Index kind {a['index_kind']}: recall@{a['k']} {format_value(a['recall'])} "
                  f"over {a['queries']} queries.", ""]  # fmt: skip
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def markdown_table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    out = [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(format_value(r.get(c)) for c in cols) + " |")
    return [*out, ""]


def _plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    files: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        files.append(out / name)

    if result["kind"] == "segmentation":
        rows = result["per_class"]
        names = [r["name"] for r in rows]
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4))
        _bars(ax, names, {m: [r[m] for r in rows] for m in ("iou", "dice", "pq")})
        ax.set_title("per class")
        save(fig, "per_class.png")
        d = result["distributions"]
        fig, ax = plt.subplots(figsize=(6, 4))
        bins = [i / 20 for i in range(21)]
        for key in ("best_iou", "matched_iou"):
            if d[key]:
                ax.hist(d[key], bins=bins, alpha=0.6, label=key.replace("_", " "))
        ax.set_xlabel("mask IoU")
        ax.set_ylabel("count")
        ax.legend()
        save(fig, "scores.png")
        return files
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, c in result["curves"]["text_pr"].items():
        if c["recall"]:
            ax.plot(c["recall"], c["precision"], label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("text -> region precision-recall")
    if ax.get_legend_handles_labels()[0]:  # no text curves without text queries
        ax.legend(fontsize="small")
    save(fig, "pr_curve.png")
    rows = result["text_to_region"]["per_class"]
    image_rows = result.get("image_to_region", {}).get("per_class", [])
    names = [r["name"] for r in rows] or [r["name"] for r in image_rows]
    text = {r["name"]: r["ap"] for r in rows}
    series = {"text AP": [text.get(n) for n in names]}
    if "image_to_region" in result:
        img = {r["name"]: r["ap"] for r in image_rows}
        series["image AP"] = [img.get(n) for n in names]
    wv = {r["name"]: r for r in result["whole_vs_region"]["per_class"]}
    series["whole-image AP"] = [wv[n]["whole_ap"] if n in wv else None for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) + 2), 4))
    _bars(ax, names, series)
    ax.set_title("AP per class")
    save(fig, "per_class.png")
    d = result["distributions"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("irrelevant", "relevant"):
        if d[key]:
            ax.hist(d[key], bins=40, alpha=0.6, density=True, label=key)
    ax.set_xlabel("cosine similarity to the text query")
    ax.set_ylabel("density")
    if ax.get_legend_handles_labels()[0]:  # no text scores without text queries
        ax.legend()
    save(fig, "scores.png")
    return files


def _bars(ax: Any, names: list[str], series: dict[str, list[float | None]]) -> None:
    import numpy as np

    x = np.arange(len(names))
    width = 0.8 / max(len(series), 1)
    for i, (label, vals) in enumerate(series.items()):
        ax.bar(x + i * width, [v if v is not None else 0.0 for v in vals], width, label=label)
    ax.set_xticks(x + width * (len(series) - 1) / 2)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small")
