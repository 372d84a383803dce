"""Maintenance commands: ``check``, ``repair`` and ``reindex``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from segindex.cli.common import _friendly, _parse_options, index_option, json_option


def _print(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"region rows: {report['region_rows']}, vectors in file: {report['vectors_in_file']}"
    )
    problems = report["problems"]
    assert isinstance(problems, list)
    click.echo(
        "ok: every region row has its vector and every vector its row"
        if not problems
        else "\n".join(f"problem: {p}" for p in problems)
    )


@click.command()
@index_option
@json_option
@_friendly
def check(index_path: Path, as_json: bool) -> None:
    """Verify the index: rows and vectors match one to one (exit code 1 if not)."""
    from segindex.index import Index

    with Index.open(index_path) as idx:
        report = idx.check().to_dict()
    _print(report, as_json)
    if not report["ok"]:
        sys.exit(1)


@click.command()
@index_option
@json_option
@_friendly
def repair(index_path: Path, as_json: bool) -> None:
    """Restore the invariants: rebuild the vector file from SQL, mark incomplete images for
    re-ingestion (run `ingest` again afterwards)."""
    from segindex.index import Index

    with Index.open(index_path) as idx:
        report = idx.repair().to_dict()
    _print(report, as_json)
    if not report["ok"]:
        sys.exit(1)


@click.command()
@index_option
@click.option(
    "--kind",
    type=click.Choice(["auto", "flat", "hnsw", "ivfpq"]),
    default=None,
    help="Index kind (default: keep the configured one). auto: flat under 100k vectors, "
    "HNSW under 2M, IVF-PQ above.",
)
@click.option(
    "--factory",
    default=None,
    help="A FAISS factory string instead of the defaults, e.g. 'HNSW64,Flat' or 'IVF4096,PQ64'.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="An index-kind parameter, e.g. ef_construction=200, ef_search=256, hnsw_m=48, "
    "nprobe=64, flat_max=50000 (repeatable).",
)
@json_option
@_friendly
def reindex(
    index_path: Path,
    kind: str | None,
    factory: str | None,
    settings: tuple[str, ...],
    as_json: bool,
) -> None:
    """Rebuild the vector index from the vectors stored in SQL (no models run), optionally as
    another kind or with other parameters; the file is replaced atomically and the choice is
    remembered."""
    import time

    from segindex.index import Index

    t0 = time.perf_counter()
    with Index.open(index_path) as idx:
        described = idx.reindex(kind, factory=factory, **_parse_options(settings))
    described["seconds"] = round(time.perf_counter() - t0, 2)
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    click.echo(
        f"rebuilt as {described['kind']}: {described['vectors']} vectors "
        f"in {described['seconds']} s"
    )


COMMANDS = [check, repair, reindex]
