"""Validation shared by every store, so that each refuses the same inputs the same way.

Every refusal is a :class:`~aioflow.errors.CheckpointError` (the store was given
something it cannot journal) whose hint says that nothing of the batch was stored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from ..errors import CheckpointError
from .records import (
    FINAL_RUN_STATUSES,
    KINDS_NEEDING_TASK,
    TASK_STATUSES,
    BatchCounts,
    JournalRecord,
    RecordKind,
    RunInfo,
    blob_digest,
)

__all__ = [
    "check_blobs",
    "check_final_status",
    "check_new_run",
    "check_records",
    "check_run_id",
    "check_tasks_total",
]

_MAX_INT64: Final = 2**63 - 1
_RUN_ID_LIMIT: Final = 200
_NAME_LIMIT: Final = 1000


def _invalid(message: str, *, run_id: str | None = None) -> CheckpointError:
    return CheckpointError(
        message,
        hint="This is a bug in the code writing the journal: nothing of the batch was stored.",
        run_id=run_id,
    )


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a usable run id (a non-empty str of at most 200 characters)."""
    if not isinstance(run_id, str) or not run_id or len(run_id) > _RUN_ID_LIMIT:
        raise CheckpointError(
            f"invalid run id {run_id!r}: expected a non-empty string of at most "
            f"{_RUN_ID_LIMIT} characters",
            hint="Pass the run_id of a RunResult, a RunHandle or `aioflow runs`.",
        )
    return run_id


def _is_finite_number(value: object) -> bool:
    return type(value) in (float, int) and math.isfinite(value)  # type: ignore[arg-type]


def _check_int(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INT64:
        raise ValueError(f"{what} must be an int >= 0, got {value!r}")
    return value


def _check_record(record: object) -> JournalRecord:
    if not isinstance(record, JournalRecord):
        raise ValueError(f"expected a JournalRecord, got {type(record).__name__}")
    kind = record.kind
    if not isinstance(kind, RecordKind):
        raise ValueError(f"kind must be a RecordKind, got {kind!r}")
    name = record.task_name
    if name is None:
        if kind in KINDS_NEEDING_TASK:
            raise ValueError(f"a {kind} record needs a task_name")
    elif not isinstance(name, str) or not name or len(name) > _NAME_LIMIT:
        raise ValueError(f"task_name must be a non-empty str, got {name!r}")
    if record.attempt is not None:
        _check_int(record.attempt, "attempt")
    status = record.status
    if kind is RecordKind.TASK_FINISHED:
        if status not in TASK_STATUSES:
            raise ValueError(
                f"a task_finished record needs a status among {sorted(TASK_STATUSES)}, "
                f"got {status!r}"
            )
    elif kind is RecordKind.RUN_FINISHED:
        if status is not None and status not in FINAL_RUN_STATUSES:
            raise ValueError(f"run_finished status must be a final run status, got {status!r}")
    elif status is not None:
        raise ValueError(f"a {kind} record has no status, got {status!r}")
    at = record.at
    if not _is_finite_number(at):
        raise ValueError(f"at must be a finite number of seconds, got {at!r}")
    if type(record.data) is not bytes:
        raise ValueError(f"data must be bytes, got {type(record.data).__name__}")
    if record.seq != 0:
        raise ValueError(
            f"seq is assigned by the store; append records with seq=0, got {record.seq!r}"
        )
    if type(at) is int:  # every store gives back a float
        return dataclasses.replace(record, at=float(at))
    return record


def check_records(
    records: Iterable[JournalRecord], counts: BatchCounts, *, run_id: str
) -> Iterator[JournalRecord]:
    """Validate ``records`` one by one, as they are consumed, counting them in ``counts``.

    Lazy on purpose: a store writes each record as it comes out, inside its
    transaction, so an invalid record in the middle of a batch is caught half-way
    and the transaction's rollback (not an up-front check) is what keeps the batch
    all-or-nothing.

    Raises:
        CheckpointError: on the first invalid record (its index is in the message).
    """
    for index, record in enumerate(records):
        try:
            checked = _check_record(record)
        except ValueError as exc:
            raise _invalid(f"record {index} of the batch is invalid: {exc}", run_id=run_id) from exc
        counts.records += 1
        if checked.kind is RecordKind.TASK_FINISHED:
            if checked.status == "succeeded":
                counts.succeeded += 1
            elif checked.status == "failed":
                counts.failed += 1
        yield checked


def check_blobs(blobs: Mapping[str, bytes], *, run_id: str) -> None:
    """Check that every blob is bytes named by its own :func:`blob_digest`.

    Raises:
        CheckpointError: a value is not bytes, or a key is not its value's digest.
    """
    for digest, data in blobs.items():
        if type(data) is not bytes:
            raise _invalid(
                f"blob {digest!r} must be bytes, got {type(data).__name__}", run_id=run_id
            )
        if digest != blob_digest(data):
            raise _invalid(
                f"blob key {digest!r} is not the digest of its data ({blob_digest(data)})",
                run_id=run_id,
            )


def check_tasks_total(tasks_total: object, *, run_id: str) -> int | None:
    """``tasks_total`` if None or an int >= 0."""
    if tasks_total is None:
        return None
    try:
        return _check_int(tasks_total, "tasks_total")
    except ValueError as exc:
        raise _invalid(str(exc), run_id=run_id) from exc


def check_new_run(info: object) -> RunInfo:
    """``info`` if it describes a run that can begin (status running, not finished)."""
    if not isinstance(info, RunInfo):
        raise _invalid(f"begin_run takes a RunInfo, got {type(info).__name__}")
    run_id = check_run_id(info.run_id)
    problems: list[str] = []
    if not isinstance(info.workflow, str) or len(info.workflow) > _NAME_LIMIT:
        problems.append(f"workflow must be a str, got {info.workflow!r}")
    if not isinstance(info.fingerprint, str) or len(info.fingerprint) > _NAME_LIMIT:
        problems.append(f"fingerprint must be a str, got {info.fingerprint!r}")
    if info.status != "running":
        problems.append(f"a new run has status 'running', got {info.status!r}")
    if info.finished_at is not None or info.error is not None:
        problems.append("a new run has no finished_at and no error")
    if not _is_finite_number(info.started_at):
        problems.append(f"started_at must be a finite number, got {info.started_at!r}")
    for field in ("tasks_total", "tasks_succeeded", "tasks_failed"):
        try:
            _check_int(getattr(info, field), field)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise _invalid(f"cannot begin run {run_id}: " + "; ".join(problems), run_id=run_id)
    return info


def check_final_status(status: object, finished_at: object, *, run_id: str) -> None:
    """Check the arguments of ``finish_run``."""
    if status not in FINAL_RUN_STATUSES:
        raise _invalid(
            f"finish_run takes a final status among {sorted(FINAL_RUN_STATUSES)}, got {status!r}",
            run_id=run_id,
        )
    if not _is_finite_number(finished_at):
        raise _invalid(f"finished_at must be a finite number, got {finished_at!r}", run_id=run_id)
