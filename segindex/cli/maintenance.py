"""Maintenance commands: ``check``, ``repair`` and ``reindex``."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import click

from segindex.cli.common import friendly, index_option, json_option, parse_options


def integrity_lines(report: Mapping[str, object]) -> list[str]:
    """Human lines for a ``CheckReport.to_dict()``: a verdict, then ``problem:`` lines (damage,
    exit code 1) and ``note:`` lines (a stale vector file that the next open rebuilds)."""
    problems, notes = report["problems"], report.get("notes", [])
    if not isinstance(problems, list) or not isinstance(notes, list):
        raise TypeError(f"problems and notes must be lists, got {problems!r} and {notes!r}")
    if problems:
        head = [f"problem: {p}" for p in problems]
    elif notes:
        head = ["ok: no damage; the vector file is a stale cache of the database"]
    else:
        head = ["ok: every region row has its vector and every vector its row"]
    return head + [f"note: {n}" for n in notes]


def _print(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(
        f"region rows: {report['region_rows']}, vectors in file: {report['vectors_in_file']}"
    )
    click.echo("\n".join(integrity_lines(report)))


@click.command()
@index_option
@json_option
@friendly
def check(index_path: Path, as_json: bool) -> None:
    """Verify the index without changing it: rows and vectors match one to one. Exit code 1 on
    damage; a vector file that merely lags the database (e.g. after a crash) is a note, exit 0:
    the next open rebuilds it."""
    from segindex.index import Index

    with Index.open(index_path) as idx:
        report = idx.check().to_dict()
    _print(report, as_json)
    if not report["ok"]:
        sys.exit(1)


@click.command()
@index_option
@json_option
@friendly
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
@friendly
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
        described = idx.reindex(kind, factory=factory, **parse_options(settings))
    described["seconds"] = round(time.perf_counter() - t0, 2)
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    click.echo(
        f"rebuilt as {described['kind']}: {described['vectors']} vectors "
        f"in {described['seconds']} s"
    )


COMMANDS = [check, repair, reindex]
