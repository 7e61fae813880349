"""SQLiteStore: the embedded durable run store, on the standard library's sqlite3.

Threading: one ``sqlite3`` connection per store, opened with
``check_same_thread=False`` and used only through
``anyio.to_thread.run_sync(..., limiter=CapacityLimiter(1))``. The limiter lets
one call at a time touch the connection (from whichever worker thread anyio
picks), so the connection is never used concurrently, calls run in the order they
were made, and the event loop never blocks on disk or on another process's lock.

Durability: the database is in WAL mode; every write is one ``BEGIN IMMEDIATE``
transaction. With ``synchronous="normal"`` (default) a commit is durable against
the death of the process (``kill -9``, a crash) as soon as it returns: the WAL
frames are in the operating system's cache, which outlives the process. A power
loss or an OS crash may lose the last commits before the next WAL checkpoint, but
never leaves a torn transaction. ``synchronous="full"`` also fsyncs the WAL at
every commit: commits survive power loss and OS crashes, at the price of one
fsync per commit. See ``docs/stores.md``.

Several processes may share one database: writers queue on SQLite's write lock
(``busy_timeout``), readers never block writers (WAL), and each run's records are
numbered inside the writer's transaction, so concurrent runs never mix. The
database must be on a local file system (WAL needs shared memory between the
processes; not NFS).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, cast

import anyio
import anyio.to_thread

from ..errors import CheckpointError, ConfigurationError
from ._sqlite_schema import (
    check_file,
    database_error,
    ensure_schema,
    record_crc,
    run_integrity_check,
)
from .base import Batch, RunStore
from .records import JournalRecord, RecordKind, RunInfo, RunStatus, StoreStatistics

__all__ = ["IntegrityCheck", "SQLiteStore", "Synchronous"]

T = TypeVar("T")
Synchronous = Literal["normal", "full"]
IntegrityCheck = Literal["quick", "full", "off"]

_RUN_COLUMNS: Final = (
    "run_id, workflow, fingerprint, status, started_at, finished_at, tasks_total, "
    "tasks_succeeded, tasks_failed, error, updated_at, last_seq"
)
_INSERT_RECORD: Final = (
    "INSERT INTO records (run, seq, kind, task_name, attempt, status, at, data, crc) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_COUNTERS: Final = (
    "UPDATE runs SET last_seq = ?, tasks_succeeded = tasks_succeeded + ?, "
    "tasks_failed = tasks_failed + ?, tasks_total = coalesce(?, tasks_total), "
    "updated_at = ? WHERE id = ?"
)
_PURGE_CHUNK: Final = 500
_KINDS: Final = {kind.value: kind for kind in RecordKind}


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    return RunInfo(
        run_id=row[0],
        workflow=row[1],
        fingerprint=row[2],
        status=row[3],
        started_at=row[4],
        finished_at=row[5],
        tasks_total=row[6],
        tasks_succeeded=row[7],
        tasks_failed=row[8],
        error=row[9],
        updated_at=row[10],
        last_seq=row[11],
    )


class SQLiteStore(RunStore):
    """Run journals in one SQLite database file, shared by many runs and processes.

    Args:
        path: the database file; created (with its directory) if absent. An empty
            file becomes a new store; anything else must be an aioflow store.
        synchronous: ``"normal"`` (default; durable against ``kill -9`` at every
            commit) or ``"full"`` (also against power loss and OS crashes).
        busy_timeout: seconds to wait for another connection's write lock before
            failing with :class:`~aioflow.errors.CheckpointError`.
        check: the check run when the store opens: ``"quick"`` (default,
            ``PRAGMA quick_check``: structure of every page, O(size of the file)),
            ``"full"`` (``PRAGMA integrity_check``: also indexes against tables) or
            ``"off"``. Records are also checked one by one (CRC-32) when read.
        retention: seconds; see :class:`~aioflow.stores.RunStore`.
        clock: the time source; see :class:`~aioflow.stores.RunStore`.

    Raises:
        ConfigurationError: a bad option value.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "normal",
        busy_timeout: float = 10.0,
        check: IntegrityCheck = "quick",
        retention: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(retention=retention, clock=clock)
        if synchronous not in ("normal", "full"):
            raise ConfigurationError(
                f"synchronous must be 'normal' or 'full', got {synchronous!r}",
                hint="'normal' survives kill -9 of the process; 'full' also power loss.",
            )
        if type(busy_timeout) not in (int, float) or not 0 <= busy_timeout < 86400:
            raise ConfigurationError(
                f"busy_timeout must be a number of seconds in [0, 86400), got {busy_timeout!r}"
            )
        if check not in ("quick", "full", "off"):
            raise ConfigurationError(f"check must be 'quick', 'full' or 'off', got {check!r}")
        self.path = Path(os.path.expanduser(os.fspath(path))).absolute()
        self.synchronous: Synchronous = synchronous
        self.busy_timeout = float(busy_timeout)
        self.check: IntegrityCheck = check
        self._conn: sqlite3.Connection | None = None
        # One call at a time on the connection: see the module documentation.
        self._limiter = anyio.CapacityLimiter(1)

    def describe(self) -> str:
        return f"sqlite://{self.path}"

    def __repr__(self) -> str:
        return (
            f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r}, "
            f"retention={self.retention!r})"
        )

    # --- running blocking code off the loop ------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the worker thread; sqlite3 errors become CheckpointError.

        Not abandoned on cancellation: a transaction that has started finishes (commit
        or rollback) before the cancellation is delivered.
        """
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except sqlite3.Error as exc:
            raise database_error(exc, self.describe()) from exc

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:  # only after a failed open; the base class refuses earlier
            raise CheckpointError(f"{self.describe()} is not open")
        return conn

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction (worker thread)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock now, waits busy_timeout
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _readonly(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction: a consistent snapshot (worker thread)."""
        conn = self._connection()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # --- lifecycle ---------------------------------------------------------------------

    async def _open(self) -> None:
        await self._call(self._open_sync)

    def _open_sync(self) -> None:
        where = self.describe()
        check_file(self.path, where)
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,  # used from worker threads, one at a time
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            run_integrity_check(conn, self.check, where)
            mode = _switch_to_wal(conn, self.busy_timeout)
            if str(mode).lower() != "wal":
                raise CheckpointError(
                    f"{where}: SQLite refused WAL mode (journal_mode is {mode!r})",
                    hint="Put the database on a local file system that supports WAL.",
                )
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            if self.synchronous == "full":  # macOS: F_FULLFSYNC, a real flush to the disk
                conn.execute("PRAGMA fullfsync = ON")
                conn.execute("PRAGMA checkpoint_fullfsync = ON")
            conn.execute("PRAGMA journal_size_limit = 67108864")  # -wal shrinks back to 64 MiB
            ensure_schema(conn, where)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def _close(self) -> None:
        if self._conn is not None:
            await self._call(self._close_sync)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # --- writing -------------------------------------------------------------------------

    def _write_batch(self, conn: sqlite3.Connection, run: int, last_seq: int, batch: Batch) -> int:
        seq = last_seq

        def rows() -> Iterator[tuple[object, ...]]:
            # Pulled by executemany inside the transaction: an invalid record raises
            # here, half-way through the batch, and the caller rolls the batch back.
            nonlocal seq
            for r in batch.records:
                seq += 1
                kind = r.kind.value
                crc = record_crc(seq, kind, r.task_name, r.attempt, r.status, r.at, r.data)
                yield (run, seq, kind, r.task_name, r.attempt, r.status, r.at, r.data, crc)

        conn.executemany(_INSERT_RECORD, rows())
        if batch.blobs:
            conn.executemany(
                "INSERT INTO blobs (digest, size, data) VALUES (?, ?, ?) "
                "ON CONFLICT (digest) DO NOTHING",
                ((digest, len(data), data) for digest, data in batch.blobs.items()),
            )
            conn.executemany(
                "INSERT INTO run_blobs (run, digest) VALUES (?, ?) ON CONFLICT DO NOTHING",
                ((run, digest) for digest in batch.blobs),
            )
        counts = batch.counts
        conn.execute(
            _UPDATE_COUNTERS,
            (seq, counts.succeeded, counts.failed, batch.tasks_total, batch.now, run),
        )
        return seq

    def _writable(self, conn: sqlite3.Connection, run_id: str) -> tuple[int, int]:
        row = conn.execute(
            "SELECT id, status, last_seq FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise self.unknown_run(run_id)
        if row[1] != "running":
            raise self.run_finished(run_id, row[1])
        return row[0], row[2]

    async def _begin_run(self, info: RunInfo, batch: Batch) -> int:
        def begin(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO runs (run_id, workflow, fingerprint, status, started_at, "
                "tasks_total, tasks_succeeded, tasks_failed, updated_at, last_seq) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, 0) ON CONFLICT (run_id) DO NOTHING",
                (
                    info.run_id,
                    info.workflow,
                    info.fingerprint,
                    float(info.started_at),
                    info.tasks_total,
                    info.tasks_succeeded,
                    info.tasks_failed,
                    batch.now,
                ),
            )
            if cursor.rowcount != 1:
                raise self.run_exists(info.run_id)
            return self._write_batch(conn, cast(int, cursor.lastrowid), 0, batch)

        return await self._call(self._write, begin)

    async def _append(self, batch: Batch) -> int:
        def append(conn: sqlite3.Connection) -> int:
            run, last_seq = self._writable(conn, batch.run_id)
            return self._write_batch(conn, run, last_seq, batch)

        return await self._call(self._write, append)

    async def _finish_run(
        self,
        batch: Batch,
        status: RunStatus,
        finished_at: float,
        error: str | None,
        purge_before: float | None,
    ) -> RunInfo:
        def finish(conn: sqlite3.Connection) -> RunInfo:
            run, last_seq = self._writable(conn, batch.run_id)
            self._write_batch(conn, run, last_seq, batch)
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                (status, finished_at, error, run),
            )
            if purge_before is not None:
                self._remove(conn, purge_before, None, run)
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run,)).fetchone()
            return _run_info(row)

        return await self._call(self._write, finish)

    async def _reopen_run(self, run_id: str, now: float) -> RunInfo:
        def reopen(conn: sqlite3.Connection) -> RunInfo:
            conn.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, "
                "updated_at = ? WHERE run_id = ?",
                (now, run_id),
            )
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return _run_info(row)

        return await self._call(self._write, reopen)

    # --- retention -----------------------------------------------------------------------

    async def _purge(self, before: float, status: str | None, keep: str | None) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            keep_id = None
            if keep is not None:
                row = conn.execute("SELECT id FROM runs WHERE run_id = ?", (keep,)).fetchone()
                keep_id = row[0] if row else None
            return self._remove(conn, before, status, keep_id)

        return await self._call(self._write, purge)

    def _remove(
        self, conn: sqlite3.Connection, before: float, status: str | None, keep: int | None
    ) -> int:
        """Delete finished runs before ``before``, their records and orphaned blobs."""
        sql = "SELECT id FROM runs WHERE finished_at < ? AND status != 'running'"
        params: list[object] = [before]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        if keep is not None:
            sql += " AND id != ?"
            params.append(keep)
        doomed = [(row[0],) for row in conn.execute(sql, params)]
        for start in range(0, len(doomed), _PURGE_CHUNK):
            chunk = doomed[start : start + _PURGE_CHUNK]
            digests = {
                (digest,)
                for (run,) in chunk
                for (digest,) in conn.execute("SELECT digest FROM run_blobs WHERE run = ?", (run,))
            }
            conn.executemany("DELETE FROM records WHERE run = ?", chunk)
            conn.executemany("DELETE FROM run_blobs WHERE run = ?", chunk)
            conn.executemany(
                "DELETE FROM blobs WHERE digest = ?1 AND NOT EXISTS "
                "(SELECT 1 FROM run_blobs WHERE digest = ?1)",
                sorted(digests),
            )
            conn.executemany("DELETE FROM runs WHERE id = ?", chunk)
        return len(doomed)

    # --- reading -------------------------------------------------------------------------

    async def _get_run(self, run_id: str) -> RunInfo | None:
        def get(conn: sqlite3.Connection) -> RunInfo | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _run_info(row)

        return await self._call(self._readonly, get)

    async def _read(self, run_id: str, after: int, limit: int | None) -> list[JournalRecord]:
        def read(conn: sqlite3.Connection) -> list[JournalRecord]:
            row = conn.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise self.unknown_run(run_id)
            rows = conn.execute(
                "SELECT seq, kind, task_name, attempt, status, at, data, crc FROM records "
                "WHERE run = ? AND seq > ? ORDER BY seq LIMIT ?",
                (row[0], after, -1 if limit is None else limit),
            ).fetchall()
            return [self._record(run_id, after + index, r) for index, r in enumerate(rows, 1)]

        return await self._call(self._readonly, read)

    def _record(self, run_id: str, expected_seq: int, row: tuple[Any, ...]) -> JournalRecord:
        seq, kind, task_name, attempt, status, at, data, crc = row
        if (
            seq != expected_seq
            or type(at) is not float
            or type(data) is not bytes
            or record_crc(seq, kind, task_name, attempt, status, at, data) != crc
        ):
            problem = f"record {expected_seq} is missing" if seq != expected_seq else "checksum"
            raise CheckpointError(
                f"the journal of run {run_id!r} in {self.describe()} is corrupt "
                f"at seq {expected_seq} ({problem})",
                hint="Restore the database from a backup; this run cannot be resumed.",
                run_id=run_id,
            )
        record_kind = _KINDS.get(kind)
        if record_kind is None:
            raise CheckpointError(
                f"run {run_id!r} has a record of kind {kind!r} at seq {seq}, unknown to "
                "this aioflow (written by a newer version?)",
                hint="Upgrade aioflow to read this run.",
                run_id=run_id,
            )
        return JournalRecord(record_kind, task_name, attempt, status, at, data, seq)

    async def _list_runs(
        self, workflow: str | None, status: str | None, limit: int | None
    ) -> list[RunInfo]:
        clauses: list[str] = []
        params: list[object] = []
        if workflow is not None:
            clauses.append("workflow = ?")
            params.append(workflow)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY started_at DESC, id DESC LIMIT ?"
        params.append(-1 if limit is None else limit)

        def list_runs(conn: sqlite3.Connection) -> list[RunInfo]:
            return [_run_info(row) for row in conn.execute(sql, params)]

        return await self._call(self._readonly, list_runs)

    async def _get_blob(self, digest: str) -> bytes | None:
        def get(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._call(self._readonly, get)

    async def _statistics(self) -> StoreStatistics:
        def statistics(conn: sqlite3.Connection) -> StoreStatistics:
            runs, running = conn.execute(
                "SELECT count(*), coalesce(sum(status = 'running'), 0) FROM runs"
            ).fetchone()
            (records,) = conn.execute("SELECT count(*) FROM records").fetchone()
            blobs, size = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM blobs"
            ).fetchone()
            return StoreStatistics(
                runs=runs, running=running, records=records, blobs=blobs, blob_bytes=size
            )

        return await self._call(self._readonly, statistics)


def _switch_to_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """``PRAGMA journal_mode = WAL``; the journal mode it left (``"wal"``: done).

    A new file switched while another connection holds its write lock (another process
    creating the same database) gets "locked" at once: SQLite does not call its busy
    handler where waiting could deadlock. So this waits as the busy handler would, up to
    ``timeout`` seconds (in the store's thread; it holds no lock meanwhile), then
    raises what SQLite raised.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # no event to wait on: another process holds the lock
        delay = min(delay * 2, 0.05)
