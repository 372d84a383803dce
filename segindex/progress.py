"""Progress bars for long steps outside the CLI's ingest display (index builds, migrations).

:func:`progress` shows a rich bar on stderr when stderr is a terminal and does nothing
otherwise (logs, tests, pipes), so library code may call it unconditionally.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress"]


@contextmanager
def progress(
    description: str, total: int, unit: str = "vectors"
) -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` steps; the yielded function advances it by ``n``."""
    if total <= 0 or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
