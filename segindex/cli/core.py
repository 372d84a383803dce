"""Core commands: ``ingest``, ``info``, ``export``, ``backends`` (``search`` is in search.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from segindex.cli.common import (
    device_option,
    friendly,
    index_option,
    json_option,
    parse_options,
    runtime_option,
)
from segindex.cli.engine_options import engine_from, engine_options
from segindex.cli.video_options import video_changes, video_options

F = TypeVar("F", bound=Callable[..., Any])


def _model_options(fn: F) -> F:
    options = [
        click.option("--segmenter", default=None, help="Segmenter backend name (see `backends`)."),
        click.option(
            "--segmenter-model",
            default=None,
            help="Hub id or local directory of the segmentation model.",
        ),
        click.option(
            "--segmenter-option",
            multiple=True,
            metavar="KEY=VALUE",
            help="Extra segmenter option, e.g. resolution=512 (repeatable).",
        ),
        click.option("--embedder", default=None, help="Embedder backend name (see `backends`)."),
        click.option(
            "--clip-model",
            default=None,
            help="open_clip model name, hf-hub:ORG/REPO, or a local directory.",
        ),
        click.option(
            "--clip-pretrained",
            default=None,
            help="open_clip pretrained tag or a local checkpoint file.",
        ),
        click.option(
            "--embedder-option", multiple=True, metavar="KEY=VALUE", help="Extra embedder option."
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _backend_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    seg_opts = parse_options(kw.pop("segmenter_option"))
    if kw.get("segmenter_model"):
        seg_opts["model"] = kw["segmenter_model"]
    emb_opts = parse_options(kw.pop("embedder_option"))
    if kw.get("clip_model"):
        emb_opts["model"] = kw["clip_model"]
    if kw.get("clip_pretrained"):
        emb_opts["pretrained"] = kw["clip_pretrained"]
    return {
        "segmenter": kw.pop("segmenter"),
        "segmenter_options": seg_opts or None,
        "embedder": kw.pop("embedder"),
        "embedder_options": emb_opts or None,
    }


def open_index(
    index_path: Path, device: str, precision: str = "auto", runtime: str = "auto", **backend: Any
) -> Any:
    from segindex.config import RuntimeOptions
    from segindex.index import Index

    options = RuntimeOptions(device=device, precision=precision, runtime=runtime)
    return Index.open(index_path, runtime=options, **backend)


@click.command()
@click.argument("sources", nargs=-1, required=True)
@index_option
@_model_options
@click.option("--margin", type=float, default=None, help="Crop context margin (fraction of box).")
@click.option("--background", type=click.Choice(["keep", "mean", "blur"]), default=None)
@click.option("--min-area", type=int, default=None, help="Minimum region area in pixels.")
@click.option("--no-whole-image", is_flag=True, help="Do not index each whole image as a region.")
@click.option("--db-url", default=None, help="SQLAlchemy URL for metadata (default: SQLite file).")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Embedder batch size (default: 32 on CPU, 256 on CUDA).",
)
@click.option(
    "--max-pixels",
    type=int,
    default=200_000_000,
    show_default=True,
    help="Images with more pixels are recorded as failed (decompression bombs).",
)
@click.option(
    "--max-regions",
    type=int,
    default=256,
    show_default=True,
    help="At most this many regions per image (highest scores kept).",
)
@click.option(
    "--retry-failed", is_flag=True, help="Retry files that failed before, even unchanged."
)
@click.option(
    "--vector-dtype",
    type=click.Choice(["float16", "float32", "int8"]),
    default="float16",
    show_default=True,
    help="How a new index stores its vectors (float16: 1 KB a 512-d vector, cosine 0.99999).",
)
@video_options
@engine_options
@device_option
@runtime_option
@json_option
@friendly
def ingest(sources: tuple[str, ...], index_path: Path, **kw: Any) -> None:
    """Index SOURCES (files, folders, glob patterns); creates the index if it does not exist."""
    from dataclasses import replace

    from segindex.config import CropPolicy, RuntimeOptions, VideoOptions
    from segindex.index import MANIFEST, Index

    backend = _backend_kwargs(kw)
    engine = engine_from(kw)
    runtime = RuntimeOptions(
        device=kw["device"],
        precision=kw["precision"],
        runtime=kw["runtime"],
        embed_batch=kw["batch_size"],
        max_pixels=kw["max_pixels"],
        max_regions=kw["max_regions"],
    )
    if (index_path / MANIFEST).exists():
        idx = Index.open(index_path, runtime=runtime, **backend)
        video = video_changes(kw, idx.settings.video)
        if video is not None and video != idx.settings.video:
            idx.set_video_options(video)
    else:
        crop = CropPolicy()
        changes = {
            "margin": kw["margin"],
            "background": kw["background"],
            "min_area_px": kw["min_area"],
        }
        crop = replace(crop, **{k: v for k, v in changes.items() if v is not None})
        if kw["no_whole_image"]:
            crop = replace(crop, whole_image=False)
        video = video_changes(kw, VideoOptions()) or VideoOptions()
        idx = Index.create(
            index_path,
            crop=crop,
            db_url=kw["db_url"],
            runtime=runtime,
            video=video,
            vector_dtype=kw["vector_dtype"],
            **backend,
        )
    with idx:
        report = _run_with_progress(
            idx, list(sources), quiet=kw["as_json"], retry=kw["retry_failed"], engine=engine
        )
    if kw["as_json"]:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    videos = (
        f" and {report.videos} videos ({report.frames} frames, "
        f"{report.frames_per_second:.2f} frames/s)"
        if report.videos or report.frames
        else ""
    )
    click.echo(
        f"indexed {report.indexed - report.videos} images{videos} ({report.regions} regions) in "
        f"{report.seconds:.1f}s [{report.images_per_second:.2f} images/s]; "
        f"skipped {report.skipped} unchanged; "
        + (f"re-linked {report.relinked} moved; " if report.relinked else "")
        + f"failed {report.failed}"
    )
    for path, reason in report.failures:
        click.echo(f"  failed: {path}: {reason}", err=True)


def _run_with_progress(
    idx: Any, sources: list[str], quiet: bool, retry: bool, engine: Any = None
) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return idx.ingest(sources, retry_failed=retry, engine=engine)
    with Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "{task.fields[rate]:.2f} img/s  {task.fields[fps]:.1f} frames/s  "
            "{task.fields[regions]} regions"
        ),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("ingest", total=None, rate=0.0, fps=0.0, regions=0)

        def show(p: Any) -> None:
            worked = p.done - p.skipped
            rate = worked / p.elapsed if p.elapsed > 0 else 0.0
            bar.update(
                task,
                total=p.total,
                completed=p.done,
                rate=rate,
                fps=p.frames_per_second,
                regions=p.regions,
            )

        return idx.ingest(sources, progress=show, retry_failed=retry, engine=engine)


@click.command()
@index_option
@json_option
@friendly
def info(index_path: Path, as_json: bool) -> None:
    """Counts, models, sizes on disk, failed images and integrity (as `check` reports it)."""
    from segindex.cli.maintenance import integrity_lines
    from segindex.index import Index

    with Index.open(index_path) as idx:
        data = idx.info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    c = data["counts"]
    s = data["settings"]
    click.echo(f"index:       {data['path']}")
    click.echo(f"metadata:    {data['db_url']}")
    click.echo(f"segmenter:   {s['segmenter']['name']} {s['segmenter']['options']}")
    click.echo(
        f"embedder:    {s['embedder']['name']} {s['embedder']['options']} "
        f"(dim {data['vector_dim']})"
    )
    runtimes = data.get("embedder_runtimes") or []
    if runtimes:
        made = ", ".join(f"{r['runtime']} {r.get('precision', '')}".strip() for r in runtimes)
        mixed = " (mixed: all within cosine >= 0.999 of torch fp32)" if len(runtimes) > 1 else ""
        click.echo(f"vectors by:  {made}{mixed}")
    v = data.get("videos") or {}
    images = c["images_indexed"] - int(v.get("videos", 0))
    click.echo(f"images:      {images} indexed, {c['images_failed']} failed")
    if v.get("videos") or v.get("videos_partial"):
        partial = f", {v['videos_partial']} partly ingested" if v["videos_partial"] else ""
        click.echo(f"videos:      {v['videos']} indexed{partial}, {v['frames']} sampled frames")
        click.echo(f"tracks:      {v['tracks']}")
    click.echo(f"regions:     {c['regions']} (+{c['whole_image_regions']} whole-image)")
    click.echo(f"vectors:     {data['vectors']}")
    for name, size in data["disk_bytes"].items():
        click.echo(f"disk:        {name} {size / 1e6:.2f} MB")
    for i, line in enumerate(integrity_lines(data["integrity"])):
        click.echo(f"{'integrity:' if i == 0 else '':<13}{line}")
    for f in data["failed"]:
        click.echo(f"failed:      {f['path']}: {f['reason']}")


@click.command()
@index_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the JSON.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["coco", "youtube-vis"]),
    default="coco",
    show_default=True,
    help="coco: regions of images and frames; youtube-vis: video tracks, an RLE per frame.",
)
@click.option("--include-whole-images", is_flag=True, help="Also export whole-image regions.")
@friendly
def export(index_path: Path, output: Path, fmt: str, include_whole_images: bool) -> None:
    """Write all indexed regions as COCO JSON (RLE segmentations, scores, XYWH boxes), or the
    video tracks as YouTube-VIS JSON (videos, categories, per-frame RLE lists)."""
    from segindex.index import Index

    with Index.open(index_path) as idx:
        if fmt == "youtube-vis":
            vis = idx.export_youtube_vis()
            output.write_text(json.dumps(vis))
            click.echo(
                f"wrote {len(vis['annotations'])} tracks of {len(vis['videos'])} videos to {output}"
            )
            return
        data = idx.export_coco(include_whole_images=include_whole_images)
    output.write_text(json.dumps(data))
    click.echo(
        f"wrote {len(data['annotations'])} regions of {len(data['images'])} images to {output}"
    )


@click.command()
@friendly
def backends() -> None:
    """List the registered segmenters, embedders, trackers and ingest engines (built-ins and
    plugins)."""
    from segindex.embed import EMBEDDERS
    from segindex.ingest.engine import ENGINES
    from segindex.segment import SEGMENTERS
    from segindex.track import TRACKERS

    click.echo("segmenters: " + ", ".join(SEGMENTERS.names()))
    click.echo("embedders:  " + ", ".join(EMBEDDERS.names()))
    click.echo("trackers:   " + ", ".join(TRACKERS.names()))
    click.echo("engines:    " + ", ".join(ENGINES.names()))


COMMANDS = [ingest, info, export, backends]
