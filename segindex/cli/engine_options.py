"""``ingest``'s engine options: any registered engine by name, with its options.

``--engine NAME`` picks an engine from the ``segindex.engines`` registry (``local``, the default,
or ``ray``, or a plugin's); ``--engine-option KEY=VALUE`` passes it options. ``--ray-address``,
``--workers`` and ``--gpus-per-worker`` are the Ray engine's options as flags of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: the Ray engine's flags: option key -> (flag, the RayEngine option it sets)
RAY_FLAGS = {
    "ray_address": ("--ray-address", "address"),
    "workers": ("--workers", "workers"),
    "gpus_per_worker": ("--gpus-per-worker", "gpus_per_worker"),
}


def engine_options(fn: F) -> F:
    """The ``--engine``/``--engine-option`` options and the Ray engine's own flags."""
    options = [
        click.option(
            "--engine",
            default="local",
            show_default=True,
            metavar="NAME",
            help="Where the models run: a registered engine (see `segindex backends`): local "
            "(this process) or ray (Ray workers: pip install 'segindex[ray]'; use a PostgreSQL "
            "--db-url on a multi-node cluster), or a plugin's.",
        ),
        click.option(
            "--engine-option",
            "engine_options",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_key_values,
            help="Engine option, e.g. retries=3 (repeatable; values are read as JSON when they "
            "parse).",
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


def _key_values(ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]) -> Any:
    """``--engine-option`` pairs as a dict, parsed while click parses (a malformed pair is a
    usage error naming the option)."""
    from segindex.cli.common import parse_options

    return parse_options(pairs)


def engine_from(kw: dict[str, Any]) -> Any:
    """The engine the options ask for, built and checked now (before any index is made): an
    unknown name, an option the engine does not take or a missing Ray is a ``ConfigError``.
    Ray itself is imported only when the run starts."""
    from segindex.errors import ConfigError
    from segindex.ingest.engine import resolve_engine

    name = kw.get("engine") or "local"
    options = dict(kw.get("engine_options") or {})
    given = {key: kw[key] for key in RAY_FLAGS if kw.get(key) is not None}
    if given and name != "ray":
        flags = ", ".join(RAY_FLAGS[key][0] for key in given)
        raise ConfigError(f"{flags} only apply with --engine ray")
    for key, value in given.items():
        flag, option = RAY_FLAGS[key]
        if option in options:
            raise ConfigError(f"{flag} and --engine-option {option}=... both given; use one")
        options[option] = value
    return resolve_engine(name, **options)
