"""``segindex segment``: masks for one image (automatic, box/point prompts, or by text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from segindex.cli.common import device_option, friendly, json_option, parse_options


def _floats(value: str, n: int, what: str) -> list[float]:
    parts = value.replace(" ", "").split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != n:
        raise click.BadParameter(f"{what} must be {n} comma-separated numbers, got {value!r}")
    return numbers


def _parse_points(values: tuple[str, ...]) -> tuple[list[list[float]], list[int]]:
    """``"x,y"`` (foreground) or ``"x,y:0"`` (background) tokens, space separated."""
    points, labels = [], []
    for value in values:
        for token in value.split():
            xy, _, label = token.partition(":")
            if label not in ("", "0", "1"):
                raise click.BadParameter(f"point label must be 0 or 1, got {token!r}")
            points.append(_floats(xy, 2, "a point"))
            labels.append(int(label or 1))
    return points, labels


def _boxes_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return [_floats(b, 4, "--box") for b in value]


def _points_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> Any:
    return _parse_points(value)


def _output_paths(output: Path) -> tuple[Path, Path]:
    stem = output.with_suffix("") if output.suffix.lower() in (".png", ".json") else output
    return stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".json")


@click.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Output stem: writes OUT.png (overlay) and OUT.json (COCO RLE).",
)
@click.option(
    "--box",
    "boxes",
    multiple=True,
    metavar="X0,Y0,X1,Y1",
    callback=_boxes_callback,
    help="Box prompt (repeatable).",
)
@click.option(
    "--points",
    multiple=True,
    metavar="'X,Y[:L] ...'",
    callback=_points_callback,
    help="Point prompts, space separated; ':0' marks a background point.",
)
@click.option(
    "--text",
    default=None,
    help="Keep the masks CLIP matches to this text; with a concept segmenter (sam3) every "
    "instance of it.",
)
@click.option("--top-k", type=int, default=1, show_default=True, help="Masks kept for --text.")
@click.option("--min-similarity", type=float, default=None, help="Similarity floor for --text.")
@click.option(
    "--segmenter",
    default="sam",
    show_default=True,
    help="Segmenter backend (see `backends`); box/point prompts need sam or sam_onnx.",
)
@click.option("--segmenter-model", default=None, help="Hub id, local directory or file.")
@click.option("--segmenter-option", multiple=True, metavar="KEY=VALUE", help="Segmenter option.")
@click.option("--embedder", default=None, help="Embedder for --text (default open_clip).")
@click.option("--clip-model", default=None, help="open_clip model name or local directory.")
@click.option("--clip-pretrained", default=None, help="open_clip pretrained tag or file.")
@click.option("--embedder-option", multiple=True, metavar="KEY=VALUE", help="Embedder option.")
@device_option
@json_option
@friendly
def segment(image_path: Path, output: Path, **kw: Any) -> None:
    """Segment IMAGE: everything, the --box/--points prompts, or what matches --text."""
    import numpy as np
    from PIL import Image

    from segindex.images import load_image
    from segindex.segment import SEGMENTERS
    from segindex.segment.output import draw_overlay, regions_to_coco

    boxes = kw["boxes"]
    points, point_labels = kw["points"]
    image = load_image(image_path)
    seg_opts = parse_options(kw["segmenter_option"])
    if kw["segmenter_model"]:
        seg_opts["model"] = kw["segmenter_model"]
    segmenter = SEGMENTERS.build_on(
        kw["segmenter"], seg_opts, device=kw["device"], precision=kw["precision"]
    )

    by_concept = kw["text"] is not None and segmenter.segments_text
    if boxes or points:
        regions = segmenter.prompt(
            image,
            boxes=np.asarray(boxes, np.float32) if boxes else None,
            points=np.asarray(points, np.float32) if points else None,
            point_labels=np.asarray(point_labels, np.int64) if points else None,
        )
    elif by_concept:  # the segmenter finds every instance of the text itself (SAM 3)
        regions = segmenter.segment_text(image, kw["text"])
    else:
        (regions,) = segmenter.segment([image], batch_size=1)

    extra = None
    if kw["text"] is not None and not by_concept:
        from segindex.segment.text_prompt import rank_by_text

        regions, sims = rank_by_text(
            image,
            regions,
            kw["text"],
            _embedder(kw),
            top_k=kw["top_k"],
            min_similarity=kw["min_similarity"],
        )
        extra = [{"similarity": round(float(s), 4)} for s in sims]
    captions = [
        f"{regions.labels[i]} {regions.scores[i]:.2f}"
        + ("" if extra is None else f" sim {extra[i]['similarity']:.3f}")
        for i in range(len(regions))
    ]
    png, js = _output_paths(output)
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(draw_overlay(image, regions, captions)).save(png)
    coco = regions_to_coco(regions, str(image_path), extra)
    js.write_text(json.dumps(coco))
    if kw["as_json"]:
        click.echo(json.dumps({"overlay": str(png), "coco": str(js), **coco}, indent=2))
        return
    click.echo(f"{len(regions)} masks -> {png}, {js}")
    for i, caption in enumerate(captions):
        box = ",".join(f"{v:.0f}" for v in regions.boxes[i])
        click.echo(f"  #{i + 1} {caption}  box {box}  area {int(regions.areas[i])}")


def _embedder(kw: dict[str, Any]) -> Any:
    from segindex.config import default_embedder
    from segindex.embed import EMBEDDERS

    spec = default_embedder()
    name = kw["embedder"] or spec.name
    options = dict(spec.options) if name == spec.name else {}
    options.update(parse_options(kw["embedder_option"]))
    if kw["clip_model"]:
        options["model"] = kw["clip_model"]
    if kw["clip_pretrained"]:
        options["pretrained"] = kw["clip_pretrained"]
    return EMBEDDERS.build_on(name, options, device=kw["device"], precision=kw["precision"])


COMMANDS = [segment]
