"""``aioflow runs`` / ``inspect``: what a run store holds, as data (JSON-ready).

:func:`inspect_run` reads one run: its summary, its journal's timeline, and the
error snapshot of each failed attempt (exception type, message, traceback,
arguments summary, worker). The journal is decoded with
:func:`aioflow.journal.load_journal`. When that fails — another signing key, or,
typically, a record holding an object (the task's own exception, a result) whose
class does not import in this process — the summary and the timeline (store
metadata, nothing decoded) are given anyway, with a warning that says why.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from ..errors import AioflowError, CheckpointError
from ..journal import Outcome, load_journal
from ..serialization import Keyring
from ..stores import JournalRecord, RecordKind, RunInfo, RunStatus, RunStore
from .report import jsonable
from .stores import StoreTarget

__all__ = [
    "Failure",
    "Inspection",
    "find_run",
    "inspect_document",
    "inspect_run",
    "iso_time",
    "list_runs",
    "purge_runs",
    "read_run",
    "run_object",
    "runs_command",
    "runs_document",
]

#: A run id shorter than this is never completed from a prefix.
MIN_PREFIX: Final = 4
#: The statuses of a failed attempt (``retrying``: another attempt followed). A
#: cancelled attempt has a snapshot too, but it did not fail: it is left out.
FAILED: Final = frozenset({"failed", "retrying"})


def iso_time(at: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC (``2025-01-31T12:00:00.250000+00:00``)."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def run_object(info: RunInfo) -> dict[str, Any]:
    """A run's summary as JSON-ready data: ISO times, durations in seconds."""
    return {
        "run_id": info.run_id,
        "workflow": info.workflow,
        "status": info.status,
        "started_at": iso_time(info.started_at),
        "finished_at": iso_time(info.finished_at),
        "duration": info.duration,
        "tasks_total": info.tasks_total,
        "tasks_succeeded": info.tasks_succeeded,
        "tasks_failed": info.tasks_failed,
        "error": info.error,
        "updated_at": iso_time(info.updated_at),
        "records": info.last_seq,
        "fingerprint": info.fingerprint,
    }


def runs_document(store: str, runs: Sequence[RunInfo]) -> dict[str, Any]:
    """What ``aioflow runs --json`` prints: the store and its runs, newest first."""
    return {"store": store, "runs": [run_object(info) for info in runs]}


# --- the commands' work: list, read, purge --------------------------------------------


def runs_command(target: StoreTarget) -> str:
    """The ``aioflow runs`` command that lists ``target``'s runs."""
    return "aioflow runs" if target.history else f"aioflow runs --store {shlex.quote(target.text)}"


async def list_runs(
    target: StoreTarget, workflow: str | None, status: RunStatus | None, limit: int | None
) -> list[RunInfo]:
    """``aioflow runs``: the runs of ``target``, newest first (none in an absent history).

    Raises:
        CheckpointError: ``target`` (not the history) does not exist, or cannot be read.
    """
    if target.history and target.missing():
        return []  # nothing recorded yet
    target.require_existing()
    async with target.open() as store:
        return await store.list_runs(workflow=workflow, status=status, limit=limit)


async def read_run(target: StoreTarget, run_id: str) -> Inspection:
    """``aioflow inspect``: the run ``run_id`` (or the one its prefix names) of ``target``.

    Raises:
        CheckpointError: no such run (the hint says how to list them), a store that
            does not exist or cannot be read.
    """
    if target.history and target.missing():
        raise CheckpointError(
            f"no run {run_id!r}: there is no run history at {target.path} yet",
            hint="`aioflow run` records the runs it starts there (unless --no-history); "
            "for a run started with --checkpoint URL_OR_PATH, give --store URL_OR_PATH.",
            run_id=run_id,
        )
    target.require_existing()
    try:
        keyring: Keyring | None = Keyring.from_env()
    except AioflowError:
        keyring = None  # the summary and the timeline can still be shown
    async with target.open() as store:
        info = await find_run(store, run_id, runs_command=runs_command(target))
        return await inspect_run(store, info, keyring)


async def purge_runs(target: StoreTarget, seconds: float, status: RunStatus | None) -> int:
    """``aioflow purge``: remove the runs of ``target`` that finished ``seconds`` ago.

    Raises:
        CheckpointError: ``target`` (not the history) does not exist, or cannot be used.
    """
    if target.history and target.missing():
        return 0
    target.require_existing()
    async with target.open() as store:
        return await store.purge(older_than=seconds, status=status)


async def find_run(store: RunStore, run_id: str, *, runs_command: str) -> RunInfo:
    """The run ``run_id`` of ``store``, or the one run whose id starts with it.

    Raises:
        CheckpointError: no such run (the hint names ``runs_command``), or a prefix
            that several runs share.
    """
    try:
        return await store.get_run(run_id)
    except CheckpointError as exc:
        if exc.run_id != run_id:
            raise  # not "unknown run": the database failed
    if len(run_id) >= MIN_PREFIX:
        runs = await store.list_runs(limit=None)
        found = [info for info in runs if info.run_id.startswith(run_id)]
        if len(found) == 1:
            return found[0]
        if found:
            listed = ", ".join(info.run_id for info in found[:5])
            raise CheckpointError(
                f"{len(found)} runs in {store.describe()} have an id starting with "
                f"{run_id!r}: {listed}{', ...' if len(found) > 5 else ''}",
                hint="Give more of the run id.",
                run_id=run_id,
            )
    raise CheckpointError(
        f"no run {run_id!r} in {store.describe()}",
        hint=f"List the runs with `{runs_command}`; a run id may be shortened to its first "
        f"characters (at least {MIN_PREFIX}). Finished runs are removed after a while "
        "(`aioflow purge`, retention).",
        run_id=run_id,
    )


