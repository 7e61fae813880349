"""MemoryStore: the run store contract in this process's memory; nothing is durable.

The default store when no ``checkpoint=`` is given, and the reference
implementation the contract suite compares the others with.

Concurrency: use a store from one event loop. Every operation does its work
between two awaits (a checkpoint first, then no await until it returns), so an
operation is atomic with respect to every other task on the loop, and a batch is
all-or-nothing: records are validated into a new list that is attached to the run
only once the whole batch is valid.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.lowlevel

from .base import Batch, RunStore
from .records import JournalRecord, RunInfo, RunStatus, StoreStatistics

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Run:
    """A run's mutable state; ``RunInfo`` snapshots are made from it."""

    info: RunInfo
    order: int
    status: RunStatus = "running"
    finished_at: float | None = None
    error: str | None = None
    tasks_total: int = 0
    tasks_succeeded: int = 0
    tasks_failed: int = 0
    updated_at: float = 0.0
    records: list[JournalRecord] = field(default_factory=list)
    blobs: set[str] = field(default_factory=set)

    def snapshot(self) -> RunInfo:
        return dataclasses.replace(
            self.info,
            status=self.status,
            finished_at=self.finished_at,
            error=self.error,
            tasks_total=self.tasks_total,
            tasks_succeeded=self.tasks_succeeded,
            tasks_failed=self.tasks_failed,
            updated_at=self.updated_at,
            last_seq=len(self.records),
        )


class MemoryStore(RunStore):
    """A run store in memory: the same contract as the durable stores, nothing survives
    the process. ``open_run_store("memory://")`` makes a new, empty one each time.

    Args:
        retention: seconds; see :class:`~aioflow.stores.RunStore`.
        clock: the time source; see :class:`~aioflow.stores.RunStore`.
    """

    def __init__(
        self, *, retention: float | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(retention=retention, clock=clock)
        self._runs: dict[str, _Run] = {}
        self._blobs: dict[str, bytes] = {}
        self._blob_refs: dict[str, int] = {}  # digest -> how many runs stored it
        self._created = 0

    def describe(self) -> str:
        return "memory://"

    def __repr__(self) -> str:
        return f"MemoryStore(runs={len(self._runs)}, retention={self.retention!r})"

    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        self._runs.clear()
        self._blobs.clear()
        self._blob_refs.clear()

    # Every primitive awaits one checkpoint first (cancellation is delivered there,
    # before anything changes), then runs to completion without awaiting.

    def _writable(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise self.unknown_run(run_id)
        if run.status != "running":
            raise self.run_finished(run_id, run.status)
        return run

    def _write(self, run: _Run, batch: Batch) -> None:
        """Validate the whole batch, then apply it (no await: atomic on the loop)."""
        start = len(run.records)
        new = [
            dataclasses.replace(record, seq=start + offset)
            for offset, record in enumerate(batch.records, 1)
        ]
        # Everything below cannot fail: the batch is applied whole.
        run.records.extend(new)
        run.tasks_succeeded += batch.counts.succeeded
        run.tasks_failed += batch.counts.failed
        if batch.tasks_total is not None:
            run.tasks_total = batch.tasks_total
        run.updated_at = batch.now
        for digest, data in batch.blobs.items():
            if digest not in run.blobs:
                run.blobs.add(digest)
                self._blob_refs[digest] = self._blob_refs.get(digest, 0) + 1
                self._blobs.setdefault(digest, data)

    async def _begin_run(self, info: RunInfo, batch: Batch) -> int:
        await anyio.lowlevel.checkpoint()
        if info.run_id in self._runs:
            raise self.run_exists(info.run_id)
        self._created += 1
        run = _Run(
            info=dataclasses.replace(info, last_seq=0),
            order=self._created,
            tasks_total=info.tasks_total,
            tasks_succeeded=info.tasks_succeeded,
            tasks_failed=info.tasks_failed,
        )
        self._write(run, batch)  # raises before the run is registered if invalid
        self._runs[info.run_id] = run
        return len(run.records)

    async def _append(self, batch: Batch) -> int:
        await anyio.lowlevel.checkpoint()
        run = self._writable(batch.run_id)
        self._write(run, batch)
        return len(run.records)

    async def _finish_run(
        self,
        batch: Batch,
        status: RunStatus,
        finished_at: float,
        error: str | None,
        purge_before: float | None,
    ) -> RunInfo:
        await anyio.lowlevel.checkpoint()
        run = self._writable(batch.run_id)
        self._write(run, batch)
        run.status = status
        run.finished_at = finished_at
        run.error = error
        if purge_before is not None:
            self._remove(purge_before, None, batch.run_id)
        return run.snapshot()

    async def _reopen_run(self, run_id: str, now: float) -> RunInfo:
        await anyio.lowlevel.checkpoint()
        run = self._runs[run_id]
        run.status = "running"
        run.finished_at = None
        run.error = None
        run.updated_at = now
        return run.snapshot()

    async def _get_run(self, run_id: str) -> RunInfo | None:
        await anyio.lowlevel.checkpoint()
        run = self._runs.get(run_id)
        return None if run is None else run.snapshot()

    async def _read(self, run_id: str, after: int, limit: int | None) -> list[JournalRecord]:
        await anyio.lowlevel.checkpoint()
        run = self._runs.get(run_id)
        if run is None:
            raise self.unknown_run(run_id)
        # seq n is at index n - 1: a slice, O(len(result)).
        end = None if limit is None else after + limit
        return run.records[after:end]

    async def _list_runs(
        self, workflow: str | None, status: str | None, limit: int | None
    ) -> list[RunInfo]:
        await anyio.lowlevel.checkpoint()
        runs = [
            run
            for run in self._runs.values()
            if (workflow is None or run.info.workflow == workflow)
            and (status is None or run.status == status)
        ]
        runs.sort(key=lambda run: (run.info.started_at, run.order), reverse=True)
        return [run.snapshot() for run in runs[:limit]]

    async def _purge(self, before: float, status: str | None, keep: str | None) -> int:
        await anyio.lowlevel.checkpoint()
        return self._remove(before, status, keep)

    def _remove(self, before: float, status: str | None, keep: str | None) -> int:
        doomed = [
            run_id
            for run_id, run in self._runs.items()
            if run.status != "running"
            and run.finished_at is not None
            and run.finished_at < before
            and (status is None or run.status == status)
            and run_id != keep
        ]
        for run_id in doomed:
            run = self._runs.pop(run_id)
            for digest in run.blobs:
                refs = self._blob_refs[digest] - 1
                if refs:
                    self._blob_refs[digest] = refs
                else:
                    del self._blob_refs[digest]
                    del self._blobs[digest]
        return len(doomed)

    async def _get_blob(self, digest: str) -> bytes | None:
        await anyio.lowlevel.checkpoint()
        return self._blobs.get(digest)

    async def _statistics(self) -> StoreStatistics:
        await anyio.lowlevel.checkpoint()
        return StoreStatistics(
            runs=len(self._runs),
            running=sum(run.status == "running" for run in self._runs.values()),
            records=sum(len(run.records) for run in self._runs.values()),
            blobs=len(self._blobs),
            blob_bytes=sum(len(data) for data in self._blobs.values()),
        )
