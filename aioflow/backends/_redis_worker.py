"""A worker's side of the Redis backend: read, execute, store, acknowledge.

:meth:`RedisBackend.serve` runs :class:`Serving` for one :class:`aioflow.Worker`:

* **read** (one coroutine): the ``READ`` script takes up to as many entries as
  there are free slots, highest priority first; when the streams are empty, one
  ``XREADGROUP ... BLOCK`` waits on all of them (no polling).
* **execute**: each entry goes to an executor (a growing pool, like the in-process
  backend's) and through :meth:`Worker.execute_call`, which verifies the signed
  call. An entry that does not verify or decode (tampered, garbage, another key)
  is dead-lettered at once: nothing of it is unpickled.
* **flush** (one coroutine): the outcomes finished since the last flush go out in
  one pipeline: one ``COMPLETE`` script per run (first outcome wins, one PUBLISH per
  run) — then, in the next pipeline, the ``ACK`` of those entries. An entry is
  acknowledged only after its outcome is stored.
* **heartbeat**: the worker's key (``P:worker:<id>``, expiring after the visibility
  timeout) says it is alive and what it runs. When an active ``Metrics`` instrument
  in this process wants them (:mod:`aioflow.observability.fleet_gauges`), the
  entries waiting in each stream it serves are read on the same cadence (one
  pipeline: ``XLEN`` and the ``XPENDING`` summary per stream), and each entry it
  dead-letters is counted for it.
* **reclaim**: every third of the visibility timeout, entries pending longer than
  the timeout whose worker's key is gone are claimed (``XCLAIM`` with a minimum
  idle time: one claimer wins) and run here; past ``max_deliveries`` they are
  dead-lettered, their task failing with :class:`DeadLetteredError`.
* **control** (pub/sub): cancellations (a run, or some of its calls) and new
  streams.

Shutdown (:meth:`Worker.shutdown`, SIGTERM in the CLI): reading stops; running
tasks get the grace period; what still runs is cancelled and, with the entries
taken but not started, handed back to its stream at once (``HANDBACK``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import msgpack  # type: ignore[import-untyped]

from .._executors import ExecutorPool
from ..errors import DeadLetteredError, SerializationError, TaskCancelledError
from ..observability import fleet_gauges
from ..observability.logging import get_logger
from ..observability.stats import count_outcomes
from ..serialization import (
    Keyring,
    PayloadKind,
    TaskCall,
    TaskResult,
    decode_call,
    decode_value,
)
from ..serialization.results import ErrorInfo, decode_result, encode_result
from ..task import parse_rate_limit
from ..worker import RunResources
from ._redis_layout import (
    ACK,
    COMPLETE,
    DEADLETTER,
    FORGET_CONSUMER,
    GROUP,
    HANDBACK,
    RATE,
    READ,
    Scripts,
    parse_stream_field,
)

if TYPE_CHECKING:
    from ..worker import Worker
    from .redis import RedisBackend

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError:  # pragma: no cover - imported through aioflow.backends.redis
    raise

__all__ = ["Serving"]

_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_BLOCK_MS = 2000  # an idle blocking read returns after this (to see new streams)
_CHUNK = 500  # outcomes or ids per script call
_DLQ_MAX = 100_000  # the dead-letter stream is trimmed to about this many entries
_RUNS_KEPT = 256  # runs whose channel and results a worker keeps at hand
#: Seconds between sweeps of the groups for the consumers of workers that are gone.
SWEEP_EVERY = 60.0


class Entry:
    """One stream entry taken by this worker."""

    __slots__ = (
        "call_id",
        "data",
        "deliveries",
        "entry_id",
        "handback",
        "nonce",
        "priority",
        "released",
        "reply",
        "run_id",
        "stream",
    )

    def __init__(
        self,
        stream: bytes,
        entry_id: bytes,
        fields: Mapping[bytes, bytes] | list[bytes],
        priority: int,
        deliveries: int,
    ) -> None:
        if isinstance(fields, list):  # a script's reply: field, value, field, value...
            fields = dict(zip(fields[::2], fields[1::2], strict=False))
        self.released = False
        self.reply = fields.get(b"p", b"")  # where the coordinator hears of the outcome
        self.stream = stream
        self.entry_id = entry_id
        self.run_id = fields.get(b"r", b"").decode(errors="replace")
        self.call_id = fields.get(b"c", b"")
        self.nonce = self.call_id.partition(b"-")[0]  # the coordinator that sent it
        self.data = fields.get(b"d", b"")
        self.deliveries = deliveries + int(fields.get(b"n", b"0") or 0)
        self.priority = priority
        self.handback = False


class RemoteResults(Mapping[str, Any]):
    """The results of a run as a worker sees them: copies read from the run's list."""

    __slots__ = ("_decoded", "_keyring", "_raw")

    def __init__(self, keyring: Keyring) -> None:
        self._raw: dict[str, bytes] = {}
        self._decoded: dict[str, Any] = {}
        self._keyring = keyring

    def update(self, pairs: list[bytes]) -> None:
        for i in range(0, len(pairs) - 1, 2):
            name = pairs[i].decode()
            self._raw[name] = pairs[i + 1]
            self._decoded.pop(name, None)

    def __getitem__(self, name: str) -> Any:
        if name in self._decoded:
            return self._decoded[name]
        value = decode_result(self._raw[name], self._keyring).value
        self._decoded[name] = value
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class RemoteView:
    """``ctx.result`` and ``ctx.inputs`` on a worker (refreshed before a task that
    takes a context starts)."""

    __slots__ = ("inputs", "names", "names_offset", "offset", "results", "seen_inputs")

    def __init__(self, keyring: Keyring) -> None:
        self.results = RemoteResults(keyring)
        self.inputs: Mapping[str, Any] = {}
        self.names: set[str] = set()
        self.names_offset = 0
        self.offset = 0
        self.seen_inputs = False

    def has_node(self, name: str) -> bool:
        # The coordinator lists the run's tasks (dynamic ones as they are submitted).
        return name in self.names or name in self.results


