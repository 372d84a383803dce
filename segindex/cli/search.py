"""The ``search`` command: every query kind and filter of the Python API, as a table or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from segindex.cli.common import (
    device_option,
    friendly,
    index_option,
    json_option,
    runtime_option,
)
from segindex.cli.core import open_index
from segindex.cli.scenes import is_scene, run_scene_search
from segindex.cli.video_search import time_cell, track_search_options, track_table, video_filters


def _floats(n: int | None) -> Callable[[Any, Any, Any], Any]:
    """Click callback: comma-separated numbers (exactly ``n`` of them when given)."""

    def parse(_ctx: Any, param: Any, value: Any) -> Any:
        if value is None or value == ():
            return value
        values = value if isinstance(value, tuple) else (value,)
        out = []
        for v in values:
            try:
                nums = [float(x) for x in v.split(",")]
            except ValueError:
                raise click.BadParameter(f"expected comma-separated numbers, got {v!r}") from None
            if n is not None and len(nums) != n:
                raise click.BadParameter(f"expected {n} comma-separated numbers, got {v!r}")
            out.append(nums)
        return tuple(out) if isinstance(value, tuple) else out[0]

    return parse


def _term(_ctx: Any, _param: Any, values: tuple[str, ...]) -> list[tuple[str, float]]:
    out = []
    for v in values:
        text, sep, weight = v.rpartition(":")
        try:
            out.append((text, float(weight)) if sep else (v, 1.0))
        except ValueError:
            out.append((v, 1.0))
    return out


@click.command()
@click.argument("text", required=False)
@index_option
@click.option("--image", "image_path", type=click.Path(path_type=Path), help="Search by an image.")
@click.option(
    "--box",
    callback=_floats(4),
    metavar="X0,Y0,X1,Y1",
    help="With --image: search by this box of the image (pixels).",
)
@click.option(
    "--point",
    "points",
    multiple=True,
    callback=_floats(2),
    metavar="X,Y",
    help="With --image: a foreground point of the region (repeatable).",
)
@click.option(
    "--mask",
    "mask_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="With --image: a mask image (non-zero = region) of the same size.",
)
@click.option("--similar-to", type=int, default=None, help="Search by an indexed region id.")
@click.option(
    "--term",
    "terms",
    multiple=True,
    callback=_term,
    metavar="TEXT[:WEIGHT]",
    help="A weighted text term (repeatable; a negative weight subtracts).",
)
@click.option("--negative", multiple=True, help="Text to subtract from the query (repeatable).")
@click.option("--negative-weight", type=float, default=0.5, show_default=True)
@click.option("-k", "k", type=int, default=10, show_default=True, help="Number of hits.")
@click.option("--offset", type=int, default=0, show_default=True, help="Skip this many hits.")
@click.option(
    "--scope",
    type=click.Choice(["regions", "images", "tracks", "all", "videos"]),
    default="regions",
    show_default=True,
    help="Segment regions (of images and video frames), whole images, video tracks, or all; "
    "a scene query searches images (the default) or videos.",
)
@click.option("--label", "labels", multiple=True, help="Only regions with this label (repeatable).")
@click.option("--exclude-label", "exclude_labels", multiple=True, help="Drop this label.")
@click.option("--min-score", type=float, default=None, help="Segmenter confidence >= this.")
@click.option("--min-area", type=int, default=None, help="Mask area >= this many pixels.")
@click.option("--max-area", type=int, default=None, help="Mask area <= this many pixels.")
@click.option("--path-prefix", default=None, help="Only images whose path starts with this.")
@click.option("--things/--stuff", "thing", default=None, help="Only things, or only stuff.")
@click.option("--min-similarity", type=float, default=None, help="Drop weaker hits.")
@click.option("--group-by-image", is_flag=True, help="Best region per image, with a count.")
@click.option("--include-self", is_flag=True, help="With --similar-to: keep the region itself.")
@click.option("--no-templates", is_flag=True, help="Embed the text verbatim (no prompt templates).")
@track_search_options
@device_option
@runtime_option
@json_option
@friendly
def search(text: str | None, index_path: Path, image_path: Path | None, **kw: Any) -> None:
    """Find the regions that best match TEXT, --image FILE (or a --box/--point/--mask region
    of it), --similar-to REGION_ID, --similar-to-track TRACK_ID, or weighted --term's; with
    filters inside the search. --scope tracks lists video tracks with their times (m:ss.s).

    A TEXT with an upper-case keyword is a scene query: images (or, with --scope videos, video
    spans) whose objects satisfy it, e.g. 'dog LEFT OF bicycle', 'COUNT(person) >= 3 AND NOT
    car', 'person WITH dog DURING 2s THEN car WITHIN 10s' (syntax: docs/scenes.md)."""
    from segindex.embed import DEFAULT_TEMPLATES
    from segindex.errors import QueryError
    from segindex.search import Filters, RegionPrompt, make_query

    if is_scene(text):
        assert text is not None
        run_scene_search(click.get_current_context(), text, index_path, kw)
        return
    if kw["scope"] == "videos":
        raise QueryError(
            "--scope videos is for scene queries (e.g. 'person WITH dog'); "
            "use --scope tracks to search video tracks"
        )

    region = None
    if kw["box"] is not None or kw["points"] or kw["mask_path"] is not None:
        if image_path is None:
            raise QueryError("--box, --point and --mask need --image FILE")
        mask = None
        if kw["mask_path"] is not None:
            import numpy as np
            from PIL import Image

            with Image.open(kw["mask_path"]) as m:
                mask = np.asarray(m.convert("L")) > 0
        region = RegionPrompt(image_path, box=kw["box"], points=kw["points"] or None, mask=mask)
        image_path = None
    filters = Filters(
        labels=kw["labels"],
        exclude_labels=kw["exclude_labels"],
        min_score=kw["min_score"],
        min_area=kw["min_area"],
        max_area=kw["max_area"],
        path_prefix=kw["path_prefix"],
        thing=kw["thing"],
        **video_filters(kw),
    )
    query = make_query(
        text,
        image=image_path,
        region=region,
        similar_to=kw["similar_to"],
        similar_to_track=kw["similar_to_track"],
        terms=kw["terms"] or None,
        negative=kw["negative"] or None,
        negative_weight=kw["negative_weight"],
        k=kw["k"],
        offset=kw["offset"],
        scope=kw["scope"],
        filters=filters,
        min_similarity=kw["min_similarity"],
        group_by_image=kw["group_by_image"] or kw["group_by_video"],
        exclude_query_regions=not kw["include_self"],
        templates=None if kw["no_templates"] else DEFAULT_TEMPLATES,
    )
    with open_index(index_path, kw["device"], kw["precision"], kw["runtime"]) as idx:
        page = idx.query(query)
    hits = page.hits
    if kw["as_json"]:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    from rich.console import Console

    if query.scope == "tracks":
        table = track_table(hits, query.offset + 1, query.group_by_image)
    else:
        table = _region_table(hits, query.offset + 1, query.group_by_image)
    console = Console()
    if not console.is_terminal:  # piped: never cut paths, whatever the width
        longest = max((len(h.image_path) for h in hits), default=0)
        console = Console(width=max(120, longest + 90))
    console.print(table)
    if page.query_regions:
        r = page.query_regions[0]
        box = ",".join(f"{v:.0f}" for v in r.box)
        click.echo(f"query region: {r.method}, box {box}, {int(r.mask.sum())} px")
    if page.next_offset is not None:
        click.echo(f"more: --offset {page.next_offset}")


def _region_table(hits: list[Any], first_rank: int, grouped: bool) -> Any:
    from rich.table import Table

    timed = any(h.time_s is not None for h in hits)  # video frames or tracks among the hits
    table = Table(title=f"{len(hits)} hits")
    for col in ("#", "similarity", "label", "score", "bbox (x0,y0,x1,y1)", "image", "region"):
        table.add_column(col, overflow="fold")
    if timed:
        table.add_column("time")
    if grouped:
        table.add_column("in image")
    for rank, h in enumerate(hits, first_rank):
        extra = ([time_cell(h)] if timed else []) + ([str(h.image_matches)] if grouped else [])
        table.add_row(
            str(rank),
            f"{h.similarity:.3f}",
            h.label,
            f"{h.score:.2f}",
            ",".join(f"{v:.0f}" for v in h.bbox),
            h.image_path,
            str(h.region_id),
            *extra,
        )
    return table


COMMANDS = [search]
