"""Shared CLI pieces: error translation at the edge, common options, KEY=VALUE parsing.

Library errors become one-line messages and exit codes; no traceback reaches a user unless
``SEGINDEX_DEBUG=1`` is set.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

P = ParamSpec("P")
R = TypeVar("R")


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Translate library errors into ``error: ...`` and exit code 1 (2 for bad usage)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from segindex.errors import ConfigError, QueryError, SegindexError

        try:
            return fn(*args, **kwargs)
        except (ConfigError, QueryError) as e:
            raise click.UsageError(str(e)) from None
        except SegindexError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; everything committed so far is kept", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - last line of defence at the edge
            if os.environ.get("SEGINDEX_DEBUG"):
                raise
            click.echo(
                f"error: unexpected {type(e).__name__}: {e} (set SEGINDEX_DEBUG=1 for a traceback)",
                err=True,
            )
            sys.exit(1)

    return wrapper


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when they parse (numbers, bools, null)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


index_option = click.option(
    "--index",
    "index_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Index directory (e.g. photos.segindex).",
)
_device = click.option(
    "--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda[:N]."
)
_precision = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
    default="auto",
    show_default=True,
    help="What the torch models compute in: auto = bf16/fp16 on CUDA, fp32 elsewhere.",
)


runtime_option = click.option(
    "--runtime",
    type=click.Choice(["auto", "torch", "openvino"]),
    default="auto",
    show_default=True,
    help="What runs the segmenter and CLIP networks: torch, or openvino (exported once and "
    "compiled for this CPU, cached beside the model cache); auto = openvino on a CPU when it is "
    "installed, else torch. See docs/runtimes.md.",
)


def device_option(f: Any) -> Any:
    """``--device`` and ``--precision``, which always go together."""
    return _device(_precision(f))


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
