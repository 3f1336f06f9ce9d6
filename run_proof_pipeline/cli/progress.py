"""A progress bar for long single-run verifications, on a terminal only (never in pipes,
logs or --json output, where it would be noise)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

StepProgress = Callable[[int, int | None], None]

# How many steps between two updates: often enough to move on a 1M-step run, rarely enough
# that drawing costs nothing measurable.
UPDATE_EVERY = 20_000


@contextmanager
def step_progress_bar(
    *, enabled: bool, stream: TextIO | None = None, force_terminal: bool | None = None
) -> Iterator[StepProgress | None]:
    stream = stream or sys.stderr
    # No stderr at all (`2>&-` outside a guarded command: sys.stderr is None) draws nothing.
    if not enabled or stream is None or not (force_terminal or stream.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream, force_terminal=force_terminal)
    with Progress(
        TextColumn("verifying steps"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("verify", total=None, rate="-")

        def update(done: int, total: int | None) -> None:
            elapsed = progress.tasks[task].elapsed or 0.0
            rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
            progress.update(task, completed=done, total=total, rate=rate)

        yield update
