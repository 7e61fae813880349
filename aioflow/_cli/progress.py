"""Following a run through its events: task counts, and the live progress display."""

from __future__ import annotations

import itertools
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .. import events as ev

__all__ = ["ProgressDisplay", "RunTracker"]

_TERMINAL = frozenset({"succeeded", "failed", "cancelled", "skipped"})


class RunTracker:
    """The state of every task of a run, kept up to date from its events.

    ``total`` starts at the number of static tasks and grows on ``TaskAdded``. A task
    that iterates or is re-run counts once; it is running again while it runs again.
    Counts are kept up to date on every event, so following a run of 100,000 tasks
    costs the same per event as following one of ten.
    """

    def __init__(self) -> None:
        self.workflow = ""
        self.total = 0
        self.retries = 0
        self.status: str | None = None
        self.states: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._running: dict[str, None] = {}  # insertion-ordered set

    def _set(self, name: str, state: str) -> None:
        previous = self.states.get(name)
        if previous == state:
            return
        if previous is not None:
            self._counts[previous] -= 1
            if previous == "running":
                del self._running[name]
        self.states[name] = state
        self._counts[state] = self._counts.get(state, 0) + 1
        if state == "running":
            self._running[name] = None

    def apply(self, event: ev.Event) -> None:
        """Take one event into account (group and unknown events are ignored)."""
        name = event.task_name
        match event:
            case ev.RunStarted():
                self.workflow = event.workflow
                self.total = event.total_tasks
            case ev.RunFinished():
                self.status = event.status
            case ev.TaskAdded() if name is not None and name not in self.states:
                self.total += 1
                self._set(name, "queued")
            case ev.TaskStarted() if name is not None:
                self._set(name, "running")
            case ev.TaskRetrying():
                self.retries += 1
            case ev.TaskSucceeded() if name is not None:
                self._set(name, "succeeded")
            case ev.TaskFailed() if name is not None:
                self._set(name, "failed")
            case ev.TaskCancelled() if name is not None:
                self._set(name, "cancelled")
            case ev.TaskSkipped() if name is not None:
                self._set(name, "skipped")

    def count(self, *states: str) -> int:
        """How many tasks are in one of ``states`` now."""
        return sum(self._counts.get(state, 0) for state in states)

    @property
    def done(self) -> int:
        """Tasks that have finished, whatever their outcome."""
        return self.count(*_TERMINAL)

    @property
    def running(self) -> list[str]:
        """Names of the tasks running now."""
        return list(self._running)

    def running_sample(self, limit: int) -> tuple[list[str], int]:
        """Up to ``limit`` names of running tasks, and how many run in all."""
        return list(itertools.islice(self._running, limit)), len(self._running)


class ProgressDisplay:
    """A live progress bar for one run, fed by a :class:`RunTracker`.

    Shows tasks done/total, how many run (and which), how many failed, the elapsed
    time and an estimate of the time left (from the pace so far). Disabled, it shows
    nothing (for output that is not a terminal).
    """

    def __init__(self, console: Console, *, enabled: bool, description: str) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[running]} running"),
            TextColumn("{task.fields[failed]}", style="red", markup=False),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[names]}", style="dim", markup=False),
            console=console,
            disable=not enabled,
        )
        self._task: TaskID = self._progress.add_task(
            description, total=None, running=0, failed="", names=""
        )

    def update(self, tracker: RunTracker) -> None:
        """Redraw from ``tracker`` (the display refreshes itself a few times a second)."""
        sample, running = tracker.running_sample(3)
        failed = tracker.count("failed", "cancelled")
        names = ", ".join(sample) + (f" +{running - 3}" if running > 3 else "")
        self._progress.update(
            self._task,
            total=tracker.total or None,
            completed=tracker.done,
            running=running,
            failed=f"{failed} failed" if failed else "",
            names=names,
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
