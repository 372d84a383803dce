"""Evaluation commands: ``segindex eval segmentation | retrieval | scenes | tracking |
make-set``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from segindex.cli.common import device_option, friendly, index_option, json_option

_gt_option = click.option(
    "--gt",
    "gt_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Ground truth: COCO instance JSON, or COCO panoptic JSON (PNGs beside it).",
)
_images_root_option = click.option(
    "--images-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder the COCO file_name entries are relative to (else matched by path tail).",
)
_out_option = click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write result.json, report.md and PNG plots into this folder.",
)


@click.group(name="eval")
def eval_group() -> None:
    """Measure quality: segmentation metrics, retrieval metrics, evaluation sets."""


@eval_group.command()
@click.option(
    "--pred",
    "pred_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Predictions: an index directory, or a COCO instance/panoptic JSON file.",
)
@_gt_option
@_images_root_option
@click.option("--class-agnostic", is_flag=True, help="Ignore classes (one 'object' class).")
@_out_option
@json_option
@friendly
def segmentation(
    pred_path: Path,
    gt_path: Path,
    images_root: Path | None,
    class_agnostic: bool,
    out: Path | None,
    as_json: bool,
) -> None:
    """IoU, Dice, pixel accuracy, boundary F / Boundary IoU and PQ of --pred against --gt."""
    from segindex.eval.segmentation import SegmentationOptions, evaluate_segmentation
    from segindex.formats.coco import from_coco_dict, load_masks
    from segindex.index import MANIFEST, Index

    gt = load_masks(gt_path)
    if (pred_path / MANIFEST).exists():
        with Index.open(pred_path) as idx:
            pred = from_coco_dict(idx.export_coco(), source=str(pred_path))
    else:
        pred = load_masks(pred_path)
    opts = SegmentationOptions(
        class_agnostic=class_agnostic,
        images_root=str(images_root) if images_root else None,
    )
    result = evaluate_segmentation(pred, gt, opts)
    _finish(result, out, as_json, "segmentation")


@eval_group.command()
@index_option
@_gt_option
@_images_root_option
@click.option(
    "--template",
    "templates",
    multiple=True,
    help="Text query template (repeatable); default 'a photo of a {}.'.",
)
@click.option(
    "-k", "ks", type=int, multiple=True, help="Cut-offs for recall@k / nDCG@k (default 1 5 10)."
)
@click.option("--no-image-queries", is_flag=True, help="Skip image->region queries.")
@click.option(
    "--ignore-class",
    "ignore_classes",
    multiple=True,
    help="Class never queried (its regions are irrelevant results); repeatable; default "
    "'distractor' (the make-set distractors).",
)
@_out_option
@device_option
@json_option
@friendly
def retrieval(
    index_path: Path,
    gt_path: Path,
    images_root: Path | None,
    templates: tuple[str, ...],
    ks: tuple[int, ...],
    no_image_queries: bool,
    ignore_classes: tuple[str, ...],
    out: Path | None,
    device: str,
    precision: str,
    as_json: bool,
) -> None:
    """Text->region and image->region (by class and by source instance) recall@k, mAP, nDCG,
    with the chance mAP of a random ranking; whole-image vs region; ANN recall."""
    from segindex.config import RuntimeOptions
    from segindex.errors import ConfigError
    from segindex.eval.retrieval import RetrievalOptions, evaluate_retrieval
    from segindex.formats.coco import load_masks
    from segindex.index import Index

    if any(k < 1 for k in ks):
        raise ConfigError(f"-k values must be >= 1, got {list(ks)}")
    for t in templates:
        if "{}" not in t:
            raise ConfigError(f"template must contain '{{}}' for the class name, got {t!r}")
    opts = RetrievalOptions(
        templates=templates or RetrievalOptions().templates,
        ks=ks or RetrievalOptions().ks,
        images_root=str(images_root) if images_root else None,
        image_queries=not no_image_queries,
        ignore_classes=ignore_classes or RetrievalOptions().ignore_classes,
    )
    gt = load_masks(gt_path)
    with Index.open(index_path, runtime=RuntimeOptions(device=device, precision=precision)) as idx:
        result = evaluate_retrieval(idx, gt, opts)
    _finish(result, out, as_json, "retrieval")


@eval_group.command()
@click.argument("scene_set", metavar="SET", type=click.Path(path_type=Path))
@index_option
@click.option(
    "-k", "ks", type=int, multiple=True, help="Cut-offs of precision@k / recall@k (default 1 5 10)."
)
@click.option(
    "--min-similarity",
    type=float,
    default=None,
    help="Similarity every object term of the compositional queries needs (written as "
    "word~VALUE) [default: the executor's].",
)
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(["scenes", "whole_image", "first_region"]),
    help="Rank images this way (repeatable) [default: all three].",
)
@click.option(
    "--terms",
    type=click.Choice(["text", "exemplar"]),
    default="text",
    show_default=True,
    help="Object terms as the query texts, or as image exemplars of each colour (for embedders "
    "without text, e.g. sam_features).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write result.json and report.md into this folder.",
)
@device_option
@json_option
@friendly
def scenes(
    scene_set: Path,
    index_path: Path,
    ks: tuple[int, ...],
    min_similarity: float | None,
    methods: tuple[str, ...],
    terms: str,
    out: Path | None,
    device: str,
    precision: str,
    as_json: bool,
) -> None:
    """Compositional queries of SET (from `make-set --compositional`): mAP, precision@k and
    recall@k per query type of segindex's scene search, of the same text against whole-image
    vectors, and of single-region search for the first object term, beside chance."""
    from segindex.config import RuntimeOptions
    from segindex.errors import ConfigError
    from segindex.eval.makeset_scenes import load_scene_set
    from segindex.eval.scenes import METHODS, SceneEvalOptions, evaluate_scenes, markdown
    from segindex.index import Index

    if any(k < 1 for k in ks):
        raise ConfigError(f"-k values must be >= 1, got {list(ks)}")
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise ConfigError(f"--min-similarity must be in [-1, 1], got {min_similarity}")
    data = load_scene_set(scene_set)
    opts = SceneEvalOptions(
        ks=ks or SceneEvalOptions().ks,
        min_similarity=min_similarity,
        methods=tuple(dict.fromkeys(methods)) or METHODS,
        terms=terms,
    )
    with Index.open(index_path, runtime=RuntimeOptions(device=device, precision=precision)) as idx:
        result = evaluate_scenes(idx, data, opts)
    if out is not None:
        from segindex.eval.scenes import write_scene_report

        write_scene_report(result, out)
    if as_json:
        click.echo(json.dumps({k: result[k] for k in ("summary", "images", "per_type")}, indent=2))
        return
    click.echo(markdown(result))


@eval_group.command("make-set")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--n", "n", type=int, default=50, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--size",
    default=None,
    help="Image size as HEIGHTxWIDTH pixels [default: 256x320; with --video 120x160; with "
    "--compositional 128x160].",
)
@click.option("--max-objects", type=int, default=4, show_default=True, help="Objects per image.")
@click.option(
    "--max-distractors",
    type=int,
    default=2,
    show_default=True,
    help="Distractor patches per image (class 'distractor', never queried).",
)
@click.option(
    "--video", is_flag=True, help="Write clips of moving cut-outs + YouTube-VIS GT instead."
)
@click.option("--fps", type=int, default=10, show_default=True, help="Frame rate of --video clips.")
@click.option(
    "--compositional",
    is_flag=True,
    help="Write colour-shape composites, per-paste GT and scene queries with their exact "
    "relevant images instead (for `eval scenes`); with --video, clips of coloured squares "
    "(64x96, 4 fps, 8 s) and queries over time (WITH, DURING, THEN).",
)
@click.option(
    "--queries-per-type",
    type=int,
    default=6,
    show_default=True,
    help="With --compositional: queries of each type (relations, counts, AND/OR/AND NOT).",
)
@json_option
@friendly
def make_set(
    out: Path,
    n: int,
    seed: int,
    size: str | None,
    max_objects: int,
    max_distractors: int,
    video: bool,
    fps: int,
    compositional: bool,
    queries_per_type: int,
    as_json: bool,
) -> None:
    """Write a seeded copy-paste evaluation set (images + COCO panoptic and instance GT) to OUT;
    with --video, seeded clips (FFV1 .mkv) and their YouTube-VIS ground truth; with
    --compositional, colour-shape composites (and --video: clips) and scene queries
    (scenes.json) for `eval scenes`."""
    from segindex.errors import ConfigError

    size = size or ("120x160" if video else "128x160" if compositional else "256x320")
    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be HEIGHTxWIDTH, e.g. 256x320, got {size!r}") from None
    if h < 32 or w < 32 or max_objects < 1:
        raise ConfigError(f"--size must be at least 32x32 and --max-objects >= 1, got {size!r}")
    if max_distractors < 0:
        raise ConfigError(f"--max-distractors must be >= 0, got {max_distractors}")
    info: dict[str, Any]
    if compositional and video:
        from segindex.eval.makeset_scenes_video import make_video_scene_set

        info = make_video_scene_set(out, n=n, seed=seed, per_type=queries_per_type)
        types = ", ".join(f"{k} {v}" for k, v in info["query_types"].items())
        lines = [
            f"wrote {info['videos']} clips, {info['tracks']} tracks, {info['queries']} "
            f"queries ({types}) to {out}",
            f"  YouTube-VIS GT:  {info['gt']}",
            f"  queries:         {info['scenes']}",
        ]
    elif compositional:
        from segindex.eval.makeset_scenes import make_scene_set

        info = make_scene_set(out, n=n, seed=seed, size=(h, w), per_type=queries_per_type)
        types = ", ".join(f"{k} {v}" for k, v in info["query_types"].items())
        lines = [
            f"wrote {info['images']} images, {info['pastes']} pastes, {info['queries']} "
            f"queries ({types}) to {out}",
            f"  instance GT:  {info['instances']}",
            f"  queries:      {info['scenes']}",
        ]
    elif video:
        from segindex.eval.makeset_video import make_video_set

        info = make_video_set(out, n=n, seed=seed, size=(h, w), fps=fps)
        per = ", ".join(f"{k} {v}" for k, v in info["scenarios"].items())
        lines = [
            f"wrote {info['videos']} clips, {info['frames']} frames, {info['tracks']} "
            f"tracks ({per}) to {out}",
            f"  YouTube-VIS GT:  {info['gt']}",
        ]
    else:
        from segindex.eval.makeset import make_set as make

        info = make(
            out,
            n=n,
            seed=seed,
            size=(h, w),
            max_objects=max_objects,
            max_distractors=max_distractors,
        )
        per = ", ".join(f"{k} {v}" for k, v in sorted(info["per_class"].items()))
        sources = ", ".join(f"{k} {v}" for k, v in info["instances_per_class"].items())
        lines = [
            f"wrote {info['images']} images, {info['segments']} segments ({per}) to {out}",
            f"  source instances:  {sources}",
            f"  panoptic GT:  {info['panoptic']}",
            f"  instance GT:  {info['instances']}",
            f"  images root:  {info['images_root']}",
        ]
    click.echo(json.dumps(info, indent=2) if as_json else "\n".join(lines))


@eval_group.command()
@click.option(
    "--gt",
    "gt_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Ground truth: YouTube-VIS JSON (e.g. from make-set --video).",
)
@click.option(
    "--pred",
    "pred_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Predicted tracks: YouTube-VIS JSON (dataset or results list).",
)
@click.option(
    "--clips",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the GT's clips: run --trackers on the GT masks instead of reading --pred.",
)
@click.option(
    "--videos-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder the GT videos' file_name entries are relative to, to match --pred videos by "
    "file [default: the GT file's folder].",
)
@click.option(
    "--trackers", default="iou,none", show_default=True, help="Trackers to compare (--clips)."
)
@click.option(
    "--tracker-option",
    "tracker_option",
    multiple=True,
    metavar="NAME:KEY=VALUE",
    help="Option of one of --trackers, e.g. sam2:model=./sam2-tiny (repeatable).",
)
@click.option(
    "--drop",
    type=float,
    default=0.1,
    show_default=True,
    help="With --clips: chance that a region is left out of a frame.",
)
@click.option(
    "--noise",
    type=float,
    default=0.3,
    show_default=True,
    help="With --clips: chance that a region's mask is grown or shrunk by a pixel.",
)
@click.option("--every", type=int, default=1, show_default=True, help="Use every n-th frame.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of shuffle and drop.")
@click.option(
    "--threshold", type=float, default=0.5, show_default=True, help="IoU of a detection match."
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write result.json and report.md into this folder.",
)
@json_option
@friendly
def tracking(
    gt_path: Path,
    pred_path: Path | None,
    clips: Path | None,
    videos_root: Path | None,
    trackers: str,
    tracker_option: tuple[str, ...],
    drop: float,
    noise: float,
    every: int,
    seed: int,
    threshold: float,
    out: Path | None,
    as_json: bool,
) -> None:
    """Video tracking quality: DAVIS J, F, J&F per object, HOTA, IDF1 and ID switches; --pred
    tracks (e.g. `export --format youtube-vis` of an index: videos matched by file, scored on
    the frames it sampled) against --gt, or --trackers run on the GT masks of the clips in
    --clips."""
    from segindex.errors import ConfigError
    from segindex.eval.tracking import (
        GivenMasksOptions,
        align_to_gt,
        compare_trackers,
        evaluate_tracking,
    )
    from segindex.eval.tracking_report import HEADLINE, write_tracking_report
    from segindex.formats.youtube_vis import load_youtube_vis

    if (pred_path is None) == (clips is None):
        raise ConfigError("give exactly one of --pred (tracks to score) or --clips (run trackers)")
    if not 0 < threshold <= 1:
        raise ConfigError(f"--threshold must be in (0, 1], got {threshold}")
    gt = load_youtube_vis(gt_path)
    if clips is not None:
        names = [t.strip() for t in trackers.split(",") if t.strip()]
        if not names:
            raise ConfigError("--trackers names no tracker")
        opts = GivenMasksOptions(drop=drop, noise=noise, seed=seed, every=every)
        per_tracker = _tracker_options(tracker_option, names)
        result = compare_trackers(gt, clips, names, opts, per_tracker, threshold=threshold)
        runs = result["trackers"]
    else:
        pred = load_youtube_vis(pred_path, like=gt)  # type: ignore[arg-type]  # given: clips is not
        pred, gt = align_to_gt(pred, gt, videos_root or gt_path.parent)
        result = evaluate_tracking(pred, gt, threshold=threshold)
        runs = {"prediction": result}
    files = write_tracking_report(result, out) if out is not None else []
    if as_json:
        click.echo(json.dumps({n: r["summary"] for n, r in runs.items()}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from segindex.eval.report import format_value

    table = Table(title="tracking evaluation")
    table.add_column("metric")
    for name in runs:
        table.add_column(name, justify="right")
    for metric in HEADLINE:
        table.add_row(metric, *(format_value(r["summary"][metric]) for r in runs.values()))
    console = Console()
    if not console.is_terminal:
        console = Console(width=100)
    console.print(table)
    c = result["counts"]
    click.echo(f"{c['videos']} videos, {c['frames']} frames, {c['gt_tracks']} GT tracks")
    if files:
        click.echo(f"report: {files[1]} ({files[0].name})")


def _finish(result: dict[str, Any], out: Path | None, as_json: bool, kind: str) -> None:
    files = []
    if out is not None:
        from segindex.eval.report import write_report

        files = write_report(result, out)
    if as_json:
        click.echo(json.dumps(result["summary"] | {"images": result["images"]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from segindex.eval.report import summary_rows

    table = Table(title=f"{kind} evaluation")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary_rows(result):
        table.add_row(name, value)
    console = Console()
    if not console.is_terminal:
        console = Console(width=100)
    console.print(table)
    click.echo("images: " + ", ".join(f"{k} {v}" for k, v in result["images"].items()))
    if files:
        click.echo(f"report: {files[1]} (+ {len(files) - 2} plots, {files[0].name})")


COMMANDS = [eval_group]


def _tracker_options(pairs: tuple[str, ...], names: list[str]) -> dict[str, dict[str, Any]]:
    """``NAME:KEY=VALUE`` pairs -> ``{name: {key: value}}`` for trackers in ``names``."""
    from segindex.cli.common import parse_options

    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        name, sep, rest = pair.partition(":")
        if not sep or name not in names:
            raise click.BadParameter(
                f"expected NAME:KEY=VALUE with NAME one of --trackers ({', '.join(names)}), "
                f"got {pair!r}",
                param_hint="--tracker-option",
            )
        out.setdefault(name, {}).update(parse_options((rest,)))
    return out
