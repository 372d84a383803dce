"""``ingest``'s video options: sampling and tracking, stored with the index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import click

from segindex.cli.common import parse_options

F = TypeVar("F", bound=Callable[..., Any])


def video_options(fn: F) -> F:
    """The ``--video-*``/``--keyframes-only``/``--tracker`` options of ``ingest``."""
    options = [
        click.option(
            "--video-fps",
            type=click.FloatRange(min=0.0, min_open=True, max=1000.0),
            default=None,
            help="Sample videos at most this many frames per second (stored; default 2).",
        ),
        click.option(
            "--keyframes-only/--all-frames",
            default=None,
            help="Decode only key frames of videos: fastest (stored; default all frames).",
        ),
        click.option(
            "--video-dedup",
            type=click.FloatRange(min=0.0, max=255.0),
            default=None,
            metavar="LEVELS",
            help="Skip video samples whose 32x32 grey thumbnail differs from the last kept one "
            "by less than this mean grey-level difference; 0 keeps all (stored; default 2).",
        ),
        click.option(
            "--max-video-frames",
            type=click.IntRange(min=0),
            default=None,
            help="At most this many sampled frames per video; 0: no limit (stored).",
        ),
        click.option(
            "--tracker",
            default=None,
            help="Tracker backend name for videos, e.g. iou or none (stored; default iou).",
        ),
        click.option(
            "--tracker-option",
            multiple=True,
            metavar="KEY=VALUE",
            help="Tracker option, e.g. max_missed=10 (repeatable; stored).",
        ),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def video_changes(kw: dict[str, Any], current: Any) -> Any | None:
    """The :class:`~segindex.config.VideoOptions` the command line asks for on top of
    ``current`` (the index's), or ``None`` when it asks for nothing. Pops the options."""
    from segindex.config import BackendSpec

    fps, keyframes = kw.pop("video_fps"), kw.pop("keyframes_only")
    dedup, max_frames = kw.pop("video_dedup"), kw.pop("max_video_frames")
    tracker, tracker_opts = kw.pop("tracker"), parse_options(kw.pop("tracker_option"))
    changes: dict[str, Any] = {}
    if fps is not None:
        changes["fps"] = fps
    if keyframes is not None:
        changes["keyframes_only"] = keyframes
    if dedup is not None:
        changes["dedup_threshold"] = dedup
    if max_frames is not None:
        changes["max_frames"] = max_frames or None
    if tracker is not None or tracker_opts:
        name = tracker or current.tracker.name
        base = {} if tracker is not None else current.tracker.options
        options = {**base, **tracker_opts}
        changes["tracker"] = BackendSpec(name, options)
    if not changes:
        return None
    return replace(current, **changes)
