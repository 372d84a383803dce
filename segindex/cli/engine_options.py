"""``ingest``'s engine options: run locally (default) or on a Ray cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def engine_options(fn: F) -> F:
    """The ``--engine``/``--ray-address``/``--workers``/``--gpus-per-worker`` options."""
    options = [
        click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="Where the models run: this process, or Ray workers (pip install "
            "'segindex[ray]'; use a PostgreSQL --db-url on a multi-node cluster).",
        ),
        click.option(
            "--ray-address",
            default=None,
            metavar="ADDRESS",
            help="Ray cluster to join: 'auto' (started here with `ray start --head`) or "
            "host:port / ray://host:10001; default: a local Ray just for this run.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Ray workers (actors), each loading the models once [default: 1].",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(min=0.0),
            default=None,
            help="GPUs each Ray worker reserves (fractions share a GPU) [default: 0].",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def engine_from(kw: dict[str, Any]) -> Any:
    """The engine the options ask for: ``None`` (local) or a ``RayEngine`` (Ray itself is
    imported only when the run starts; a missing Ray is a ``ConfigError`` now)."""
    ray_only = {
        "ray_address": "--ray-address",
        "workers": "--workers",
        "gpus_per_worker": "--gpus-per-worker",
    }
    given = [flag for key, flag in ray_only.items() if kw.get(key) is not None]
    if kw.get("engine", "local") == "local":
        if given:
            from segindex.errors import ConfigError

            raise ConfigError(f"{', '.join(given)} only apply with --engine ray")
        return None
    from segindex.ingest.engine import resolve_engine
    from segindex.ingest.ray_engine import RayEngine

    engine = RayEngine(
        address=kw.get("ray_address"),
        workers=kw.get("workers") or 1,
        gpus_per_worker=kw.get("gpus_per_worker") or 0.0,
    )
    return resolve_engine(engine)  # checks Ray is installed before any index is made
