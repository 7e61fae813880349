"""Operating a Redis backend: live workers, the dead-letter stream, cancelling a run.

Used by :class:`~aioflow.backends.redis.RedisBackend`'s methods (``workers()``,
``dead_letters()``, ``retry_dead_letters()``, ``purge_dead_letters()``,
``cancel_run()``) and through them by ``aioflow workers | dlq | cancel``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack  # type: ignore[import-untyped]

from ._redis_layout import parse_stream_field

if TYPE_CHECKING:
    from .redis import RedisBackend

__all__ = ["DeadLetter", "WorkerInfo", "cancel_run", "dead_letters", "purge", "retry", "workers"]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, as its last heartbeat described it.

    ``running`` counts the attempts it was executing; ``tasks`` lists (up to 100) the
    entries it held: executing, read and about to start, or finished with their
    outcome not yet acknowledged.
    """

    worker_id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    started_at: float
    stopping: bool
    tasks: list[tuple[str, str]] = field(default_factory=list)  # (run id, call id)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry of the dead-letter stream."""

    id: str
    queue: str
    priority: int
    run_id: str
    call_id: str
    deliveries: int
    error: str
    worker: str
    at: float


async def workers(backend: RedisBackend) -> list[WorkerInfo]:
    """The workers whose heartbeat has not expired, oldest first."""
    client: Any = backend.client
    keys = backend.keys
    ids = await client.zrangebyscore(keys.workers, time.time(), "+inf")
    if not ids:
        return []
    states = await client.mget([keys.worker(i.decode()) for i in ids])
    found: list[WorkerInfo] = []
    for state in states:
        if state is None:
            continue
        data = msgpack.unpackb(state)
        found.append(
            WorkerInfo(
                worker_id=data["id"],
                host=data["host"],
                pid=data["pid"],
                queues=list(data["queues"]),
                concurrency=data["concurrency"],
                running=data["running"],
                started_at=data["started_at"],
                stopping=data["stopping"],
                tasks=[(run, call) for run, call in data["tasks"]],
            )
        )
    found.sort(key=lambda w: w.started_at)
    return found


def _letter(
    entry_id: bytes, fields: dict[bytes, bytes], registry: dict[bytes, bytes]
) -> DeadLetter:
    stream = fields.get(b"stream", b"")
    described = registry.get(stream)
    queue, priority = parse_stream_field(described) if described else ("?", 0)
    return DeadLetter(
        id=entry_id.decode(),
        queue=queue,
        priority=priority,
        run_id=fields.get(b"r", b"").decode(errors="replace"),
        call_id=fields.get(b"c", b"").decode(errors="replace"),
        deliveries=int(fields.get(b"n", b"0") or 0),
        error=fields.get(b"error", b"").decode(errors="replace"),
        worker=fields.get(b"worker", b"").decode(errors="replace"),
        at=float(fields.get(b"at", b"0") or 0),
    )


async def dead_letters(backend: RedisBackend, limit: int | None = 100) -> list[DeadLetter]:
    """The dead-lettered entries, oldest first (at most ``limit``)."""
    client: Any = backend.client
    registry = await client.hgetall(backend.keys.queues)
    entries = await client.xrange(backend.keys.dlq, count=limit)
    return [_letter(entry_id, fields, registry) for entry_id, fields in entries]


async def _select(backend: RedisBackend, ids: list[str] | None) -> list[tuple[bytes, Any]]:
    client: Any = backend.client
    if ids is None:
        result: list[tuple[bytes, Any]] = await client.xrange(backend.keys.dlq)
        return result
    found = []
    for entry_id in ids:
        found.extend(await client.xrange(backend.keys.dlq, entry_id, entry_id))
    return found


async def retry(backend: RedisBackend, ids: list[str] | None) -> int:
    """Put dead-lettered entries back on their streams (all when ``ids`` is None).

    The entry starts with no deliveries; if its run already recorded an outcome
    for that call (first wins), the new one is dropped when it comes.
    """
    client: Any = backend.client
    entries = await _select(backend, ids)
    count = 0
    for entry_id, fields in entries:
        stream = fields.get(b"stream")
        if not stream:
            continue
        pipe = client.pipeline(transaction=True)
        entry = {b"r": fields[b"r"], b"c": fields[b"c"], b"d": fields[b"d"]}
        entry[b"p"] = fields.get(b"p", b"")
        pipe.xadd(stream, entry)
        pipe.incr(backend.keys.queue_of(stream) + b":len")
        pipe.xdel(backend.keys.dlq, entry_id)
        await pipe.execute()
        count += 1
    return count


async def purge(backend: RedisBackend, ids: list[str] | None) -> int:
    """Delete dead-lettered entries (all when ``ids`` is None); how many went."""
    client: Any = backend.client
    if ids is None:
        count: int = await client.xlen(backend.keys.dlq)
        await client.delete(backend.keys.dlq)
        return count
    return int(await client.xdel(backend.keys.dlq, *ids)) if ids else 0


async def cancel_run(backend: RedisBackend, run_id: str, reason: str) -> None:
    """Cancel a run from anywhere: its coordinator ends it (cancelled, journaled) and
    withdraws its queued tasks; the workers cancel its running ones at once."""
    client: Any = backend.client
    keys = backend.keys
    coordinator = await client.get(keys.run(run_id, "coordinator"))
    # The coordinator ends the run: it withdraws what is queued and cancels what runs
    # (as handle.cancel() does), so its tasks are recorded as cancelled, not failed.
    heard = 0
    if coordinator:
        heard = await client.publish(coordinator, msgpack.packb(["x", run_id, reason]))
    if not heard:  # no coordinator listens (it died): cancel what runs on the workers
        await client.publish(keys.control, msgpack.packb(["c", run_id, None, reason]))
