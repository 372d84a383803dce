"""Maintenance commands: ``check`` and ``repair``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from segindex.cli.common import _friendly, index_option, json_option


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


COMMANDS = [check, repair]
