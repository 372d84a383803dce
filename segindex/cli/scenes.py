"""``search``'s scene part: compositional queries such as ``'dog LEFT OF bicycle'`` or
``'COUNT(person) >= 3 AND NOT car'`` (the syntax of :mod:`segindex.search.scenes`).

``segindex search TEXT`` sends TEXT here when :func:`~segindex.search.scenes.looks_like_scene`
says it uses the scene syntax (an upper-case keyword); any other text goes to the single-region
search as before. A scene query takes ``-k``, ``--scope images|videos``, ``--json`` and the
device options; the other query options and filters do not apply and are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from segindex.errors import QueryError

#: ``search`` parameters a scene query uses; giving any other is a usage error
SCENE_PARAMS = frozenset({"text", "index_path", "k", "scope", "device", "precision", "as_json"})
#: scopes of a scene query; ``search``'s default (``regions``) means images here
SCENE_SCOPES = ("images", "videos")


def is_scene(text: str | None) -> bool:
    """Whether ``text`` is a scene query (uses an upper-case keyword of the scene syntax)."""
    if not text:
        return False
    from segindex.search.scenes.parse import looks_like_scene

    return bool(looks_like_scene(text))


def scene_scope(ctx: click.Context, scope: str) -> str:
    """``images`` or ``videos``; ``search``'s default scope (regions) means images."""
    if ctx.get_parameter_source("scope") in (ParameterSource.DEFAULT, None):
        return "images"
    if scope not in SCENE_SCOPES:
        raise QueryError(f"a scene query takes --scope images or videos, got --scope {scope}")
    return scope


def refuse_other_options(ctx: click.Context) -> None:
    """A usage error naming the options given that a scene query does not take."""
    given = [
        p
        for p in ctx.command.params
        if p.name not in SCENE_PARAMS
        and p.name is not None
        and ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, None)
    ]
    if given:
        names = ", ".join(p.opts[0] if p.opts else p.name or "" for p in given)
        raise QueryError(
            f"a scene query takes -k, --scope images|videos and --json, not {names} "
            "(per-object thresholds are written in the text: dog~0.25)"
        )


def with_caret(error: QueryError, text: str) -> QueryError:
    """The error with the query and a caret line under the character it points at."""
    position = getattr(error, "position", None)
    if position is None:
        return error
    shown = text.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    position = max(0, min(int(position), len(shown)))
    return QueryError(f"{error}\n  {shown}\n  {' ' * position}^")


def run_scene_search(ctx: click.Context, text: str, index_path: Path, kw: dict[str, Any]) -> None:
    """Parse ``text``, search the index's images or videos, print the hits (or their JSON)."""
    from segindex.cli.core import open_index
    from segindex.search.scenes.parse import parse_scene

    refuse_other_options(ctx)
    scope = scene_scope(ctx, kw["scope"])
    if kw["k"] < 1:
        raise QueryError(f"-k must be at least 1, got {kw['k']}")
    try:
        expr = parse_scene(text)  # before the index opens: a typo costs no model load
        with open_index(index_path, kw["device"], kw["precision"]) as idx:
            hits = idx.search_scenes(expr, k=kw["k"], scope=scope)
    except QueryError as e:
        raise with_caret(e, text) from None
    if kw["as_json"]:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2))
        return
    click.echo("\n".join(scene_lines(hits)))


def scene_lines(hits: Sequence[Any], first_rank: int = 1) -> list[str]:
    """Per hit: rank, score, image (video and time span) and each part's regions or tracks."""
    from segindex.search import format_time

    kind = "video spans" if any(h.start_s is not None for h in hits) else "images"
    lines = [f"{len(hits)} {kind}" if len(hits) != 1 else f"1 {kind.rstrip('s')}"]
    for rank, h in enumerate(hits, first_rank):
        span = ""
        if h.start_s is not None:
            end = h.start_s if h.end_s is None else h.end_s
            span = f"  {format_time(h.start_s)}-{format_time(end)}"
        lines.append(f"#{rank}  score {h.score:.3f}  {h.image_path}{span}")
        for name, parts in h.parts.items():
            lines.append(f"    {name}: " + ("; ".join(part_cell(p) for p in parts) or "-"))
    return lines


def part_cell(hit: Any) -> str:
    """``region 12 red [10,10,50,40]`` (or ``track 3 ...``, with the frame time for a frame)."""
    from segindex.search import format_time

    box = ",".join(f"{v:.0f}" for v in hit.bbox)
    start = getattr(hit, "start_s", None)
    if start is not None and hit.track_id is not None:  # a track hit
        span = f"{format_time(start)}-{format_time(hit.end_s)}"
        return f"track {hit.track_id} {hit.label} [{box}] {span}"
    cell = f"region {hit.region_id} {hit.label} [{box}]"
    if hit.time_s is not None:
        cell += f" @{format_time(hit.time_s)}"
    return cell
