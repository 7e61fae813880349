"""The run journal: a run's durable state as a sequence of small signed records.

A journaled run (``run(wf, checkpoint="sqlite:///path/runs.db")``) writes, through
a :class:`~aioflow.stores.RunStore`:

* ``run_started``: the workflow's name and fingerprint, and the run's inputs;
* ``task_started`` for an attempt still running when a batch is committed
  (metadata only, for the timeline: one that started and finished between two
  commits needs no record of its own, its ``task_finished`` says when it ran);
* ``task_finished`` per attempt: its outcome — the value (large values as a blob,
  stored once and referenced by digest), or the error snapshot (type, message,
  traceback, a summary of the arguments) — its control requests, duration, worker;
* ``channel_write`` per channel write (the operation, key and value);
* ``run_finished`` with the final status.

Each record's ``data`` is numbered, and every committed batch ends with a ``seal``
record: an HMAC (the run's keyring) over the batch's records, bound to the run and
their numbers (:func:`~aioflow.serialization.seal_batch`; one signature per batch,
not per record). A tampered, reordered, missing or unsealed record is refused on
resume with :class:`~aioflow.errors.CheckpointError` before anything in it is
unpickled. The
records of one scheduler batch are committed together (group commit), before
anything that follows the tasks they record starts: the cost of recording a
completion is O(1), whatever the size of the run.

Resuming replays the journal through the scheduler itself (see
:meth:`aioflow.engine.Scheduler.replay`): the recorded outcomes are fed, in the
order the run handled them, into the same state machine, which rebuilds every
join counter, group outcome, loop and dynamic task exactly; tasks that finished
are never run again; attempts that were running when the process died run again.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .backends.base import Status
from .errors import AioflowError, CheckpointError, SerializationError
from .serialization import (
    ErrorInfo,
    Keyring,
    PayloadKind,
    decode_nested,
    decode_value,
    encode_value,
    open_batch,
    pack_document,
    seal_batch,
)
from .stores import JournalRecord, RecordKind, RunInfo, RunStore, blob_digest

if TYPE_CHECKING:
    from .backends.base import Execution
    from .graph import TaskGraph

__all__ = ["BLOB_THRESHOLD", "Journal", "Outcome", "Recorded", "fingerprint", "load_journal"]

#: Values whose encoding is larger than this are stored as blobs (once, by digest).
BLOB_THRESHOLD = 64 * 1024
_ARG_REPR = 200  # characters of each argument's repr kept in an error snapshot
_FORMAT = 1


def fingerprint(graph: TaskGraph) -> str:
    """A digest of the graph's shape (names, edges, groups), to match journals on resume."""
    h = hashlib.sha256()
    for name in sorted(graph.successors):
        h.update(name.encode() + b"\0")
        for succ in sorted(graph.successors[name]):
            h.update(b">" + succ.encode() + b"\0")
    for name in sorted(graph.groups):
        h.update(b"|" + name.encode() + b"\0")
        for member in graph.groups[name].member_names:
            h.update(member.encode() + b"\0")
    return h.hexdigest()


def _seal(keyring: Keyring, value: object, root: str) -> bytes:
    return encode_value(value, keyring, allow_pickle=True, kind=PayloadKind.CHECKPOINT, root=root)


def _open(keyring: Keyring, data: bytes, what: str) -> Any:
    try:
        return decode_value(data, keyring, allow_pickle=True, kind=PayloadKind.CHECKPOINT)
    except AioflowError as exc:
        raise CheckpointError(
            f"the journal's {what} is corrupt, tampered with, or signed with another key: {exc}",
            hint="Resume with the AIOFLOW_SECRET_KEY that wrote the run; a damaged journal "
            "cannot be used (it is left as it is).",
        ) from exc


