"""Progress reporting for long loops: a rich progress bar on a terminal, plain summary lines elsewhere.

rich is optional here so that the core runs with torch, numpy, pillow and safetensors alone.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Iterator

try:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
except ImportError:  # pragma: no cover - exercised only without rich
    Progress = None


Log = Callable[[str], None]
PLAIN_EVERY = 60.0  # seconds between progress lines where there is no bar (a log file, a pipe, a notebook)


class _Bar:
    """Updates a rich task with a status text; without one, logs a plain line now and then, if given a `log`."""

    def __init__(self, progress, task, description: str = "", total: int = 0, log: Log | None = None) -> None:
        self._progress, self._task = progress, task
        self._description, self._total, self._log = description, total, log
        self._last = time.perf_counter()

    def due(self) -> bool:
        """Whether an update now would be shown: the caller makes one only then (its values can cost a device
        sync). The bar redraws at any time; a plain line goes out every PLAIN_EVERY seconds."""
        if self._progress is not None:
            return True
        return self._log is not None and time.perf_counter() - self._last >= PLAIN_EVERY

    def update(self, completed: int, status: str) -> None:
        """Show `status` at `completed` steps: on the bar, or as a plain line (see `due`)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, status=status)
        elif self._log is not None:
            self._last = time.perf_counter()
            self._log(f"{self._description}: {completed:,}/{self._total:,} steps  {status}")


@contextmanager
def progress_bar(description: str, total: int, enabled: bool | None = None, log: Log | None = None) -> Iterator[_Bar]:
    """A bar on stderr for `total` steps (stdout is for results); `enabled=None` shows it only when stderr is a
    terminal that can draw one (not TERM=dumb). Where no bar shows, `log` (if given) gets a line every PLAIN_EVERY
    seconds: a long epoch in a log file is not silence."""
    console = Console(stderr=True) if Progress is not None and sys.stderr is not None else None
    terminal = console is not None and sys.stderr.isatty() and not console.is_dumb_terminal
    show = console is not None and (terminal if enabled is None else enabled)
    if not show:
        yield _Bar(None, None, description, total, log if enabled is not False else None)
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=True, console=console) as progress:
        yield _Bar(progress, progress.add_task(description, total=total, status=""))


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
