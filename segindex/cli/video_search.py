"""``search``'s video part: track options and filters, and the table of track hits."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_TIME = re.compile(r"^(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from ``"75.5"``, ``"1:15.5"`` or ``"1:02:05"`` (h:mm:ss); ``ValueError`` else."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"expected seconds, m:ss or h:mm:ss, got {text!r}")
    hours, minutes, seconds = m.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def _time(_ctx: Any, _param: Any, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def track_search_options(fn: F) -> F:
    """``--similar-to-track``, ``--min-duration``, ``--from``/``--to`` and ``--group-by-video``."""
    options = [
        click.option(
            "--similar-to-track", type=int, default=None, help="Search by an indexed track id."
        ),
        click.option(
            "--min-duration",
            callback=_time,
            default=None,
            metavar="SECONDS|M:SS",
            help="Only tracks (and their frames) lasting at least this long.",
        ),
        click.option(
            "--from",
            "time_from",
            callback=_time,
            default=None,
            metavar="SECONDS|M:SS",
            help="Only tracks overlapping, or frames at or after, this time of their video.",
        ),
        click.option(
            "--to",
            "time_to",
            callback=_time,
            default=None,
            metavar="SECONDS|M:SS",
            help="Only tracks overlapping, or frames at or before, this time of their video.",
        ),
        click.option(
            "--group-by-video", is_flag=True, help="Best track per video (as --group-by-image)."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def video_filters(kw: dict[str, Any]) -> dict[str, float | None]:
    """The :class:`~segindex.search.query.Filters` fields of the video options."""
    return {
        "min_duration_s": kw["min_duration"],
        "time_from_s": kw["time_from"],
        "time_to_s": kw["time_to"],
    }


def time_cell(hit: Any) -> str:
    """``m:ss.s`` of a frame region, ``m:ss.s-m:ss.s`` of a track, empty for an image."""
    from segindex.search import format_time

    start = getattr(hit, "start_s", None)
    if start is not None:
        return f"{format_time(start)}-{format_time(hit.end_s)}"
    return "" if hit.time_s is None else format_time(hit.time_s)


def track_table(hits: Sequence[Any], first_rank: int, grouped: bool) -> Any:
    """A rich table of track hits: similarity, label, video, from, to, frames, track."""
    from rich.table import Table

    from segindex.search import format_time

    table = Table(title=f"{len(hits)} tracks")
    for col in ("#", "similarity", "label", "video", "from", "to", "frames", "track"):
        table.add_column(col, overflow="fold")
    if grouped:
        table.add_column("in video")
    for rank, h in enumerate(hits, first_rank):
        extra = [str(h.image_matches)] if grouped else []
        table.add_row(
            str(rank),
            f"{h.similarity:.3f}",
            h.label,
            h.video_path,
            format_time(h.start_s),
            format_time(h.end_s),
            str(h.n_frames),
            str(h.track_id),
            *extra,
        )
    return table