def _summary(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for index, value in enumerate(args):
        out[f"#{index}"] = _short_repr(value)
    for name, value in kwargs.items():
        if value is not None or name != "ctx":
            out[name] = _short_repr(value)
    return out


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not stop the journal
        text = f"<{type(value).__name__}: repr failed: {exc}>"
    return text if len(text) <= _ARG_REPR else text[: _ARG_REPR - 1] + "…"


class Journal:
    """Writes one run's journal; records wait in a batch until :meth:`flush`.

    Only the scheduler coroutine calls it (the channel records through it too,
    from tasks, on the same loop): no lock is needed.
    """

    def __init__(self, store: RunStore, keyring: Keyring, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._keyring = keyring
        self._batch: list[JournalRecord] = []
        self._blobs: dict[str, bytes] = {}
        self._n = 0  # signed records written so far (their number travels signed)
        self._started: list[Execution] = []  # dispatched, no task_started record yet
        self._dispatched = False  # executions were dispatched since the last look at them
        self._documents: list[bytes] = []  # of the records not sealed yet
        self._committing: anyio.Event | None = None  # set when the commit in flight ends
        self.tasks_total: int | None = None

    @property
    def pending(self) -> bool:
        """True when records wait to be committed (or new dispatches to look at).

        Executions still waiting to start (for a slot, or for a remote worker to
        report) do not count once looked at: a commit would have nothing to write
        for them, and a background commit loop would spin on them.
        """
        return bool(self._batch) or self._dispatched

    @property
    def backlog(self) -> int:
        """How many records wait to be committed."""
        return len(self._batch)

    def _signed(self, kind: RecordKind, payload: dict[str, Any], **meta: Any) -> None:
        """Add a numbered record; it is signed with its batch (see :meth:`_seal`)."""
        payload["n"] = self._n + 1
        data = pack_document(payload, root=kind.value)  # may raise: then nothing counts
        self._n += 1
        self._documents.append(data)
        self._batch.append(JournalRecord(kind, at=time.time(), data=data, **meta))

    def _seal(self) -> None:
        documents = self._documents
        if not documents:
            return
        last = self._n
        context = _context(self.run_id, last - len(documents) + 1, last)
        sealed = seal_batch(documents, self._keyring, context=context)
        self._batch.append(JournalRecord(RecordKind.SEAL, at=time.time(), data=sealed))
        self._documents = []

    async def begin(
        self,
        workflow: str,
        fingerprint: str,
        inputs: Mapping[str, Any],
        tasks_total: int,
        *,
        backend: str | None = None,
    ) -> None:
        """Create the run in the store with its ``run_started`` record (committed now).

        ``backend``: the scheme of the distributed backend the run's tasks go to
        (``"redis"``), so that a resume sends them there again; None in-process.
        """
        self._n = 0
        payload: dict[str, Any] = {
            "format": _FORMAT,
            "workflow": workflow,
            "fingerprint": fingerprint,
            "inputs": dict(inputs),
        }
        if backend is not None:
            payload["backend"] = backend
        self._signed(RecordKind.RUN_STARTED, payload)
        self._seal()
        records, self._batch = self._batch, []
        info = RunInfo(
            run_id=self.run_id,
            workflow=workflow,
            fingerprint=fingerprint,
            started_at=time.time(),
            tasks_total=tasks_total,
        )
        await self.store.begin_run(info, records)

    def continue_after(self, replayed: Recorded) -> None:
        """Go on numbering after the records of a journal that was replayed."""
        self._n = replayed.last_n

    def task_started(self, execution: Execution) -> None:
        """Note a dispatched attempt: recorded at the next commit if it still runs then."""
        self._started.append(execution)
        self._dispatched = True

    def _still_running(self) -> None:
        # An attempt that started and is still running gets its task_started record
        # now; one still waiting for a slot is looked at again at the next commit.
        self._dispatched = False
        if not self._started:
            return
        now = time.time()
        waiting: list[Execution] = []
        for execution in self._started:
            if execution.status is Status.PENDING:
                if execution.started:
                    self._batch.append(
                        JournalRecord(
                            RecordKind.TASK_STARTED,
                            task_name=execution.name,
                            attempt=execution.attempt,
                            at=now,
                        )
                    )
                else:
                    waiting.append(execution)
        self._started = waiting

    def task_finished(self, execution: Execution, status: str, *, late: bool = False) -> None:
        """Record the outcome of ``execution`` (``status``: the store's task status).

        Raises:
            CheckpointError: the value cannot be stored (it cannot be encoded).
        """
        payload: dict[str, Any] = {
            "task": execution.name,
            "attempt": execution.attempt,
            "iteration": execution.iteration,
            "outcome": execution.status.name,
            "duration": execution.duration,
            "started": execution.started,
        }
        if late:
            payload["late"] = True
        if execution.worker_id is not None:
            payload["worker"] = execution.worker_id
        requests = execution.requests
        if requests is not None:
            payload["requests"] = {
                "iterate": requests.iterate,
                "data": requests.iteration_data,
                "next": [list(item) for item in requests.next_tasks or ()],
                "terminate": requests.terminate,
                "cancel": requests.cancel,
            }
        if execution.error is not None:
            info = ErrorInfo.from_exception(execution.error)
            payload["error"] = [info.type_name, info.message, info.traceback, info.code]
            payload["args"] = _summary(execution.args, execution.kwargs)
            # Nested: a reader that cannot rebuild it still reads the snapshot (and
            # one that cannot be pickled at all is told by the snapshot alone).
            with contextlib.suppress(SerializationError):
                payload["exception"] = pack_document(execution.error, root="exception")
        elif execution.value is not None:
            self._value(payload, execution.name, execution.value)
        try:
            self._signed(
                RecordKind.TASK_FINISHED,
                payload,
                task_name=execution.name,
                attempt=execution.attempt,
                status=status,
            )
        except SerializationError as exc:  # control request data that cannot be stored
            raise self._unstorable(execution.name, exc) from exc

    def _value(self, payload: dict[str, Any], task: str, value: Any) -> None:
        """The value nested in ``payload`` (``v``), or as a blob (``blob``) when large."""
        try:
            document = pack_document(value, root=f"result of {task!r}")
        except SerializationError as exc:
            raise self._unstorable(task, exc) from exc
        if len(document) <= BLOB_THRESHOLD:
            payload["v"] = document
            return
        data = _seal(self._keyring, value, f"result of {task!r}")  # a blob is signed alone
        digest = blob_digest(data)
        self._blobs[digest] = data
        payload["blob"] = digest

    def _unstorable(self, task: str, exc: SerializationError) -> CheckpointError:
        return CheckpointError(
            f"the result of task {task!r} cannot be journaled: {exc}",
            hint="A journaled run stores every result: return data the codec or pickle "
            "can encode (not locks, sockets or open files).",
            run_id=self.run_id,
            task_name=task,
        )

    def task_added(self, name: str, by: str) -> None:
        self._signed(RecordKind.TASK_ADDED, {"task": name, "by": by}, task_name=name)

    def channel_write(self, op: str, key: str, value: Any = None) -> None:
        """Record a channel operation: ``set``, ``delete``, ``incr`` (its new value), ``append``."""
        self._signed(RecordKind.CHANNEL_WRITE, {"op": op, "key": key, "value": value})

    async def _wait_for_commit(self) -> None:
        # One commit at a time, in order. Not a lock: when none is in flight (the
        # usual case) this does not even yield to the loop.
        while self._committing is not None:
            await self._committing.wait()

    async def flush(self) -> None:
        """Commit the waiting records (one transaction), after a commit in flight.

        When it returns, every record made before the call is durable.
        """
        await self._wait_for_commit()
        self._still_running()
        if not self._batch:
            return
        self._seal()
        batch, self._batch = self._batch, []
        blobs, self._blobs = self._blobs, {}
        done = self._committing = anyio.Event()
        try:
            await self.store.append(self.run_id, batch, blobs=blobs, tasks_total=self.tasks_total)
        finally:
            self._committing = None
            done.set()

    async def finish(self, status: str, error: BaseException | None) -> None:
        """Commit the last records and the run's final status."""
        await self._wait_for_commit()
        await self._finish(status, error)

    async def _finish(self, status: str, error: BaseException | None) -> None:
        self._started.clear()  # the run is over: nothing is running any more
        self._dispatched = False
        self._signed(RecordKind.RUN_FINISHED, {"status": status}, status=status)
        self._seal()
        batch, self._batch = self._batch, []
        blobs, self._blobs = self._blobs, {}
        await self.store.finish_run(
            self.run_id,
            status,  # type: ignore[arg-type]
            error=None if error is None else f"{type(error).__name__}: {error}",
            records=batch,
            blobs=blobs,
            tasks_total=self.tasks_total,
        )


# --- reading a journal back -----------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One recorded task attempt, decoded."""

    task: str
    attempt: int
    iteration: int
    outcome: str  # a Status name: SUCCEEDED, FAILED, CANCELLED, NOT_STARTED
    duration: float
    started: bool
    late: bool
    worker: str | None
    value: Any
    error: BaseException | None
    requests: dict[str, Any] | None
    snapshot: dict[str, Any] | None  # type, message, traceback, code, args (failures)
    at: float
    status: str | None


@dataclass(slots=True)
class Recorded:
    """A run's journal, decoded and checked."""

    info: RunInfo
    workflow: str
    fingerprint: str
    inputs: dict[str, Any]
    events: list[Outcome | tuple[str, str, Any]] = field(default_factory=list)
    backend: str | None = None  # the distributed backend's scheme, if the run had one
    timeline: list[JournalRecord] = field(default_factory=list)
    last_n: int = 1


def _context(run_id: str, first: int, last: int) -> str:
    return f"aioflow-journal:{run_id}:{first}-{last}"


async def load_journal(
    store: RunStore, run_id: str, keyring: Keyring, *, lenient: bool = False
) -> Recorded:
    """Read, verify and decode the journal of ``run_id``.

    Every batch is checked against its seal before any of its records is decoded.
    ``lenient=True`` (for inspection, where the workflow's code may not be
    importable) leaves out the results that cannot be rebuilt here instead of
    failing; a task's exception that cannot be rebuilt always comes back as a
    :class:`~aioflow.errors.RemoteTaskError` made from its snapshot.

    Raises:
        CheckpointError: unknown run, or records that are tampered with, signed with
            another key, missing, reordered or not sealed.
    """
    info = await store.get_run(run_id)
    records = await store.read(run_id)
    recorded: Recorded | None = None
    waiting: list[JournalRecord] = []
    n = 0
    for record in records:
        if record.kind is RecordKind.SEAL:
            context = _context(run_id, n + 1, n + len(waiting))
            try:
                payloads = open_batch(
                    [r.data for r in waiting], record.data, keyring, context=context
                )
            except AioflowError as exc:
                raise _damaged(run_id, record.seq, exc) from exc
            for waited, payload in zip(waiting, payloads, strict=True):
                n += 1
                if not isinstance(payload, dict) or payload.get("n") != n:
                    raise _damaged(run_id, waited.seq, None)
                if recorded is None:
                    recorded = _head(info, waited, payload, records)
                else:
                    await _event(recorded, store, keyring, waited, payload, lenient)
            waiting = []
        elif record.data:
            waiting.append(record)
    if waiting or recorded is None:
        raise _damaged(run_id, waiting[0].seq if waiting else 0, None)
    recorded.last_n = n
    return recorded


def _damaged(run_id: str, seq: int, exc: AioflowError | None) -> CheckpointError:
    why = f": {exc}" if exc is not None else ""
    return CheckpointError(
        f"the journal of run {run_id} is corrupt, tampered with, or signed with another "
        f"key (at record {seq}){why}",
        hint="Resume with the AIOFLOW_SECRET_KEY that wrote the run (keep old keys in "
        "AIOFLOW_SECRET_KEYS_OLD); a damaged journal cannot be used (it is left as it is).",
        run_id=run_id,
    )


def _head(
    info: RunInfo, record: JournalRecord, payload: dict[str, Any], records: list[JournalRecord]
) -> Recorded:
    if record.kind is not RecordKind.RUN_STARTED or payload.get("format") != _FORMAT:
        raise CheckpointError(
            f"run {info.run_id} was journaled in a format this aioflow does not read",
            hint="Resume it with the aioflow version that wrote it.",
            run_id=info.run_id,
        )
    return Recorded(
        info=info,
        workflow=payload["workflow"],
        fingerprint=payload["fingerprint"],
        inputs=dict(payload["inputs"]),
        timeline=records,
        backend=payload.get("backend"),
    )


async def _event(
    recorded: Recorded,
    store: RunStore,
    keyring: Keyring,
    record: JournalRecord,
    payload: dict[str, Any],
    lenient: bool,
) -> None:
    if record.kind is RecordKind.TASK_FINISHED:
        recorded.events.append(await _outcome(store, keyring, record, payload, lenient))
    elif record.kind is RecordKind.CHANNEL_WRITE:
        recorded.events.append(("channel", payload["op"], (payload["key"], payload["value"])))


async def _outcome(
    store: RunStore,
    keyring: Keyring,
    record: JournalRecord,
    payload: dict[str, Any],
    lenient: bool,
) -> Outcome:
    value: Any = None
    try:
        if "v" in payload:
            value = decode_nested(payload["v"])
        elif "blob" in payload:
            value = _open(keyring, await store.get_blob(payload["blob"]), "result blob")
    except AioflowError as exc:
        if not lenient:
            raise CheckpointError(
                f"the result of task {payload['task']!r} in the journal cannot be rebuilt "
                f"here: {exc}",
                hint="Resume where the workflow's modules (and the classes of its results) "
                "are importable.",
                task_name=payload["task"],
            ) from exc
    error: BaseException | None = None
    snapshot = None
    if "error" in payload:
        type_name, message, traceback, code = payload["error"]
        snapshot = {
            "type": type_name,
            "message": message,
            "traceback": traceback,
            "code": code,
            "args": payload.get("args", {}),
        }
        try:
            rebuilt = decode_nested(payload["exception"]) if "exception" in payload else None
        except AioflowError:
            rebuilt = None  # its class is not importable here: the snapshot says it all
        if isinstance(rebuilt, BaseException):
            error = rebuilt
        else:
            from .errors import RemoteTaskError

            error = RemoteTaskError(
                type_name, message, remote_traceback=traceback, remote_code=code
            )
    return Outcome(
        task=payload["task"],
        attempt=payload["attempt"],
        iteration=payload["iteration"],
        outcome=payload["outcome"],
        duration=payload["duration"],
        started=payload["started"],
        late=payload.get("late", False),
        worker=payload.get("worker"),
        value=value,
        error=error,
        requests=payload.get("requests"),
        snapshot=snapshot,
        at=record.at,
        status=record.status,
    )
