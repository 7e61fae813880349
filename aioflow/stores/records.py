"""What a run store holds: run summaries, journal records and blobs.

A run's durable state is an append-only sequence of small :class:`JournalRecord`
objects. The store does not interpret a record's ``data``: it is opaque bytes made
(and signed) by the engine, and stores never decode or unpickle it. The few fields
beside ``data`` (``kind``, ``task_name``, ``attempt``, ``status``, ``at``) exist so
that a store can keep the run's counters and an operator can read a timeline
without the signing key.

Large values are stored once as *blobs*, named by their content digest
(:func:`blob_digest`), and referenced by that digest from inside record data.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = [
    "ERROR_TEXT_LIMIT",
    "FINAL_RUN_STATUSES",
    "KINDS_NEEDING_TASK",
    "RUN_STATUSES",
    "TASK_STATUSES",
    "BatchCounts",
    "JournalRecord",
    "RecordKind",
    "RunInfo",
    "RunStatus",
    "StoreStatistics",
    "TaskStatus",
    "blob_digest",
    "short_error",
]

RunStatus: TypeAlias = Literal["running", "succeeded", "failed", "cancelled"]
"""The status of a run: ``"running"`` until :meth:`RunStore.finish_run` sets a final one."""

TaskStatus: TypeAlias = Literal[
    "succeeded", "failed", "cancelled", "skipped", "retrying", "iterating"
]
"""The outcome carried by a ``task_finished`` record.

``"succeeded"`` and ``"failed"`` are a task's final outcomes and are the only ones
counted in :attr:`RunInfo.tasks_succeeded` / :attr:`RunInfo.tasks_failed`.
``"cancelled"`` and ``"skipped"`` are final too, but counted in neither.
``"retrying"`` (this attempt failed, another follows) and ``"iterating"`` (this
iteration asked for another with ``ctx.next_iteration``) end an attempt, not the
task, and are not counted, so the counters count tasks, never attempts.
"""

RUN_STATUSES: Final[frozenset[str]] = frozenset({"running", "succeeded", "failed", "cancelled"})
FINAL_RUN_STATUSES: Final[frozenset[str]] = RUN_STATUSES - {"running"}
TASK_STATUSES: Final[frozenset[str]] = frozenset(
    {"succeeded", "failed", "cancelled", "skipped", "retrying", "iterating"}
)

ERROR_TEXT_LIMIT: Final = 1000
"""``RunInfo.error`` is a summary: longer texts are cut to this many characters."""


class RecordKind(enum.StrEnum):
    """What a journal record says happened.

    Stores keep the kind as its text value, so a new kind needs no schema change;
    a store refuses to read back a kind this version of aioflow does not know
    (it was written by a newer version).
    """

    RUN_STARTED = "run_started"
    """The run began: workflow fingerprint and inputs (in ``data``)."""
    TASK_STARTED = "task_started"
    """A task attempt started (``task_name``, ``attempt``)."""
    TASK_FINISHED = "task_finished"
    """A task attempt ended (``task_name``, ``attempt``, ``status``: a :data:`TaskStatus`)."""
    TASK_ADDED = "task_added"
    """A task was added at run time (``ctx.next_task``), named ``task_name``."""
    CHANNEL_WRITE = "channel_write"
    """A write to the run's channel (key and value in ``data``)."""
    CONTROL = "control"
    """A control request (terminate, cancel, goto...) made by a task or an operator."""
    RUN_FINISHED = "run_finished"
    """The run ended; ``status`` may carry its final :data:`RunStatus`."""
    SEAL = "seal"
    """The signature of the records of one batch (the engine's; opaque to stores)."""


KINDS_NEEDING_TASK: Final = frozenset(
    {RecordKind.TASK_STARTED, RecordKind.TASK_FINISHED, RecordKind.TASK_ADDED}
)
"""The kinds whose records must name a task."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One entry of a run's journal.

    Attributes:
        kind: what happened.
        task_name: the task concerned (required for ``task_*`` kinds), else None.
        attempt: the attempt number (an int >= 0) where one applies.
        status: for ``task_finished``, the attempt's :data:`TaskStatus` (required);
            for ``run_finished``, optionally the run's final status; else None.
        at: when it happened (seconds since the epoch).
        data: opaque bytes (the engine's signed payload); never interpreted by a store.
        seq: the record's position in its run, 1, 2, 3...; assigned by the store on
            append. Records are appended with ``seq=0``.
    """

    kind: RecordKind
    task_name: str | None = None
    attempt: int | None = None
    status: str | None = None
    at: float = 0.0
    data: bytes = b""
    seq: int = 0


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The summary of one run, as the store keeps it.

    Counters are kept by the store from the records it is given
    (``task_finished`` with status ``"succeeded"`` / ``"failed"``) and from
    ``tasks_total=`` on append; they are updated in place, never recomputed.

    Attributes:
        run_id: unique in the store.
        workflow: the workflow's name.
        fingerprint: the digest of the workflow's shape, to match it on resume.
        status: ``"running"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
        started_at: seconds since the epoch.
        finished_at: seconds since the epoch, None while running.
        tasks_total: how many tasks the run has (it can grow: tasks added at run time).
        tasks_succeeded: tasks finished with status ``"succeeded"``.
        tasks_failed: tasks finished with status ``"failed"``.
        error: a short summary of why the run failed or was cancelled (at most
            :data:`ERROR_TEXT_LIMIT` characters), else None.
        updated_at: when the store last wrote to this run (the store's clock).
        last_seq: the ``seq`` of the run's last record (0 when it has none).
    """

    run_id: str
    workflow: str
    fingerprint: str = ""
    status: RunStatus = "running"
    started_at: float = 0.0
    finished_at: float | None = None
    tasks_total: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    error: str | None = None
    updated_at: float = 0.0
    last_seq: int = 0

    @property
    def finished(self) -> bool:
        """True once the run has a final status."""
        return self.status != "running"

    @property
    def duration(self) -> float | None:
        """``finished_at - started_at``, or None while the run is running."""
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of what a store holds (``await store.statistics()``).

    Attributes:
        runs: runs in the store.
        running: of which still running (or abandoned by a process that died).
        records: journal records, all runs together.
        blobs: distinct blobs.
        blob_bytes: their total size in bytes.
    """

    runs: int
    running: int
    records: int
    blobs: int
    blob_bytes: int


@dataclass(slots=True)
class BatchCounts:
    """What a batch of records adds to its run's counters."""

    records: int = 0
    succeeded: int = 0
    failed: int = 0


def blob_digest(data: bytes) -> str:
    """The content digest that names a blob: ``"sha256:"`` + 64 hex digits."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short_error(error: str | None) -> str | None:
    """``error`` cut to :data:`ERROR_TEXT_LIMIT` characters (an ellipsis marks a cut)."""
    if error is None or len(error) <= ERROR_TEXT_LIMIT:
        return error
    return error[: ERROR_TEXT_LIMIT - 1] + "…"
