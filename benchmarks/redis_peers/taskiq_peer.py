"""taskiq with taskiq-redis's stream broker: worker-side tasks, the broker, the producer.

Workers: ``taskiq worker benchmarks.redis_peers.taskiq_peer:broker --workers 1
--max-async-tasks 32`` (one worker process per invocation, under taskiq's own
supervisor process; the harness starts W). ``RedisStreamBroker`` (Redis Streams,
consumer groups: taskiq-redis's recommended broker) with
``RedisAsyncResultBackend``; defaults otherwise (``xread_count=100``,
``xread_block=2000`` ms).

Producer: ``task.kiq()`` (taskiq has no batched enqueue; 32 in flight at a time),
then ``wait_result(check_interval=POLL)`` for each task in enqueue order
(taskiq's result backend is polled: ``POLL`` is the harness's ``--poll``, 1 ms by
default; taskiq's own default is 0.2 s).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Self

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from . import mark_ready, redis_url
from ._bounded import bounded_gather

broker = RedisStreamBroker(url=redis_url()).with_result_backend(
    RedisAsyncResultBackend(redis_url=redis_url())
)


@broker.task
async def noop() -> None:
    """Does nothing."""


@broker.task
async def started() -> float:
    """The wall-clock time at which this task started."""
    return time.time()


class Producer:
    def __init__(self, url: str, poll: float) -> None:
        del url  # the module's broker names the Redis
        self.poll = poll

    async def __aenter__(self) -> Self:
        await broker.startup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await broker.shutdown()

    async def prepare(self, n: int) -> Any:
        return n

    async def fanout(self, n: Any) -> int:
        tasks = await bounded_gather(noop.kiq, n, 32)
        done = 0
        for task in tasks:
            result = await task.wait_result(check_interval=self.poll)
            if result.is_err:
                raise RuntimeError(f"taskiq task failed: {result.error!r}")
            done += 1
        return done

    async def one(self) -> float:
        task = await started.kiq()
        result = await task.wait_result(check_interval=self.poll)
        if result.is_err:
            raise RuntimeError(f"taskiq task failed: {result.error!r}")
        return float(result.return_value)


mark_ready()
