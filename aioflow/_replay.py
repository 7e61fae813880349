"""Resuming a journaled run: its journal replayed through the scheduler itself.

The recorded outcomes are fed, in the order the run handled them, into the same
state machine that handled them (:class:`~aioflow.engine.Scheduler`), with a
stand-in for the backend that only keeps what is dispatched. So every join
counter, group outcome, loop iteration, dynamic task and step count comes back
exactly as it was; nothing runs, no event is emitted, nothing is journaled again.

What was dispatched and has no recorded outcome was in flight when the process
died (or never started): it runs again, from the attempt it was at (at-least-once).
A run that had failed or been cancelled goes on from where it stopped: the task
that failed it runs again, from its first attempt, and so do the tasks cancelled
with it; a task that finished while the run was ending keeps its result.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._run_events import RunEvents
from ._runstate import CANCELLED, FAILED, WAITING
from .backends.base import Execution, Status
from .channels import Channel
from .context import ControlRequests
from .errors import CheckpointError
from .instruments import Instruments
from .results import RunStatus

if TYPE_CHECKING:
    from .engine import Scheduler
    from .journal import Outcome, Recorded

__all__ = ["replay_channel", "replay_journal"]


class _Recorder:
    """Stands in for a backend session during a replay: keeps what is dispatched."""

    def __init__(self) -> None:
        self.inflight: dict[str, Execution] = {}

    def submit(self, executions: Sequence[Execution]) -> None:
        for execution in executions:
            self.inflight[execution.name] = execution  # a task has one in flight at most

    def group_finished(self, name: str, value: Any) -> None:
        """Nothing to publish: the resumed run's backend gets every result at its start."""


def _requests(wire: dict[str, Any] | None) -> ControlRequests | None:
    if wire is None:
        return None
    return ControlRequests(
        iterate=bool(wire.get("iterate")),
        iteration_data=wire.get("data"),
        next_tasks=[(target, bool(goto)) for target, goto in wire.get("next") or ()] or None,
        terminate=wire.get("terminate"),
        cancel=wire.get("cancel"),
    )


def _fill(execution: Execution, outcome: Outcome) -> None:
    execution.status = Status[outcome.outcome]
    execution.value = outcome.value
    execution.error = outcome.error
    execution.requests = _requests(outcome.requests)
    execution.duration = outcome.duration
    execution.started = outcome.started
    execution.worker_id = outcome.worker


def _apply(run: Scheduler, recorder: _Recorder, outcome: Outcome) -> None:
    execution = recorder.inflight.pop(outcome.task, None)
    if execution is None or execution.attempt != outcome.attempt:
        raise CheckpointError(
            f"the journal of run {run.run_id} records attempt {outcome.attempt} of task "
            f"{outcome.task!r}, which this workflow does not run at that point",
            hint="Resume with the workflow code that started the run (its tasks, edges and "
            "control flow); the journal is left as it is.",
            run_id=run.run_id,
            task_name=outcome.task,
        )
    _fill(execution, outcome)
    run._on_outcome(execution)
    node = execution.token
    node.finished_at = outcome.at
    if node.started_at is not None and node.started_at > outcome.at:
        node.started_at = outcome.at - outcome.duration
    while run._timers:  # retries: the delay has passed long ago
        run._timers = [(float("-inf"), seq, n, a) for _, seq, n, a in run._timers]
        heapq.heapify(run._timers)
        run._fire_timers()
    run._launch(recorder)  # type: ignore[arg-type]


def replay_journal(
    run: Scheduler, recorded: Recorded
) -> tuple[list[Execution], list[tuple[str, str, Any]]]:
    """Replay ``recorded`` into ``run``; what runs again, and the channel's writes.

    Raises:
        CheckpointError: the journal does not match the workflow's behaviour.
    """
    journal, events = run._journal, run._events
    run._journal = None  # nothing of the replay is journaled again
    run._events = RunEvents(Instruments(), run.run_id)  # nor announced
    recorder = _Recorder()
    run._session = recorder  # type: ignore[assignment]
    channel: list[tuple[str, str, Any]] = []
    ended: list[Outcome] = []  # recorded after the run was decided
    try:
        for node in run._nodes.values():
            if node.pending == 0:
                if node.task is not None:
                    run._make_ready(node)
                else:
                    run._release(node)
        run._launch(recorder)  # type: ignore[arg-type]
        for event in recorded.events:
            if isinstance(event, tuple):
                _, op, (key, value) = event
                channel.append((op, key, value))
            elif run._final is not None:
                ended.append(event)
            else:
                _apply(run, recorder, event)
        if run._final is not None and run._final[0] is not RunStatus.SUCCEEDED:
            _go_on(run, recorder, ended)
    finally:
        run._journal, run._events, run._session = journal, events, None
    return list(recorder.inflight.values()), channel


def _go_on(run: Scheduler, recorder: _Recorder, ended: list[Outcome]) -> None:
    """The journaled run had failed or been cancelled: go on from where it stopped."""
    status = run._final[0] if run._final is not None else None
    stopped_by = run._stopped_by
    run._final = None
    run._failed_group = None
    run._stopped_by = None
    for node in run._nodes.values():
        if node.group is not None and node.state is FAILED:
            node.state = WAITING  # judged again when its members are done
        elif node.task is not None and node.state in (FAILED, CANCELLED) and not node.counted:
            node.state = WAITING
            node.error = None
            for group in node.groups:
                assert group.outcomes is not None and group.errors is not None
                group.outcomes[node.name] = "pending"
                group.errors.pop(node.name, None)
            run._make_ready(node)
    if status is RunStatus.CANCELLED and stopped_by is not None:
        node = run._nodes[stopped_by]
        if node.state.value == "succeeded" and not node.counted:
            run._complete(node)  # the task that cancelled the run: what follows it runs
    for outcome in ended:
        if outcome.outcome == Status.SUCCEEDED.name and outcome.task in recorder.inflight:
            _apply(run, recorder, outcome)  # it finished while the run was ending
    run._launch(recorder)  # type: ignore[arg-type]


async def replay_channel(channel: Channel, writes: list[tuple[str, str, Any]]) -> None:
    """Apply a journal's channel writes, in order, to the run's (empty) channel."""
    for op, key, value in writes:
        if op == "set":
            await channel.set(key, value)
        elif op == "delete":
            await channel.delete(key)
        elif op == "append":
            await channel.append(key, value)
        else:
            raise CheckpointError(f"the journal holds an unknown channel operation {op!r}")
