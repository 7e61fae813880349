"""streaq: worker-side tasks and the producer.

Workers: ``streaq run benchmarks.redis_peers.streaq_peer:worker --workers 1``
(one process per invocation; the harness starts W). The module-level ``Worker``
has ``concurrency=32`` and streaq's defaults otherwise (prefetch = concurrency,
pickle serializer, logging at INFO as its CLI sets it).

Producer: the same ``Worker`` object used as a client (``async with worker:``).
Throughput: ``worker.enqueue_many(tasks)`` (streaq's batched enqueue: one
pipeline), then ``task.result()`` for every task, 256 waits in flight at a time,
in enqueue order. streaq waits for a result on a pub/sub subscription of its own
(no polling), but leaving it costs 0.1 s: coredis's ``PubSub`` cleanup waits its
``unsubscription_timeout`` (0.1 s, not settable through streaq) for the
unsubscribe acknowledgement. One ``result()`` at a time would measure that
(10 results/s), hence the window; the one-task round trip shows it as it is. Each
wait holds a connection of its own, so the client's pool (coredis: 64 connections
by default, blocking) is raised to 1,024 through ``redis_kwargs``: with 64, 256
waits deadlock (each holds its pub/sub connection and waits for another to GET).
One task: ``await started.enqueue()`` then ``task.result()``.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Self

from streaq import Worker

from . import concurrency_from_env, mark_ready, redis_url

WINDOW = 256  # result() waits in flight: 2,560 results/s through the 0.1 s teardown

worker = Worker(
    redis_url=redis_url(),
    concurrency=concurrency_from_env(),
    redis_kwargs={"max_connections": 1024},
)


@worker.task()
async def noop() -> None:
    """Does nothing."""


@worker.task()
async def started() -> float:
    """The wall-clock time at which this task started."""
    return time.time()


class Producer:
    def __init__(self, url: str, poll: float) -> None:
        del url, poll  # the module's worker already names the Redis; results are pushed

    async def __aenter__(self) -> Self:
        await worker.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await worker.__aexit__(exc_type, exc, tb)

    async def prepare(self, n: int) -> Any:
        return [noop.enqueue() for _ in range(n)]  # Task objects: not sent until enqueue_many

    async def fanout(self, tasks: Any) -> int:
        await worker.enqueue_many(tasks)
        window = asyncio.Semaphore(WINDOW)

        async def wait(task: Any) -> None:
            async with window:
                result = await task.result()
            if not result.success:
                raise RuntimeError(f"streaq task failed: {result!r}")

        await asyncio.gather(*(wait(task) for task in tasks))
        return len(tasks)

    async def one(self) -> float:
        task = await started.enqueue()
        result = await task.result()
        if not result.success:
            raise RuntimeError(f"streaq task failed: {result!r}")
        return float(result.result)


mark_ready()
