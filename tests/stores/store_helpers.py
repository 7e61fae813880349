"""Helpers of the run store tests (imported by the test modules as ``store_helpers``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aioflow.stores import JournalRecord, RecordKind, RunInfo, RunStore

StoreFactory = Callable[..., RunStore]
"""The ``make_store`` fixture: ``make_store(**options)`` gives a new store."""


class FakeClock:
    """A clock that moves only when told to (``clock.now += 10``)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(
    kind: RecordKind = RecordKind.TASK_FINISHED,
    task_name: str | None = "t",
    *,
    attempt: int | None = 1,
    status: str | None = None,
    at: float = 1.0,
    data: bytes = b"",
) -> JournalRecord:
    """A valid record of ``kind`` (``task_finished`` defaults to ``"succeeded"``)."""
    if kind is RecordKind.TASK_FINISHED and status is None:
        status = "succeeded"
    if kind not in (RecordKind.TASK_STARTED, RecordKind.TASK_FINISHED, RecordKind.TASK_ADDED):
        task_name = task_name if task_name != "t" else None
    return JournalRecord(kind, task_name, attempt, status, at, data)


def finished(name: str, status: str = "succeeded", *, data: bytes = b"") -> JournalRecord:
    return record(RecordKind.TASK_FINISHED, name, status=status, data=data)


def run_info(run_id: str, workflow: str = "wf", *, started_at: float = 0.0, **more: Any) -> RunInfo:
    return RunInfo(
        run_id=run_id, workflow=workflow, fingerprint="fp", started_at=started_at, **more
    )
