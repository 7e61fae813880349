"""A run's progress: task counts kept from its events, and the snapshot made of them.

:class:`RunTracker` follows a run through its events (the ``aioflow run`` display
feeds it from ``handle.events()``; the Redis backend's progress publisher from its
instrument hooks). :class:`ProgressSnapshot` is what a tracker says at one moment,
as a small JSON document: what a coordinator publishes and ``aioflow watch`` reads.
Neither needs rich, nor the engine.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import events as ev

__all__ = ["FINAL_STATUSES", "STATES", "ProgressSnapshot", "RunTracker"]

#: The states a snapshot counts tasks in. ``queued``: not started yet (waiting for
#: what it depends on, for a slot, or in a queue for a worker).
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "skipped")
#: The statuses of a run that has ended.
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
_TERMINAL = ("succeeded", "failed", "cancelled", "skipped")
_SCHEMA = 1


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
        self.reason: str | None = None
        self.started_at: float | None = None  # wall time (time.time()) of RunStarted
        self.finished_at: float | None = None  # and of RunFinished
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
            case ev.TaskStarted() if name is not None:
                self._set(name, "running")
            case ev.TaskSucceeded() if name is not None:
                self._set(name, "succeeded")
            case ev.RunStarted():
                self.workflow = event.workflow
                self.total = event.total_tasks
                self.started_at = event.time.timestamp()
            case ev.RunFinished():
                self.status = event.status
                self.reason = event.reason
                self.finished_at = event.time.timestamp()
            case ev.TaskAdded() if name is not None and name not in self.states:
                self.total += 1
                self._set(name, "queued")
            case ev.TaskRetrying():
                self.retries += 1
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

    def snapshot(
        self,
        run_id: str,
        *,
        sample: int = 5,
        keepalive: float | None = None,
        running: tuple[int, Sequence[str]] | None = None,
    ) -> ProgressSnapshot:
        """What the run looks like now.

        Args:
            sample: how many names of running tasks it keeps.
            keepalive: what the snapshot says of its publisher's keep-alive period.
            running: how many tasks run and a few of their names, when the caller
                knows better than the events (a backend that does not hear of starts).
        """
        counts = {state: self._counts.get(state, 0) for state in STATES}
        if running is None:
            names, _ = self.running_sample(sample)
        else:
            counts["running"], names = running[0], list(running[1][:sample])
        counts["queued"] = max(0, self.total - counts["running"] - self.done)
        return ProgressSnapshot(
            run_id=run_id,
            workflow=self.workflow,
            status=self.status or "running",
            total=self.total,
            counts=counts,
            retries=self.retries,
            running=tuple(names),
            started_at=self.started_at,
            at=time.time(),
            finished_at=self.finished_at,
            keepalive=keepalive,
            reason=self.reason,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressSnapshot:
    """A run's progress at one moment, as its coordinator published it.

    Attributes:
        run_id, workflow: the run.
        status: ``"running"``, then ``"succeeded"``, ``"failed"`` or ``"cancelled"``
            in the last snapshot of the run.
        total: the run's tasks (static ones, and those added at run time so far).
        counts: tasks per state of :data:`STATES` (they add up to ``total``).
        retries: retries so far.
        running: the names of a few running tasks (a sample, not all).
        started_at, at, finished_at: wall times (``time.time()`` on the coordinator)
            of the run's start, of this snapshot, of the run's end (or None).
        keepalive: the longest the coordinator goes without a snapshot while the run
            runs (seconds; None when it does not say).
        reason: why the run ended, when it did not succeed.
    """

    run_id: str
    workflow: str
    status: str
    total: int
    counts: Mapping[str, int]
    retries: int
    running: tuple[str, ...]
    started_at: float | None
    at: float
    finished_at: float | None = None
    keepalive: float | None = None
    reason: str | None = None

    @property
    def final(self) -> bool:
        """Whether the run has ended (this is its last snapshot)."""
        return self.status in FINAL_STATUSES

    @property
    def done(self) -> int:
        """Tasks that have finished, whatever their outcome."""
        return sum(self.counts.get(state, 0) for state in _TERMINAL)

    def count(self, *states: str) -> int:
        """How many tasks are in one of ``states``."""
        return sum(self.counts.get(state, 0) for state in states)

    @property
    def elapsed(self) -> float | None:
        """Seconds from the run's start to its end, or to this snapshot."""
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else self.at
        return max(0.0, end - self.started_at)

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before the first task finished)."""
        elapsed, done = self.elapsed, self.done
        if self.final:
            return 0.0
        if elapsed is None or done == 0 or self.total <= done:
            return None
        return elapsed * (self.total - done) / done

    def to_document(self) -> dict[str, Any]:
        """The snapshot as a JSON-able dict (the form published and printed)."""
        return {
            "v": _SCHEMA,
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "total": self.total,
            "counts": dict(self.counts),
            "retries": self.retries,
            "running": list(self.running),
            "started_at": self.started_at,
            "at": self.at,
            "finished_at": self.finished_at,
            "keepalive": self.keepalive,
            "reason": self.reason,
        }

    def to_json(self) -> bytes:
        """The document, compact JSON (UTF-8)."""
        return json.dumps(self.to_document(), separators=(",", ":")).encode()

    @classmethod
    def from_document(cls, doc: object) -> ProgressSnapshot:
        """The snapshot a document describes.

        Raises:
            ValueError: not a snapshot document (or one of a later schema).
        """
        if not isinstance(doc, dict) or doc.get("v") != _SCHEMA:
            raise ValueError("not a progress snapshot (schema 1)")
        try:
            counts = doc["counts"]
            running = doc["running"]
            if not isinstance(counts, dict) or not isinstance(running, list):
                raise TypeError("counts, running")
            return cls(
                run_id=str(doc["run_id"]),
                workflow=str(doc["workflow"]),
                status=str(doc["status"]),
                total=int(doc["total"]),
                counts={str(k): int(v) for k, v in counts.items()},
                retries=int(doc["retries"]),
                running=tuple(str(name) for name in running),
                started_at=_time(doc.get("started_at")),
                at=float(doc["at"]),
                finished_at=_time(doc.get("finished_at")),
                keepalive=_time(doc.get("keepalive")),
                reason=None if doc.get("reason") is None else str(doc["reason"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a malformed progress snapshot: {exc}") from None

    @classmethod
    def from_json(cls, data: bytes | str) -> ProgressSnapshot:
        """The snapshot :meth:`to_json` wrote.

        Raises:
            ValueError: not JSON, or not a snapshot document.
        """
        return cls.from_document(json.loads(data))


def _time(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a time, got {value!r}")
    return float(value)
