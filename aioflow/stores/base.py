"""The run store contract: where run journals live.

A :class:`RunStore` keeps, for many runs at once, each run's summary
(:class:`~aioflow.stores.RunInfo`) and its journal: an append-only sequence of
small :class:`~aioflow.stores.JournalRecord` objects, plus content-addressed blobs
for large values. It is the engine's durable memory: resuming a run is replaying
its journal.

Guarantees every store gives (the contract suite in ``tests/stores`` checks them
on each one):

* **Atomic batches (group commit).** ``begin_run``, ``append`` and ``finish_run``
  each write their whole batch (records, blobs, counters, status) in one
  transaction: after a failure or a crash, either all of it is there or none of it.
  An invalid record anywhere in a batch fails the call with
  :class:`~aioflow.errors.CheckpointError` and leaves nothing of the batch.
* **Ordering.** The records of a run get consecutive ``seq`` numbers 1, 2, 3... in
  the order they were given; ``read`` returns them in that order. A store keeps
  the journals of concurrent runs apart, also when several store objects or
  several processes share one database.
* **O(1) appends.** Appending a batch costs O(len(batch)) whatever the size of the
  run: no earlier record is rewritten, counters are updated in place.
* **Prefix durability.** A durable store (SQLite) survives the death of the
  process (``kill -9``) at any point with every committed batch intact and
  nothing of an uncommitted one: the journal read back is a prefix, on batch
  boundaries, of what was appended. What survives a power loss depends on the
  store's settings (see ``docs/stores.md``). :class:`MemoryStore` keeps nothing.
* **Opaque payloads.** A store never interprets or decodes ``data``; it never
  imports the engine and never unpickles anything.
* **Cancellation.** A write that has started completes (or fails) as a whole,
  even if the calling task is cancelled meanwhile; the cancellation is then
  delivered. A write is never half done.
* **Not idempotent on purpose.** ``begin_run`` refuses an existing run id;
  ``append`` and ``finish_run`` refuse a finished run; appending the same records
  twice journals them twice. The one idempotent write is storing a blob: a digest
  already present is not stored again.
* **Bounded growth.** ``purge`` removes finished runs with their records and the
  blobs no other run references; ``retention=`` makes every ``finish_run`` purge
  older finished runs. Running runs are never purged.

Every error is an :class:`~aioflow.errors.AioflowError`:
:class:`~aioflow.errors.CheckpointError` for an unknown run, invalid input, or a
missing, unreadable, corrupt or incompatible database;
:class:`~aioflow.errors.ConfigurationError` for bad options.

Writing a store: subclass :class:`RunStore` and implement the ``_``-prefixed
primitives. The public methods (template methods) validate the arguments, open
the store on first use, and turn "not found" answers into errors; the primitives
only do the storage, each write in one transaction.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Final, Self

import anyio

from ..errors import CheckpointError, ConfigurationError
from ._validation import (
    check_blobs,
    check_final_status,
    check_new_run,
    check_records,
    check_run_id,
    check_tasks_total,
)
from .records import (
    FINAL_RUN_STATUSES,
    RUN_STATUSES,
    BatchCounts,
    JournalRecord,
    RunInfo,
    RunStatus,
    StoreStatistics,
    blob_digest,
    short_error,
)

__all__ = ["NO_BLOBS", "Batch", "RunStore"]

NO_BLOBS: Final[Mapping[str, bytes]] = MappingProxyType({})
"""The default of ``blobs=``: no blobs."""

_DEFAULT_PAGE: Final = 1000


@dataclass(slots=True)
class Batch:
    """One write, as a store primitive receives it (already validated, lazily).

    Attributes:
        run_id: the run written to.
        records: the batch's records, validated one by one *as they are consumed*
            (an invalid one raises :class:`~aioflow.errors.CheckpointError` from the
            iterator): consume it inside the transaction, and roll back on error.
        counts: filled while ``records`` is consumed: how many records, and how many
            ``task_finished`` succeeded / failed. Read it after the last record.
        blobs: blobs to store with the batch, digest -> bytes (checked).
        tasks_total: set the run's ``tasks_total`` to this, if not None.
        now: the store's clock at the call, for ``updated_at``.
    """

    run_id: str
    records: Iterator[JournalRecord]
    counts: BatchCounts
    blobs: Mapping[str, bytes]
    tasks_total: int | None
    now: float


class RunStore(ABC):
    """Where run journals live; see the module documentation for the guarantees.

    Use it as ``async with store:`` (or call :meth:`aclose` when done). It opens
    on first use; once closed it refuses every call with
    :class:`~aioflow.errors.CheckpointError`.

    Args:
        retention: seconds; when set, every :meth:`finish_run` also purges the
            *other* runs that finished more than ``retention`` seconds ago, so the
            store does not grow without bound. None (default) keeps every run
            until :meth:`purge`.
        clock: the time source (seconds since the epoch) for ``updated_at``, purge
            cut-offs and default ``finished_at``; tests pass a fake clock.
    """

    def __init__(
        self, *, retention: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        if retention is not None and (
            type(retention) not in (int, float) or not math.isfinite(retention) or retention < 0
        ):
            raise ConfigurationError(
                f"retention must be a number of seconds >= 0 or None, got {retention!r}",
                hint='For example retention=7 * 86400, or "?retention=7d" in a store URL.',
            )
        self.retention: float | None = None if retention is None else float(retention)
        self._clock = clock
        self._state: str = "new"  # "new" -> "open" -> "closed"
        self._open_lock = anyio.Lock()

    # --- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open the store (create or check its database). Idempotent.

        Raises:
            CheckpointError: the store is closed, or its database is missing,
                unreadable, corrupt, or of an incompatible schema.
        """
        if self._state == "open":
            return
        async with self._open_lock:
            if self._state == "closed":
                raise self._closed_error()
            if self._state == "new":
                await self._open()
                self._state = "open"

    async def aclose(self) -> None:
        """Close the store, after the operations in flight. Idempotent."""
        if self._state == "closed":
            return
        # Shielded: a close interrupted half-way would leak the connection.
        with anyio.CancelScope(shield=True):
            async with self._open_lock:
                was_open = self._state == "open"
                self._state = "closed"
                if was_open:
                    await self._close()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._state == "closed"

    async def _ensure_open(self) -> None:
        if self._state != "open":
            await self.open()

    def _closed_error(self) -> CheckpointError:
        return CheckpointError(
            f"{self.describe()} is closed",
            hint="Use the store inside `async with store:`; open a new one after closing it.",
        )

    def describe(self) -> str:
        """Where the store keeps its data, for messages."""
        return type(self).__name__

    # --- writing ---------------------------------------------------------------------

    def _batch(
        self,
        run_id: str,
        records: Iterable[JournalRecord],
        blobs: Mapping[str, bytes],
        tasks_total: int | None,
    ) -> Batch:
        check_blobs(blobs, run_id=run_id)
        counts = BatchCounts()
        return Batch(
            run_id=run_id,
            records=check_records(records, counts, run_id=run_id),
            counts=counts,
            blobs=blobs,
            tasks_total=check_tasks_total(tasks_total, run_id=run_id),
            now=self._clock(),
        )

    async def begin_run(
        self,
        info: RunInfo,
        records: Iterable[JournalRecord] = (),
        *,
        blobs: Mapping[str, bytes] = NO_BLOBS,
    ) -> int:
        """Create the run ``info.run_id`` with its first records, in one transaction.

        ``info`` must be a new run (status ``"running"``, no ``finished_at``); its
        ``tasks_total`` is kept, ``tasks_succeeded`` / ``tasks_failed`` start at
        ``info``'s values plus what ``records`` count; ``updated_at`` and
        ``last_seq`` are the store's.

        Returns:
            the ``seq`` of the run's last record (``len(records)``).

        Raises:
            CheckpointError: a run with this id exists (nothing is written), ``info``
                or a record is invalid, or the database fails.
        """
        info = check_new_run(info)
        await self._ensure_open()
        batch = self._batch(info.run_id, records, blobs, info.tasks_total)
        return await self._begin_run(info, batch)

    async def append(
        self,
        run_id: str,
        records: Iterable[JournalRecord],
        *,
        blobs: Mapping[str, bytes] = NO_BLOBS,
        tasks_total: int | None = None,
    ) -> int:
        """Append a batch of records to a running run, in one transaction (group commit).

        The records get the next consecutive ``seq`` numbers, in order. The run's
        counters grow by the batch's ``task_finished`` records (``"succeeded"`` /
        ``"failed"``); ``tasks_total``, when given, replaces the run's. ``blobs``
        (digest -> bytes, keys from :func:`~aioflow.stores.blob_digest`) are stored
        in the same transaction, each digest once in the whole store, and are kept
        while a run that stored them is. Cost: O(len(records) + size of new blobs),
        whatever the size of the run. An empty batch only updates ``tasks_total``.

        Returns:
            the ``seq`` of the run's last record after this batch.

        Raises:
            CheckpointError: unknown or finished run, an invalid record or blob
                (nothing of the batch is written), or the database fails.
        """
        run_id = check_run_id(run_id)
        await self._ensure_open()
        return await self._append(self._batch(run_id, records, blobs, tasks_total))

    async def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        finished_at: float | None = None,
        error: str | None = None,
        records: Iterable[JournalRecord] = (),
        blobs: Mapping[str, bytes] = NO_BLOBS,
        tasks_total: int | None = None,
    ) -> RunInfo:
        """Append the last records and set the run's final status, in one transaction.

        With ``retention`` set, the same transaction also purges the other runs that
        finished more than ``retention`` seconds ago.

        Args:
            status: ``"succeeded"``, ``"failed"`` or ``"cancelled"``.
            finished_at: seconds since the epoch (default: the store's clock).
            error: why it failed or was cancelled; cut to
                :data:`~aioflow.stores.records.ERROR_TEXT_LIMIT` characters.

        Returns:
            the run's final summary.

        Raises:
            CheckpointError: unknown or already finished run, a bad status, an
                invalid record, or the database fails (nothing is written).
        """
        run_id = check_run_id(run_id)
        now = self._clock()
        finished = now if finished_at is None else finished_at
        check_final_status(status, finished, run_id=run_id)
        await self._ensure_open()
        batch = self._batch(run_id, records, blobs, tasks_total)
        purge_before = None if self.retention is None else now - self.retention
        return await self._finish_run(
            batch, status, float(finished), short_error(error), purge_before
        )

    async def reopen_run(self, run_id: str) -> RunInfo:
        """Make a finished run running again (a failed or cancelled run is resumed).

        Its records stay; new ones follow them. Its ``finished_at`` and ``error`` are
        cleared. A run that is running is returned as it is.

        Raises:
            CheckpointError: unknown run, or one that succeeded (it has nothing left
                to do), or the database fails.
        """
        run_id = check_run_id(run_id)
        await self._ensure_open()
        info = await self._get_run(run_id)
        if info is None:
            raise self.unknown_run(run_id)
        if info.status == "running":
            return info
        if info.status == "succeeded":
            raise CheckpointError(
                f"run {run_id} succeeded: there is nothing left to resume",
                hint="Start a new run with aioflow.run(); `aioflow runs` lists the store's runs.",
                run_id=run_id,
            )
        return await self._reopen_run(run_id, self._clock())

    async def put_blob(self, run_id: str, data: bytes) -> str:
        """Store one blob for the running run ``run_id``; its digest.

        The same as ``append(run_id, [], blobs={blob_digest(data): data})``.
        """
        digest = blob_digest(data) if type(data) is bytes else "(not bytes)"
        await self.append(run_id, (), blobs={digest: data})
        return digest

    # --- reading ---------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunInfo:
        """The summary of run ``run_id``.

        Raises:
            CheckpointError: no such run in this store (hint: ``aioflow runs``).
        """
        run_id = check_run_id(run_id)
        await self._ensure_open()
        info = await self._get_run(run_id)
        if info is None:
            raise self.unknown_run(run_id)
        return info

    async def read(self, run_id: str, *, after: int = 0) -> list[JournalRecord]:
        """The run's records with ``seq > after``, in ``seq`` order.

        Raises:
            CheckpointError: no such run, a record that cannot be read back (corrupt,
                or of a kind written by a newer aioflow), or the database fails.
        """
        run_id = check_run_id(run_id)
        after = _check_after(after)
        await self._ensure_open()
        return await self._read(run_id, after, None)

    async def iter_records(
        self, run_id: str, *, after: int = 0, page_size: int = _DEFAULT_PAGE
    ) -> AsyncIterator[JournalRecord]:
        """The run's records with ``seq > after`` in ``seq`` order, read a page at a time.

        For large runs: memory stays bounded by ``page_size``. Records appended
        while iterating are included (the journal only grows at its end).

        Raises:
            CheckpointError: as :meth:`read`, also when the run is purged meanwhile.
        """
        run_id = check_run_id(run_id)
        after = _check_after(after)
        if type(page_size) is not int or page_size < 1:
            raise ConfigurationError(f"page_size must be an int >= 1, got {page_size!r}")
        await self._ensure_open()
        while True:
            page = await self._read(run_id, after, page_size)
            for record in page:
                yield record
            if len(page) < page_size:
                return
            after = page[-1].seq

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | None = None,
        limit: int | None = 50,
    ) -> list[RunInfo]:
        """Runs, newest first (by ``started_at``, then by creation order).

        Args:
            workflow: only runs of this workflow.
            status: only runs with this status.
            limit: at most this many (None: all).

        Raises:
            ConfigurationError: an unknown status or a bad limit.
        """
        if status is not None and status not in RUN_STATUSES:
            raise ConfigurationError(
                f"unknown run status {status!r}; expected one of {sorted(RUN_STATUSES)}"
            )
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ConfigurationError(f"limit must be an int >= 1 or None, got {limit!r}")
        await self._ensure_open()
        return await self._list_runs(workflow, status, limit)

    async def get_blob(self, digest: str) -> bytes:
        """The blob named ``digest``, checked against its digest.

        Raises:
            CheckpointError: no such blob (never stored, or purged with its runs), or
                its bytes do not match the digest (the database is corrupt).
        """
        await self._ensure_open()
        data = await self._get_blob(digest)
        if data is None:
            raise CheckpointError(
                f"no blob {digest!r} in {self.describe()}",
                hint="It was never stored, or its runs were purged.",
            )
        if blob_digest(data) != digest:
            raise CheckpointError(
                f"blob {digest!r} in {self.describe()} does not match its digest: "
                "the database is corrupt",
                hint="Restore the database from a backup; the blob cannot be trusted.",
            )
        return data

    async def statistics(self) -> StoreStatistics:
        """Counts of runs, records and blobs in the store."""
        await self._ensure_open()
        return await self._statistics()

    # --- retention -------------------------------------------------------------------

    async def purge(self, *, older_than: float, status: RunStatus | None = None) -> int:
        """Remove the runs that finished more than ``older_than`` seconds ago.

        Their records go with them, and so do the blobs that no remaining run
        references. Running runs are never removed, however old (a run abandoned by
        a dead process stays ``"running"`` until it is resumed or finished).

        Args:
            older_than: seconds (``parse_duration("7d")``); 0 removes every finished run.
            status: only runs with this final status.

        Returns:
            how many runs were removed.

        Raises:
            ConfigurationError: a negative ``older_than`` or a non-final status.
        """
        if type(older_than) not in (int, float) or not math.isfinite(older_than) or older_than < 0:
            raise ConfigurationError(
                f"older_than must be a number of seconds >= 0, got {older_than!r}",
                hint='Use parse_duration("7d") for durations written as text.',
            )
        if status is not None and status not in FINAL_RUN_STATUSES:
            raise ConfigurationError(
                f"purge removes finished runs only; status must be one of "
                f"{sorted(FINAL_RUN_STATUSES)}, got {status!r}"
            )
        await self._ensure_open()
        return await self._purge(self._clock() - older_than, status, None)

    # --- errors for implementations --------------------------------------------------

    def unknown_run(self, run_id: str) -> CheckpointError:
        """The error for a run id this store does not hold."""
        return CheckpointError(
            f"no run {run_id!r} in {self.describe()}",
            hint="List the runs of this store with `aioflow runs --store URL`; "
            "the run may have been purged.",
            run_id=run_id,
        )

    def run_exists(self, run_id: str) -> CheckpointError:
        """The error for ``begin_run`` of a run id already in the store."""
        return CheckpointError(
            f"run {run_id!r} already exists in {self.describe()}",
            hint="Use a new run id, or resume the existing run.",
            run_id=run_id,
        )

    def run_finished(self, run_id: str, status: str) -> CheckpointError:
        """The error for writing to a run that has already finished."""
        return CheckpointError(
            f"run {run_id!r} has already finished ({status}); its journal is closed",
            hint="A finished run cannot be appended to or finished again; start a new run.",
            run_id=run_id,
        )

    # --- primitives ------------------------------------------------------------------

    @abstractmethod
    async def _open(self) -> None:
        """Open (and create or check) the storage. Called once."""

    @abstractmethod
    async def _close(self) -> None:
        """Release the storage. Called once, after :meth:`_open`."""

    @abstractmethod
    async def _begin_run(self, info: RunInfo, batch: Batch) -> int:
        """Create the run and write the batch atomically; raise :meth:`run_exists`."""

    @abstractmethod
    async def _append(self, batch: Batch) -> int:
        """Write the batch atomically; raise :meth:`unknown_run` / :meth:`run_finished`."""

    @abstractmethod
    async def _finish_run(
        self,
        batch: Batch,
        status: RunStatus,
        finished_at: float,
        error: str | None,
        purge_before: float | None,
    ) -> RunInfo:
        """Write the batch, finish the run and (``purge_before`` not None) purge, atomically.

        The purge removes the runs other than this one that finished before
        ``purge_before``, as :meth:`_purge` does.
        """

    @abstractmethod
    @abstractmethod
    async def _reopen_run(self, run_id: str, now: float) -> RunInfo:
        """Set the finished run ``run_id`` running again (one transaction)."""

    @abstractmethod
    async def _get_run(self, run_id: str) -> RunInfo | None:
        """The run's summary, or None."""

    @abstractmethod
    async def _read(self, run_id: str, after: int, limit: int | None) -> list[JournalRecord]:
        """Up to ``limit`` records with ``seq > after`` in order; raise :meth:`unknown_run`."""

    @abstractmethod
    async def _list_runs(
        self, workflow: str | None, status: str | None, limit: int | None
    ) -> list[RunInfo]:
        """Matching runs, newest first."""

    @abstractmethod
    async def _purge(self, before: float, status: str | None, keep: str | None) -> int:
        """Remove finished runs with ``finished_at < before`` (and ``status``), except
        ``keep``, with their records and unreferenced blobs; how many runs."""

    @abstractmethod
    async def _get_blob(self, digest: str) -> bytes | None:
        """The blob's bytes, or None."""

    @abstractmethod
    async def _statistics(self) -> StoreStatistics:
        """Counts of what the store holds."""


def _check_after(after: object) -> int:
    if type(after) is not int or after < 0:
        raise ConfigurationError(f"after must be a seq (an int >= 0), got {after!r}")
    return after
