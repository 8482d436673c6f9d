"""Progress bars for long work: shown on a terminal (stderr), silent otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

stderr = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(
    description: str, *, unit: str = "bytes", enabled: bool | None = None
) -> Iterator[Callable[[int, int], None]]:
    """Yield ``advance(done, total)``; draws a bar (``unit``: "bytes" or "items") only on a terminal."""
    show = stderr.is_terminal if enabled is None else enabled
    if not show:
        yield lambda _done, _total: None
        return
    counters: list[ProgressColumn] = (
        [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    )
    with Progress(
        TextColumn("{task.description}"), BarColumn(), *counters, TimeRemainingColumn(), console=stderr, transient=True
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=min(done, total), total=total)