@dataclass(slots=True)
class Failure:
    """The error snapshot of one failed attempt, as the journal recorded it."""

    task: str
    attempt: int | None
    iteration: int | None
    status: str | None  # "failed", or "retrying" (another attempt followed)
    at: float
    duration: float | None
    worker: str | None
    type: str
    message: str
    traceback: str
    code: str | None
    args: dict[str, str]


@dataclass(slots=True)
class Inspection:
    """One run, read back: summary, timeline, failures, what was in flight."""

    store: str
    info: RunInfo
    inputs: dict[str, Any] | None
    timeline: list[JournalRecord]
    failures: list[Failure]
    in_flight: list[tuple[str, int | None]] = field(default_factory=list)
    warning: str | None = None  # why the journal was not fully decoded

    @property
    def origin(self) -> float:
        """Time zero of the timeline: the run's start, or its first record if earlier."""
        first = self.timeline[0].at if self.timeline else self.info.started_at
        return min(first, self.info.started_at)


async def inspect_run(store: RunStore, info: RunInfo, keyring: Keyring | None) -> Inspection:
    """Read the run ``info`` of ``store`` (see the module documentation).

    When the journal cannot be decoded here (``keyring`` None: no key could be made;
    another key; classes that do not import in this process), the summary and the
    timeline are still given, without inputs and snapshots, and ``warning`` says why.
    """
    problem: AioflowError | None = None
    if keyring is not None:
        try:
            recorded = await load_journal(store, info.run_id, keyring, lenient=True)
        except CheckpointError as exc:
            problem = exc
        else:
            failures = [
                failure
                for event in recorded.events
                if isinstance(event, Outcome) and (failure := _failure(event)) is not None
            ]
            return _inspection(store, recorded.info, recorded.inputs, recorded.timeline, failures)
    info = await store.get_run(info.run_id)
    timeline = await store.read(info.run_id)
    return _inspection(store, info, None, timeline, [], warning=_why(problem))


def _why(problem: AioflowError | None) -> str:
    """Why a journal was not decoded, and what to do about it."""
    if problem is None:
        return "no signing key could be loaded (see AIOFLOW_SECRET_KEY, AIOFLOW_HOME)"
    cause: BaseException | None = problem
    while cause is not None and not isinstance(cause, ModuleNotFoundError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ModuleNotFoundError) or "No module named" in problem.message:
        return (
            f"{problem.message}. The journal holds objects (the tasks' exceptions, results) "
            "whose classes do not import in this process: run `aioflow inspect` where the "
            "workflow's modules import (e.g. PYTHONPATH=the workflow's directory)."
        )
    return f"{problem.message}. {problem.hint}"


def _inspection(
    store: RunStore,
    info: RunInfo,
    inputs: dict[str, Any] | None,
    timeline: list[JournalRecord],
    failures: list[Failure],
    *,
    warning: str | None = None,
) -> Inspection:
    return Inspection(
        store=store.describe(),
        info=info,
        inputs=inputs,
        timeline=timeline,
        failures=failures,
        in_flight=_in_flight(timeline),
        warning=warning,
    )


def _failure(outcome: Outcome) -> Failure | None:
    snapshot = outcome.snapshot
    if snapshot is None or outcome.status not in FAILED:
        return None
    return Failure(
        task=outcome.task,
        attempt=outcome.attempt,
        iteration=outcome.iteration,
        status=outcome.status,
        at=outcome.at,
        duration=outcome.duration,
        worker=outcome.worker,
        type=str(snapshot.get("type") or "?"),
        message=str(snapshot.get("message") or ""),
        traceback=str(snapshot.get("traceback") or ""),
        code=_text_or_none(snapshot.get("code")),
        args=_args(snapshot.get("args")),
    )


def _in_flight(timeline: Sequence[JournalRecord]) -> list[tuple[str, int | None]]:
    """Attempts the journal saw start and not finish (running when it ended)."""
    started: Counter[tuple[str, int | None]] = Counter()
    for record in timeline:
        if record.task_name is None:
            continue
        key = (record.task_name, record.attempt)
        if record.kind is RecordKind.TASK_STARTED:
            started[key] += 1
        elif record.kind is RecordKind.TASK_FINISHED and started[key] > 0:
            started[key] -= 1
    return [key for key, count in started.items() if count > 0]


def _args(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v if isinstance(v, str) else repr(v) for k, v in value.items()}


def _text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


# --- the JSON document -------------------------------------------------------------------


def inspect_document(inspection: Inspection) -> dict[str, Any]:
    """What ``aioflow inspect --json`` prints."""
    info = inspection.info
    start = inspection.origin
    return {
        "store": inspection.store,
        "run": run_object(info),
        "inputs": None if inspection.inputs is None else jsonable(inspection.inputs),
        "timeline": [
            {
                "seq": record.seq,
                "at": iso_time(record.at),
                "elapsed": record.at - start,
                "kind": record.kind.value,
                "task": record.task_name,
                "attempt": record.attempt,
                "status": record.status,
            }
            for record in inspection.timeline
        ],
        "failures": [
            {
                "task": f.task,
                "attempt": f.attempt,
                "iteration": f.iteration,
                "status": f.status,
                "at": iso_time(f.at),
                "duration": f.duration,
                "worker": f.worker,
                "type": f.type,
                "message": f.message,
                "code": f.code,
                "args": f.args,
                "traceback": f.traceback,
            }
            for f in inspection.failures
        ],
        "in_flight": [{"task": task, "attempt": attempt} for task, attempt in inspection.in_flight],
        "warning": inspection.warning,
    }
