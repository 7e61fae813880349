"""The events of one run, made only when an instrument listens.

:class:`RunEvents` is what the scheduler calls at each step of a run; each method
checks the :class:`~aioflow.instruments.Instruments` flag of its hook first, so a
run without instruments makes no event object at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import events as ev
from .errors import TaskCancelledError
from .instruments import Instruments

__all__ = ["RunEvents"]


class RunEvents:
    """Emits the typed events of run ``run_id`` to its instruments."""

    __slots__ = ("_inst", "remote_starts", "run_id", "task_end", "task_start")

    def __init__(self, instruments: Instruments, run_id: str) -> None:
        self._inst = instruments
        self.run_id = run_id
        # Checked by the scheduler before its hot-path call. Read once: instruments
        # are fixed for a run (one that fails is disabled, and then just not called).
        self.task_end: bool = instruments.task_end
        self.task_start: bool = instruments.task_start
        self.remote_starts: bool = instruments.remote_starts

    def run_started(self, workflow: str, total: int) -> None:
        if self._inst.run_start:
            self._inst.emit(ev.RunStarted(run_id=self.run_id, workflow=workflow, total_tasks=total))

    def task_started(self, name: str, attempt: int, iteration: int) -> None:
        if self._inst.task_start:
            self._inst.emit(
                ev.TaskStarted(
                    run_id=self.run_id, task_name=name, attempt=attempt, iteration=iteration
                )
            )

    def task_succeeded(self, name: str, attempt: int, iteration: int, duration: float) -> None:
        if self._inst.task_end:
            self._inst.emit(
                ev.TaskSucceeded(
                    run_id=self.run_id,
                    task_name=name,
                    attempt=attempt,
                    iteration=iteration,
                    duration=duration,
                )
            )

    def task_failed(self, name: str, attempt: int, error: BaseException, tolerated: bool) -> None:
        """``TaskCancelled`` for a cancellation, else ``TaskFailed``."""
        if not self._inst.task_end:
            return
        if isinstance(error, TaskCancelledError):
            self._inst.emit(ev.TaskCancelled(run_id=self.run_id, task_name=name, reason=str(error)))
        else:
            self._inst.emit(
                ev.TaskFailed(
                    run_id=self.run_id,
                    task_name=name,
                    attempt=attempt,
                    error=error,
                    tolerated=tolerated,
                )
            )

    def task_retrying(self, name: str, attempt: int, error: BaseException, delay: float) -> None:
        if self._inst.task_retry:
            self._inst.emit(
                ev.TaskRetrying(
                    run_id=self.run_id, task_name=name, attempt=attempt, error=error, delay=delay
                )
            )

    def task_added(self, name: str, by: str) -> None:
        if self._inst.task_add:
            self._inst.emit(ev.TaskAdded(run_id=self.run_id, task_name=name, by=by))

    def tasks_skipped(self, names: Iterable[str], reason: str) -> None:
        if self._inst.task_skip:
            for name in names:
                self._inst.emit(ev.TaskSkipped(run_id=self.run_id, task_name=name, reason=reason))

    def group_finished(self, name: str, succeeded: bool, outcomes: Mapping[str, str]) -> None:
        if self._inst.group_end:
            self._inst.emit(
                ev.GroupFinished(
                    run_id=self.run_id,
                    task_name=name,
                    succeeded=succeeded,
                    outcomes=dict(outcomes),
                )
            )

    def run_finished(self, status: str, reason: str | None, error: BaseException | None) -> None:
        if self._inst.run_end:
            self._inst.emit(
                ev.RunFinished(run_id=self.run_id, status=status, reason=reason, error=error)
            )
