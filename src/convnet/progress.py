"""Progress reporting for long loops: a rich progress bar on a terminal, plain summary lines elsewhere.

rich is optional here so that the core runs with torch, numpy, pillow and safetensors alone.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

try:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
except ImportError:  # pragma: no cover - exercised only without rich
    Progress = None


class _Bar:
    """Updates a rich task with a status text; a no-op without a terminal."""

    def __init__(self, progress, task) -> None:
        self._progress, self._task = progress, task

    def update(self, completed: int, status: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, status=status)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool | None = None) -> Iterator[_Bar]:
    """A bar for `total` steps; `enabled=None` shows it only when stderr is a terminal."""
    show = Progress is not None and (sys.stderr.isatty() if enabled is None else enabled)
    if not show:
        yield _Bar(None, None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=True) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, status=""))


Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
