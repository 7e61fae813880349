"""A distributed run's live progress: the coordinator publishes it, ``aioflow watch`` reads it.

Publishing: every run on a :class:`~aioflow.backends.redis.RedisBackend` gets a
:class:`ProgressPublisher` among its instruments (``Backend.run_instruments``). Its
hooks only count (a :class:`~aioflow._progress.RunTracker`) and, on the first change
since the last snapshot, set an event; its writer, a task in the backend's task
group, turns the counts into a :class:`~aioflow._progress.ProgressSnapshot` and
appends it to the run's capped stream ``P:run:{R}:progress`` (``XADD MAXLEN ~``,
field ``d``: the JSON document), with ``PEXPIRE result_ttl``:

* ``interval`` (0.25 s) after the run's start, then at most every ``interval``
  while something changes, and every ``keepalive`` (2 s) while nothing does (so a
  reader can tell a quiet run from a dead coordinator);
* a last time when the run ends (its final status). When the backend closes it
  waits for that write (bounded by its ``timeout``): a run that owns its backend
  (``run(wf, backend="redis://...")``) has written its last snapshot before
  ``run()`` returns.

The publisher listens to the ends of tasks, not to their starts: hearing of starts
would have every worker announce each one (``notify``), which costs the coordinator
several times what the rest does. So "running" in a snapshot is what the run's
session has handed to the workers and not got back (running, or in a queue waiting
for a free worker), read from the session when the snapshot is made. The cost per
task is the engine's end event and a few dict operations; Redis sees one command
pair per snapshot, never per task. A Redis failure while publishing is
logged once, as a warning, and ends the run's publishing: never the run.

Reading (:func:`follow`): the latest snapshot (``XREVRANGE ... COUNT 1``), then each
new one as it is written (``XREAD BLOCK``), until the final one. No snapshot within
:data:`GONE_AFTER` keep-alive periods: the coordinator is taken for gone.

Snapshots are not signed: they carry counts and task names, and a forged one can
only mislead a watcher.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import anyio

from .._progress import ProgressSnapshot, RunTracker
from ..errors import ConfigurationError, RunStateError
from ..observability.logging import get_logger

if TYPE_CHECKING:
    from .. import events as ev
    from .redis import RedisBackend, RedisSession

__all__ = ["GONE_AFTER", "MAX_SNAPSHOTS", "ProgressPublisher", "follow"]

_log = get_logger("backend.redis.progress")

#: Snapshots kept per run (approximately: ``XADD MAXLEN ~``).
MAX_SNAPSHOTS = 64
#: A reader takes the coordinator for gone after this many keep-alive periods
#: without a snapshot.
GONE_AFTER = 4
_FIELD = b"d"
_SAMPLE = 5  # names of running tasks in a snapshot


class ProgressPublisher:
    """The instrument that publishes one run's progress (see the module documentation).

    Concurrency: the hooks run on the run's loop and only count and set events; the
    writer (:meth:`run`, in the backend's task group) is the only one that awaits.
    """

    def __init__(
        self,
        backend: RedisBackend,
        run_id: str,
        workflow: str,
        *,
        interval: float = 0.25,
        keepalive: float = 2.0,
    ) -> None:
        self._backend = backend
        self._run_id = run_id
        self._key = backend.keys.progress(run_id)
        self._interval = interval
        self._keepalive = keepalive
        self._tracker = RunTracker()
        self._tracker.workflow = workflow
        self._touched = False  # a change since the last snapshot
        self._wake: anyio.Event | None = None  # set on the first change, or the end
        self._ending: anyio.Event | None = None  # the run ended (or the backend closes)
        self._stopped: anyio.Event | None = None  # the writer returned
        self._last_written = False
        self._broken = False
        #: The run's session while it is open (set by the backend): what it has out.
        self.session: RedisSession | None = None

    def __repr__(self) -> str:
        return f"<ProgressPublisher run_id={self._run_id}>"

    @property
    def run_id(self) -> str:
        return self._run_id

    # --- hooks (sync, quick) -----------------------------------------------------------

    def on_run_start(self, event: ev.RunStarted) -> None:
        self._tracker.apply(event)
        self._wake, self._ending, self._stopped = anyio.Event(), anyio.Event(), anyio.Event()
        if not self._backend._start_publisher(self):  # not open: no task group to write
            self._broken = True
            self._stopped.set()

    def _changed(self, event: ev.Event) -> None:
        self._tracker.apply(event)
        self.touch()

    def touch(self) -> None:
        """Something changed that no event tells (the session sent a batch)."""
        if not self._touched:
            self._touched = True
            if self._wake is not None:
                self._wake.set()

    on_task_end = _changed
    on_task_retry = _changed
    on_task_add = _changed
    on_task_skip = _changed

    def on_run_end(self, event: ev.RunFinished) -> None:
        self._tracker.apply(event)
        self._end()

    def _end(self) -> None:
        if self._ending is not None:
            self._ending.set()
        if self._wake is not None:
            self._wake.set()

    # --- the writer ----------------------------------------------------------------------

    async def run(self) -> None:
        """Write snapshots until the run ends, then the last one.

        The first waits one interval: a run shorter than that writes only its last
        (a Redis round trip less on a short run's path).
        """
        assert self._ending is not None and self._stopped is not None
        assert self._wake is not None
        first = True
        try:
            while True:
                with anyio.move_on_after(self._interval):  # at most one per interval...
                    await self._ending.wait()  # ...but the end is written at once
                if not self._touched and not first and not self._ending.is_set():
                    with anyio.move_on_after(self._keepalive - self._interval):
                        await self._wake.wait()  # a change, or the keep-alive is due
                if self._ending.is_set():
                    break
                first, self._touched, self._wake = False, False, anyio.Event()
                if not await self._write():
                    return
            await self._write_last()
        finally:
            self._stopped.set()
            if self._last_written or self._broken:
                self._backend._publishers.discard(self)

    async def close(self) -> None:
        """The backend closes: end the writer; make sure the last snapshot is written
        (the writer may have been cancelled before the run ended)."""
        if self._stopped is None:
            return
        self._end()
        await self._stopped.wait()
        await self._write_last()
        self._backend._publishers.discard(self)

    async def _write_last(self) -> None:
        if self._last_written or self._broken:
            return
        # The run has ended (or its backend closes): written even when the caller
        # was cancelled, so a watcher learns how the run ended; bounded.
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._backend.timeout):
            self._last_written = await self._write()

    async def _write(self) -> bool:
        if self._broken:
            return False
        session = self.session
        snapshot = self._tracker.snapshot(
            self._run_id,
            keepalive=self._keepalive,
            running=None if session is None else session.out_sample(_SAMPLE),
        )
        client = self._backend.client
        pipe = client.pipeline(transaction=False)
        pipe.xadd(self._key, {_FIELD: snapshot.to_json()}, maxlen=MAX_SNAPSHOTS, approximate=True)
        pipe.pexpire(self._key, int(self._backend.result_ttl * 1000))
        try:
            await pipe.execute()
        except Exception as exc:  # Redis, or anything: publishing never fails the run
            self._broken = True
            _log.warning(
                "publishing the run's progress failed: the run goes on, but `aioflow "
                "watch` cannot follow it",
                run_id=self._run_id,
                key=self._key.decode(errors="replace"),
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return True


async def follow(backend: RedisBackend, run_id: str) -> AsyncGenerator[ProgressSnapshot, None]:
    """The progress snapshots of run ``run_id``: the latest, then each new one, until
    the run's final one.

    Raises:
        ConfigurationError: no progress of such a run on this backend.
        RunStateError: the coordinator stopped publishing (it seems gone).
        RedisError, OSError: from the client (the caller wraps them).
    """
    client = backend.client
    key = backend.keys.progress(run_id)
    latest: Any = await client.xrevrange(key, "+", "-", count=1)
    snapshot: ProgressSnapshot | None = None
    if latest:
        last_id, fields = latest[0]
        snapshot = _decode(fields, run_id)
        yield snapshot
        if snapshot.final:
            return
        seconds, micros = await client.time()
        age = max(0.0, seconds + micros / 1e6 - _entry_time(last_id))
        deadline = anyio.current_time() + _patience(snapshot) - age
    else:
        # No snapshot yet: a run younger than its first snapshot (journaled as
        # running) is waited for; any other is not known here.
        status = await _journaled_status(backend, run_id)
        if status != "running":
            raise _unknown(backend, run_id, status)
        last_id = b"0-0"
        deadline = anyio.current_time() + GONE_AFTER * 2.0
    # A blocking read must end before the client's socket timeout does.
    longest = max(0.1, backend.timeout / 2)
    while True:
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            quiet = GONE_AFTER * 2.0 if snapshot is None else _patience(snapshot)
            raise _gone(backend, snapshot, run_id, quiet)
        block = max(1, int(min(remaining, longest) * 1000))
        reply: Any = await client.xread({key: last_id}, count=MAX_SNAPSHOTS, block=block)
        if not reply:
            continue
        for entry_id, fields in reply[0][1]:
            last_id = entry_id
            snapshot = _decode(fields, run_id)
            yield snapshot
            if snapshot.final:
                return
        if snapshot is not None:
            deadline = anyio.current_time() + _patience(snapshot)


def _patience(snapshot: ProgressSnapshot) -> float:
    return GONE_AFTER * (snapshot.keepalive or 2.0)


def _entry_time(entry_id: bytes) -> float:
    """The server time (seconds) a stream entry id holds (``<ms>-<seq>``)."""
    return int(entry_id.partition(b"-")[0]) / 1000


def _decode(fields: dict[bytes, bytes], run_id: str) -> ProgressSnapshot:
    try:
        return ProgressSnapshot.from_json(fields[_FIELD])
    except (KeyError, ValueError) as exc:
        raise ConfigurationError(
            f"the progress stream of run {run_id!r} holds something else: {exc}",
            hint="Another program wrote to that key; check the backend's prefix.",
            run_id=run_id,
        ) from None


async def _journaled_status(backend: RedisBackend, run_id: str) -> str | None:
    """The status the backend's journal has for ``run_id`` (None: not journaled)."""
    from ..errors import CheckpointError

    try:
        info = await backend.run_store().get_run(run_id)
    except CheckpointError:
        return None
    return str(info.status)


def _unknown(backend: RedisBackend, run_id: str, status: str | None) -> ConfigurationError:
    if status is not None:  # journaled, ended, and its progress expired
        return ConfigurationError(
            f"run {run_id!r} on {backend.describe()} ended ({status}); its progress "
            "expired (result_ttl)",
            hint=f"aioflow inspect {run_id} --store {backend.describe()} shows what it did.",
            run_id=run_id,
        )
    return ConfigurationError(
        f"no run {run_id!r} on {backend.describe()}: it never published progress "
        "there, or it ended more than result_ttl ago",
        hint="Check the run id and the backend URL (its prefix too); runs show their "
        "id when they start, and `aioflow runs --store URL` lists the runs journaled "
        "on that Redis.",
        run_id=run_id,
    )


def _gone(
    backend: RedisBackend, snapshot: ProgressSnapshot | None, run_id: str, quiet: float
) -> RunStateError:
    url = (
        backend._where
        if backend.prefix == "aioflow"
        else f"{backend._where}?prefix={backend.prefix}"
    )
    workflow = f" of workflow {snapshot.workflow!r}" if snapshot is not None else ""
    keepalive = snapshot.keepalive if snapshot is not None else None
    return RunStateError(
        f"run {run_id}{workflow}: its coordinator seems gone (no "
        f"progress for {quiet:g} s; it publishes at least every "
        f"{keepalive or 2.0:g} s while it runs)",
        hint=f"If its process died, continue the run where it stopped (it is journaled "
        f"on this Redis): aioflow resume {url} FILE.py:WORKFLOW --run-id {run_id}",
        run_id=run_id,
    )
