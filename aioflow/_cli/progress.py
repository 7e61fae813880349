"""The live progress display of a run (``aioflow run``, ``aioflow watch``).

It draws from a :class:`~aioflow._progress.RunTracker` fed by the run's events (a
run of this process) or from the :class:`~aioflow._progress.ProgressSnapshot` s a
coordinator publishes (a run watched from elsewhere): the same bar either way.
"""

from __future__ import annotations

import time
from datetime import timedelta
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .._progress import ProgressSnapshot, RunTracker

__all__ = ["ProgressDisplay", "RunTracker", "format_seconds"]

_SHOWN = 3  # running task names shown


def format_seconds(seconds: float | None) -> str:
    """``H:MM:SS`` (``-:--:--`` when not known)."""
    if seconds is None:
        return "-:--:--"
    return str(timedelta(seconds=max(0, int(seconds))))


class _RunElapsedColumn(ProgressColumn):
    """The run's elapsed time, from its own start (wall time), not the display's."""

    def render(self, task: Task) -> Text:
        started: float | None = task.fields.get("started")
        ended: float | None = task.fields.get("ended")
        if started is None:
            elapsed = task.elapsed
        else:
            elapsed = (ended if ended is not None else time.time()) - started
        return Text(format_seconds(elapsed), style="progress.elapsed")


class ProgressDisplay:
    """A live progress bar for one run, fed by a tracker or by snapshots.

    Shows tasks done/total, how many run (and which), how many failed, the elapsed
    time and an estimate of the time left (from the pace of the last seconds).
    Disabled, it shows nothing (for output that is not a terminal).
    """

    def __init__(self, console: Console, *, enabled: bool, description: str) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[running]} running"),
            TextColumn("{task.fields[failed]}", style="red", markup=False),
            _RunElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[names]}", style="dim", markup=False),
            console=console,
            disable=not enabled,
        )
        self._task: TaskID = self._progress.add_task(
            description, total=None, running=0, failed="", names="", started=None, ended=None
        )

    def update(self, source: RunTracker | ProgressSnapshot) -> None:
        """Redraw from a tracker or a snapshot (the display refreshes itself a few
        times a second)."""
        started, ended = source.started_at, source.finished_at
        if isinstance(source, ProgressSnapshot):
            sample, running = list(source.running[:_SHOWN]), source.count("running")
            # Its times are the coordinator's clock: shift them onto ours (as if the
            # snapshot were made now), so the elapsed time ticks on right.
            shift = time.time() - source.at
            started = None if started is None else started + shift
            ended = None if ended is None else ended + shift
        else:
            sample, running = source.running_sample(_SHOWN)
        failed = source.count("failed", "cancelled")
        names = ", ".join(sample) + (f" +{running - _SHOWN}" if running > _SHOWN else "")
        self._progress.update(
            self._task,
            total=source.total or None,
            completed=source.done,
            running=running,
            failed=f"{failed} failed" if failed else "",
            names=names,
            started=started,
            ended=ended,
        )

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()