class Serving:
    """Serves one worker from a Redis backend (see the module documentation)."""

    def __init__(
        self, backend: RedisBackend, worker: Worker, queues: list[str], grace: float
    ) -> None:
        self.backend = backend
        self.worker = worker
        self.client: Any = backend.client  # redis-py's reply types are too loose to help
        self.keys = backend.keys
        self.queues = set(queues)
        self.grace = grace
        self.keyring = worker.keyring
        self.consumer = worker.worker_id.encode()
        self.limit = worker.concurrency or 1024
        self._batch = max(1, self.limit // 4)
        self._backlog = False  # the last read got all it asked for
        self.vis_ms = int(backend.visibility_timeout * 1000)
        self.ttl_ms = int(backend.result_ttl * 1000)
        self.streams: list[bytes] = []  # highest priority first
        self.priority: dict[bytes, int] = {}
        self.queue_names: dict[bytes, str] = {}  # stream -> its queue
        self.taken: dict[tuple[bytes, bytes], Entry] = {}  # read, not acknowledged
        self.active = 0  # taken and not finished executing
        self.outcomes: list[tuple[Entry, TaskResult, bytes]] = []
        self.flush_lock = anyio.Lock()
        self.acks: list[Entry] = []  # outcomes stored, to acknowledge
        self.handbacks: list[Entry] = []
        self.starts: dict[tuple[str, bytes], list[bytes]] = {}  # calls started (notify)
        self.flush_ready = anyio.Event()
        self.slot_free = anyio.Event()
        # (run id, coordinator nonce) of runs whose coordinator ended them: their
        # entries are dropped (a resumed run has another nonce: it is not).
        self.cancelled_runs: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self.cancelled_calls: set[bytes] = set()  # cancelled before they started here
        self.resources: OrderedDict[str, tuple[RunResources, RemoteView]] = OrderedDict()
        self.read_scope: anyio.CancelScope | None = None
        self.stopping = False
        self.started_at = time.time()
        self.scripts = Scripts(
            read=READ,
            complete=COMPLETE,
            ack=ACK,
            handback=HANDBACK,
            deadletter=DEADLETTER,
            rate=RATE,
            forget=FORGET_CONSUMER,
        )
        self._swept_at = 0.0  # when the groups were last swept of dead consumers
        self.log = get_logger("worker.redis", worker_id=worker.worker_id)

    # --- the whole life ----------------------------------------------------------------

    async def serve(self) -> None:
        await self.scripts.load(self.client)
        await self._load_streams()
        pubsub: Any = self.client.pubsub()
        await pubsub.subscribe(self.keys.control)
        connection = pubsub.connection
        if connection is not None:
            connection.register_connect_callback(self._on_reconnect)
        await self._heartbeat_once()
        await self._gauges_once()
        try:
            async with anyio.create_task_group() as tg:
                self.pool: ExecutorPool[Entry] = ExecutorPool(
                    tg, self._execute, self._abandoned, self.limit
                )
                tg.start_soon(self._control_loop, pubsub)
                tg.start_soon(self._heartbeat_loop)
                tg.start_soon(self._reclaim_loop)
                tg.start_soon(self._flush_loop)
                tg.start_soon(self._stop_watch)
                await self._read_loop()
                await self._drain()
                tg.cancel_scope.cancel()
        finally:
            fleet_gauges.withdraw_depths(self)
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError):
                    pipe = self.client.pipeline(transaction=False)
                    pipe.delete(self.keys.worker(self.worker.worker_id))
                    pipe.zrem(self.keys.workers, self.consumer)
                    await pipe.execute()
                with contextlib.suppress(RedisError, OSError), anyio.move_on_after(5):
                    # Leaving with nothing pending (all handed back): its name leaves
                    # the groups too (one that still holds entries stays: reclaimed).
                    for stream in list(self.streams):
                        await self.scripts.call(
                            self.client, "forget", [stream], [GROUP, self.consumer, 0]
                        )

    async def _stop_watch(self) -> None:
        await self.worker.wait_shutdown()
        self.log.info("shutting down: no new work is taken", running=self.active)
        self.stopping = True
        self.slot_free.set()
        if self.read_scope is not None:
            self.read_scope.cancel()

    async def _drain(self) -> None:
        """After reading stopped: grace for running tasks, then hand back the rest."""
        for entry in self.pool.halt():  # taken, not started: back at once
            self._release(entry)
            self.handbacks.append(entry)
        with anyio.move_on_after(self.grace):
            while self.active:
                await self._wait_slot()
        if self.active:
            self.log.warning(
                "grace period over: cancelling running tasks and handing them back",
                running=self.active,
            )
            for entry in self.taken.values():
                entry.handback = True
            for call_id in self.worker.running_calls():
                self.worker.cancel(call_id, "the worker is shutting down")
            while self.active:
                await self._wait_slot()
        self.flush_ready.set()
        with anyio.move_on_after(self.backend.timeout):
            while True:
                await self._flush_once()  # after the flush in flight, if any
                if not (self.outcomes or self.acks or self.handbacks):
                    break

    async def _wait_slot(self) -> None:
        self.slot_free = anyio.Event()
        await self.slot_free.wait()

    # --- streams -----------------------------------------------------------------------

    async def _load_streams(self) -> None:
        for queue in self.queues:  # a queue nobody submitted to yet: its default stream
            await self.backend.ensure_stream(queue, 0)
        registry = await self.client.hgetall(self.keys.queues)
        for key, value in registry.items():
            self._add_stream(key, value)

    def _add_stream(self, key: bytes, value: bytes) -> bool:
        queue, priority = parse_stream_field(value)
        if queue not in self.queues or key in self.priority:
            return False
        self.priority[key] = priority
        self.queue_names[key] = queue
        self.streams = sorted(self.priority, key=lambda k: -self.priority[k])
        return True

    # --- reading -----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        scripts = self.scripts
        client = self.client
        backoff = 0.05
        while not self.stopping:
            need = self.limit - self.active
            if need <= 0:
                await self._wait_slot()
                continue
            if self.active and need < self._batch and self._backlog:
                # A backlog and busy: give more slots a moment (at most 2 ms) to free
                # up, for fewer and larger reads.
                with anyio.move_on_after(0.002):
                    while self.limit - self.active < self._batch:
                        await self._wait_slot()
                need = self.limit - self.active
            try:
                reply = await scripts.call(
                    client, "read", self.streams, [GROUP, self.consumer, need]
                )
                if not reply:
                    with anyio.CancelScope() as self.read_scope:
                        if self.stopping:
                            break
                        blocked = await client.xreadgroup(
                            GROUP,
                            self.consumer,
                            dict.fromkeys(self.streams, ">"),
                            count=need,
                            block=_BLOCK_MS,
                        )
                        reply = [[key, entries] for key, entries in blocked or ()]
                    self.read_scope = None
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted: make it again
                    self.log.warning("a stream lost its consumer group: recreating it")
                    for key in self.streams:
                        with contextlib.suppress(ResponseError):
                            await client.xgroup_create(key, GROUP, id="0", mkstream=True)
                    continue
                raise
            except _CONNECTION_ERRORS as exc:
                self.log.warning("reading from Redis failed: retrying", error=str(exc))
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.05
            self._backlog = sum(len(entries) for _, entries in reply) >= need
            for key, entries in reply:
                priority = self.priority.get(key, 0)
                for entry_id, fields in entries:
                    self._take(Entry(key, entry_id, fields or {}, priority, 1))

    def _take(self, entry: Entry) -> None:
        key = (entry.stream, entry.entry_id)
        if key in self.taken:
            return
        self.taken[key] = entry
        self.active += 1
        if (entry.run_id, entry.nonce) in self.cancelled_runs:
            self.pool.submit(entry, 1 << 30)  # dropped at once, see _execute
        else:
            self.pool.submit(entry, entry.priority)

    # --- executing ---------------------------------------------------------------------

    def _resources(self, run_id: str) -> tuple[RunResources, RemoteView]:
        found = self.resources.get(run_id)
        if found is not None:
            self.resources.move_to_end(run_id)
            return found
        from ..channels.redis import RedisChannel

        view = RemoteView(self.keyring)
        channel = RedisChannel(
            self.client,
            run_id,
            self.keyring,
            prefix=self.keys.prefix,
            ttl=self.backend.result_ttl,
        )
        found = self.resources[run_id] = (RunResources(channel=channel, view=view), view)
        if len(self.resources) > _RUNS_KEPT:
            self.resources.popitem(last=False)
        return found

    def _release(self, entry: Entry) -> None:
        """``entry`` no longer takes a slot (once, whichever way it ended)."""
        if not entry.released:
            entry.released = True
            self.active -= 1
            self.slot_free.set()

    async def _execute(self, entry: Entry, scope: anyio.CancelScope) -> None:
        try:
            await self._execute_entry(entry)
        finally:
            self._release(entry)

    async def _execute_entry(self, entry: Entry) -> None:
        if (
            entry.run_id,
            entry.nonce,
        ) in self.cancelled_runs or entry.call_id in self.cancelled_calls:
            self.cancelled_calls.discard(entry.call_id)
            await self._drop(entry)
            return
        if entry.deliveries > self.backend.max_deliveries:
            await self._dead_letter(
                entry,
                f"delivered {entry.deliveries} times (max_deliveries="
                f"{self.backend.max_deliveries}): the workers running it were lost",
            )
            return
        resources, view = self._resources(entry.run_id)

        async def before(call: TaskCall) -> None:
            rate = call.options.get("rate_limit")
            if rate is not None:
                await self._rate_limit(call.ref.path, rate)  # the task's code, any name
            if call.options.get("context"):
                await self._refresh(call.run_id, view)
            if call.options.get("notify"):
                self.starts.setdefault((call.run_id, entry.reply), []).append(entry.call_id)
                self.flush_ready.set()

        try:
            result, data = await self.worker.execute_call(
                entry.data,
                resources,
                before=before,
                bounded=False,
                call_id=entry.call_id.decode(errors="replace"),
            )
        except SerializationError as exc:  # tampered, garbage, signed with another key
            await self._dead_letter(entry, f"{type(exc).__name__}: {exc}")
            return
        self._release(entry)
        if entry.handback and result.status == "cancelled":
            self.handbacks.append(entry)
        else:
            self.outcomes.append((entry, result, data))
        self.flush_ready.set()

    def _abandoned(self, entry: Entry) -> None:
        # The pool's scope was cancelled (the worker is going away): hand it back.
        self._release(entry)
        self.handbacks.append(entry)

    async def _refresh(self, run_id: str, view: RemoteView) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.lrange(self.keys.run(run_id, "res"), view.offset, -1)
        pipe.lrange(self.keys.run(run_id, "nodes"), view.names_offset, -1)
        if not view.seen_inputs:
            pipe.get(self.keys.run(run_id, "inputs"))
        replies = await pipe.execute()
        pairs = replies[0]
        view.offset += len(pairs)
        view.results.update(pairs)
        view.names_offset += len(replies[1])
        view.names.update(name.decode() for name in replies[1])
        if not view.seen_inputs:
            view.seen_inputs = True
            if replies[2] is not None:
                view.inputs = decode_value(
                    replies[2], self.keyring, allow_pickle=True, kind=PayloadKind.CHANNEL
                )

    async def _rate_limit(self, code: str, rate: str) -> None:
        count, period = parse_rate_limit(rate)
        key = self.keys.rate(code)
        while True:
            wait_ms = int(
                await self.scripts.call(self.client, "rate", [key], [count, int(period * 1000)])
            )
            if wait_ms <= 0:
                return
            await anyio.sleep(wait_ms / 1000)  # the script said when a start is free

    async def _unrun_result(self, entry: Entry, error: BaseException, status: str) -> bytes | None:
        """A signed result for an entry whose code never ran (None: unknown run)."""
        if not entry.run_id or not entry.call_id:
            return None
        task_name = "?"
        attempt = 1
        with contextlib.suppress(Exception):
            call = decode_call(entry.data, self.keyring, allow_pickled_code=False)
            task_name, attempt = call.task_name, call.attempt
        if not entry.reply:  # an entry without it: ask where its coordinator listens
            with contextlib.suppress(RedisError, OSError):
                entry.reply = (
                    await self.client.get(self.keys.run(entry.run_id, "coordinator")) or b""
                )
        result = TaskResult(
            call_id=entry.call_id.decode(errors="replace"),
            run_id=entry.run_id,
            task_name=task_name,
            attempt=attempt,
            status=status,  # type: ignore[arg-type]
            error=ErrorInfo.from_exception(error),
            worker_id=self.worker.worker_id,
            finished_at=time.time(),
        )
        return encode_result(result, self.keyring)

    async def _drop(self, entry: Entry) -> None:
        """An entry of a cancelled run: reported as never started, acknowledged."""
        self._release(entry)
        data = await self._unrun_result(
            entry, TaskCancelledError("the run was cancelled"), "cancelled"
        )
        if data is None:
            self.acks.append(entry)
        else:
            self.outcomes.append((entry, _NOT_STARTED, data))
        self.flush_ready.set()

    async def _dead_letter(self, entry: Entry, why: str) -> None:
        self.log.error(
            "entry dead-lettered",
            run_id=entry.run_id,
            entry=entry.entry_id.decode(),
            deliveries=entry.deliveries,
            error=why,
        )
        key = (entry.stream, entry.entry_id)
        error = DeadLetteredError(
            f"the task's queue entry was dead-lettered: {why}", run_id=entry.run_id or None
        )
        fields = [
            b"stream", entry.stream, b"id", entry.entry_id, b"r", entry.run_id.encode(),
            b"c", entry.call_id, b"d", entry.data, b"p", entry.reply,
            b"n", str(entry.deliveries).encode(),
            b"error", why.encode(), b"worker", self.consumer, b"at", str(time.time()).encode(),
        ]  # fmt: skip
        length_key = self.keys.queue_of(entry.stream) + b":len"
        data = await self._unrun_result(entry, error, "failed")
        try:
            moved = await self.scripts.call(
                self.client,
                "deadletter",
                [entry.stream, length_key, self.keys.dlq],
                [GROUP, _DLQ_MAX, entry.entry_id, *fields],
            )
        except (RedisError, OSError) as exc:
            self.log.error("dead-lettering failed: the entry stays pending", error=str(exc))
            self.taken.pop(key, None)
            return
        self.taken.pop(key, None)
        if moved:  # 0: it was not pending any more (another worker moved it)
            fleet_gauges.count_dead_letter(self.queue_names[entry.stream])
        if data is not None:
            # The run learns at once that this task failed (no entry is acknowledged
            # with it: it is off the stream already).
            entry.entry_id = b""
            self.outcomes.append((entry, _FAILED, data))
            self.flush_ready.set()

    # --- storing outcomes, acknowledging -------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self.flush_ready.wait()
            self.flush_ready = anyio.Event()
            while self.outcomes or self.acks or self.handbacks or self.starts:
                await self._flush_once()

    async def _flush_once(self) -> None:
        # One flush at a time: the shutdown's drain waits for the one in flight (whose
        # acknowledgements come in the next), instead of leaving it cut off.
        async with self.flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        outcomes, self.outcomes = self.outcomes, []
        acks, self.acks = self.acks, []
        handbacks, self.handbacks = self.handbacks, []
        starts, self.starts = self.starts, {}
        pipe = self.client.pipeline(transaction=False)
        for (run_id, reply), call_ids in starts.items():
            pipe.publish(reply, msgpack.packb(["s", run_id, call_ids]))
        by_run: dict[tuple[str, bytes], list[Any]] = {}
        for entry, result, data in outcomes:
            args = by_run.setdefault((entry.run_id, entry.reply), [])
            args += [entry.call_id, b"1" if result.status == "succeeded" else b"0"]
            args += [result.task_name.encode(), data]
        for (run_id, reply), args in by_run.items():
            keys = [self.keys.run(run_id, "out"), self.keys.run(run_id, "res")]
            head = [self.ttl_ms, reply, run_id]
            for start in range(0, len(args), _CHUNK * 4):
                chunk = args[start : start + _CHUNK * 4]
                self.scripts.queue(pipe, "complete", keys, [*head, *chunk])
        # --- observability (issue 11): fleet-wide counters for `aioflow stats` ---------
        count_outcomes(pipe, self.keys.prefix, [(e.stream, r.status) for e, r, _ in outcomes])
        # --- end observability ------------------------------------------------------------
        # Entries whose outcomes an earlier pipeline stored are acknowledged now.
        self._queue_acks(pipe, acks)
        self._queue_handbacks(pipe, handbacks)
        try:
            await self.scripts.execute(self.client, pipe)
        except (RedisError, OSError) as exc:
            self.log.warning("storing outcomes failed: retrying", error=str(exc))
            # Nothing is lost: outcomes are stored once (first wins), entries are
            # acknowledged after; all of it is tried again.
            self.outcomes[:0] = outcomes
            self.acks[:0] = acks
            self.handbacks[:0] = handbacks
            await anyio.sleep(0.1)
            return
        for entry in handbacks:
            self.taken.pop((entry.stream, entry.entry_id), None)
        for entry in acks:
            self.taken.pop((entry.stream, entry.entry_id), None)
        stored = [entry for entry, _, _ in outcomes if entry.entry_id]
        if stored:
            self.acks.extend(stored)
            self.flush_ready.set()

    def _queue_acks(self, pipe: Any, entries: list[Entry]) -> None:
        by_stream: dict[bytes, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        for stream, ids in by_stream.items():
            queue = self.keys.queue_of(stream)
            keys = [stream, queue + b":len", queue + b":waiting", queue + b":room"]
            for start in range(0, len(ids), _CHUNK):
                self.scripts.queue(pipe, "ack", keys, [GROUP, *ids[start : start + _CHUNK]])

    def _queue_handbacks(self, pipe: Any, entries: list[Entry]) -> None:
        if not entries:
            return
        self.log.info("handing work back to its queue", count=len(entries))
        by_stream: dict[bytes, list[Any]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).extend(
                [
                    entry.entry_id,
                    entry.deliveries - 1,  # handed back, not lost: this one does not count
                    entry.run_id,
                    entry.call_id,
                    entry.data,
                    entry.reply,
                ]
            )
        for stream, args in by_stream.items():
            self.scripts.queue(pipe, "handback", [stream], [GROUP, *args])

    # --- staying alive, taking over the dead ---------------------------------------------

    def _state(self) -> bytes:
        running = [
            [entry.run_id, entry.call_id.decode(errors="replace")]
            for entry in list(self.taken.values())[:100]
        ]
        state: bytes = msgpack.packb(
            {
                "id": self.worker.worker_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": sorted(self.queues),
                "concurrency": self.limit,
                "started_at": self.started_at,
                "running": self.active,  # executing now (not: read and waiting, done)
                "tasks": running,
                "stopping": self.stopping,
            }
        )
        return state

    async def _heartbeat_once(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.worker(self.worker.worker_id), self._state(), px=self.vis_ms)
        pipe.zadd(self.keys.workers, {self.consumer: time.time() + self.vis_ms / 1000})
        pipe.zremrangebyscore(self.keys.workers, 0, time.time() - 3600)
        await pipe.execute()

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self.vis_ms / 3000)
            try:
                await self._heartbeat_once()
            except (RedisError, OSError) as exc:
                self.log.warning("heartbeat failed", error=str(exc))
            await self._gauges_once()

    # --- observability (issue 11): queue depths for the Metrics instrument ------------

    async def _gauges_once(self) -> None:
        """Publish the entries waiting per stream served, if an active Metrics wants
        them (else nothing is read): entries in the stream minus those delivered and
        not acknowledged (acknowledged ones are deleted from the stream)."""
        if not fleet_gauges.wanted():
            return
        streams = list(self.streams)
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(stream)
            pipe.xpending(stream, GROUP)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            self.log.warning("reading queue depths failed", error=str(exc))
            return
        depths: dict[tuple[str, int], int] = {}
        for i, stream in enumerate(streams):
            length, pending = replies[2 * i], replies[2 * i + 1]
            if isinstance(length, Exception) or isinstance(pending, Exception):
                continue  # a stream deleted meanwhile (its group is made again on read)
            waiting = int(length) - int(pending.get("pending", 0) if pending else 0)
            depths[(self.queue_names[stream], self.priority[stream])] = max(0, waiting)
        fleet_gauges.publish_depths(self, depths)

    # --- end observability ------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        while not self.stopping:
            try:
                await self.reclaim()
                if anyio.current_time() - self._swept_at >= SWEEP_EVERY:
                    await self.sweep_consumers()
            except (RedisError, OSError) as exc:
                self.log.warning("reclaiming failed", error=str(exc))
            await anyio.sleep(self.vis_ms / 3000)

    async def _forget(self, stream: bytes, name: bytes) -> bool:
        """Delete consumer ``name`` from ``stream``'s group if it holds nothing and
        has been idle past the visibility timeout (one script: nothing is lost)."""
        deleted = await self.scripts.call(
            self.client, "forget", [stream], [GROUP, name, self.vis_ms]
        )
        if deleted:
            self.log.info("forgot a lost worker's consumer", consumer=name.decode(errors="replace"))
        return bool(deleted)

    async def sweep_consumers(self) -> int:
        """Delete from the groups the consumers of workers that are gone (no heartbeat)
        and hold no entry: a fleet that replaces its workers would otherwise grow its
        groups without end. Every ``SWEEP_EVERY`` seconds; returns how many."""
        self._swept_at = anyio.current_time()
        client = self.client
        forgotten = 0
        for stream in list(self.streams):
            try:
                consumers = await client.xinfo_consumers(stream, GROUP)
            except ResponseError:  # no such stream or group (yet)
                continue
            idle = [
                c["name"]
                for c in consumers
                if int(c.get("pending", 0)) == 0
                and int(c.get("idle", 0)) >= self.vis_ms
                and c["name"] != self.consumer
            ]
            if not idle:
                continue
            pipe = client.pipeline(transaction=False)
            for name in idle:  # bytes: the client does not decode replies
                pipe.exists(self.keys.worker(name.decode(errors="replace")))
            for name, exists in zip(idle, await pipe.execute(), strict=True):
                if not exists:
                    forgotten += await self._forget(stream, name)
        return forgotten

    async def reclaim(self) -> int:
        """Claim the entries of dead workers (pending past the visibility timeout),
        and this worker's own entries whose delivery it never received (a reply lost
        with its connection, the read retried)."""
        claimed = 0
        client = self.client
        for stream in list(self.streams):
            free = self.limit - self.active
            if free <= 0 or self.stopping:
                break
            claimed += await self._recover_own(stream, free)
            free = self.limit - self.active
            pending = await client.xpending_range(
                stream, GROUP, min="-", max="+", count=max(free, 1000), idle=self.vis_ms
            )
            if not pending:
                continue
            owners = {p["consumer"] for p in pending} - {self.consumer}
            alive: set[bytes] = set()
            if owners:
                names = list(owners)
                pipe = client.pipeline(transaction=False)
                for name in names:
                    pipe.exists(self.keys.worker(name.decode(errors="replace")))
                for name, exists in zip(names, await pipe.execute(), strict=True):
                    if exists:
                        alive.add(name)
            ids = [
                p["message_id"]
                for p in pending
                if p["consumer"] not in alive and (stream, p["message_id"]) not in self.taken
            ][:free]
            if not ids:
                continue
            deliveries = {p["message_id"]: int(p["times_delivered"]) for p in pending}
            entries = await client.xclaim(stream, GROUP, self.consumer, self.vis_ms, ids)
            # Their entries claimed, the dead workers' names leave the group.
            for name in {p["consumer"] for p in pending} - alive - {self.consumer}:
                await self._forget(stream, name)
            for entry_id, fields in entries:
                if not fields:  # deleted meanwhile (its run withdrew it)
                    continue
                claimed += 1
                entry = Entry(
                    stream, entry_id, fields, self.priority.get(stream, 0),
                    deliveries.get(entry_id, 1) + 1,
                )  # fmt: skip
                self.log.warning(
                    "reclaimed an entry of a lost worker",
                    run_id=entry.run_id,
                    deliveries=entry.deliveries,
                )
                self._take(entry)
        return claimed

    async def _recover_own(self, stream: bytes, free: int) -> int:
        lost = [
            p["message_id"]
            for p in await self.client.xpending_range(
                stream, GROUP, "-", "+", 1000, consumername=self.consumer, idle=1000
            )
            if (stream, p["message_id"]) not in self.taken
        ][:free]
        if not lost:
            return 0
        entries = await self.client.xclaim(stream, GROUP, self.consumer, 1000, lost)
        count = 0
        for entry_id, fields in entries:
            if fields:
                count += 1
                self._take(Entry(stream, entry_id, fields, self.priority.get(stream, 0), 1))
        if count:
            self.log.warning("took back entries whose delivery was lost", count=count)
        return count

    # --- control messages ----------------------------------------------------------------

    async def _on_reconnect(self, connection: Any) -> None:
        self._missed = True

    _missed = False

    async def _control_loop(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            except _CONNECTION_ERRORS as exc:
                self.log.warning("control channel failed: reconnecting", error=str(exc))
                self._missed = True
                await anyio.sleep(0.1)
                continue
            if self._missed:
                await self._catch_up()
            if message is None or message.get("type") != "message":
                continue
            try:
                body = msgpack.unpackb(message["data"], raw=True, use_list=True)
                kind = body[0]
            except Exception:
                self.log.warning("malformed control message ignored")
                continue
            if kind == b"c":
                nonce = body[4] if len(body) > 4 else None
                self._cancel(body[1].decode(errors="replace"), body[2], body[3], nonce)
            elif kind == b"s":
                await self._new_stream(body[1])

    async def _catch_up(self) -> None:
        """After the control connection came back: what may have been missed."""
        self._missed = False
        try:
            registry = await self.client.hgetall(self.keys.queues)
            runs = sorted({entry.run_id for entry in self.taken.values() if entry.run_id})
            flags = []
            if runs:
                pipe = self.client.pipeline(transaction=False)
                for run_id in runs:
                    pipe.get(self.keys.run(run_id, "cancelled"))
                flags = await pipe.execute()
        except (RedisError, OSError):
            self._missed = True
            return
        changed = False
        for key, value in registry.items():
            changed |= self._add_stream(key, value)
        if changed and self.read_scope is not None:
            self.read_scope.cancel()
        for run_id, nonce in zip(runs, flags, strict=True):
            if nonce:  # the coordinator (that nonce) ended the run meanwhile
                self._cancel(run_id, None, b"the run was cancelled", nonce)

    async def _new_stream(self, key: bytes) -> None:
        value = await self.client.hget(self.keys.queues, key)
        if value is not None and self._add_stream(key, value) and self.read_scope is not None:
            self.read_scope.cancel()  # the blocking read starts over with it

    def _cancel(
        self,
        run_id: str,
        call_ids: list[bytes] | None,
        reason: bytes | None,
        nonce: bytes | None = None,
    ) -> None:
        """Cancel calls of a run: those named, or all of one coordinator (``nonce``:
        its queued entries are dropped too), or (neither) those running now."""
        text = reason.decode(errors="replace") if reason else "cancelled"
        wanted: set[str] | None = None
        if call_ids is None and nonce is not None:
            self.cancelled_runs[(run_id, nonce)] = None
            if len(self.cancelled_runs) > 10_000:
                self.cancelled_runs.popitem(last=False)
        elif call_ids is not None:
            wanted = {c.decode(errors="replace") for c in call_ids}
        # Call ids are "<nonce>-<n>"; running ones are found through the entries this
        # worker holds.
        count = 0
        for entry in list(self.taken.values()):
            if entry.run_id != run_id or (nonce is not None and entry.nonce != nonce):
                continue
            call_id = entry.call_id.decode(errors="replace")
            if wanted is not None and call_id not in wanted:
                continue
            if self.worker.cancel(call_id, text):
                count += 1
            elif wanted is not None:
                self.cancelled_calls.add(entry.call_id)  # not started yet: dropped
        if count:
            self.log.info("tasks cancelled", run_id=run_id, count=count, reason=text)


# Stand-in results: only their status is read when storing (succeeded or not).
_NOT_STARTED = TaskResult(
    call_id="-", run_id="-", task_name="-", attempt=1, status="cancelled",
    error=ErrorInfo.from_exception(DeadLetteredError("not started")),
)  # fmt: skip
_FAILED = TaskResult(
    call_id="-", run_id="-", task_name="-", attempt=1, status="failed",
    error=ErrorInfo.from_exception(DeadLetteredError("dead-lettered")),
)  # fmt: skip
