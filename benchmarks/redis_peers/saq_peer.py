"""saq: worker-side functions, worker settings and the producer.

Workers: ``saq benchmarks.redis_peers.saq_peer.settings --workers 1`` (one process
per invocation; the harness starts W), ``concurrency: 32``, saq's defaults
otherwise (its CLI logs at WARNING).

Producer: ``Queue.from_url(URL)``. saq's completion notifications are pub/sub
messages (the worker publishes every status change of a job; the queue's
``PubSubMultiplexer`` holds one pattern subscription and routes them in process).
``Queue.listen(keys, callback)`` waits on them; ``Queue.map``/``apply`` instead
poll ``MGET`` of every unfinished job (``poll_interval``, 0.5 s by default),
which for 20,000 jobs would make the producer, not saq's workers, the limit.
So, as fast as saq goes:

* the producer keeps its multiplexer subscribed for its whole life (one
  long-lived ``listen`` on an unused key, as any long-running saq client has),
  and every wait subscribes **before** it enqueues, so no notification is missed;
* throughput: one ``listen`` over the N job keys (a callback counts terminal
  statuses), then the N ``queue.enqueue`` calls gathered, as ``Queue.map``
  enqueues (saq bounds them with its own ``max_concurrent_ops`` semaphore);
* one task: ``listen`` on its key, ``enqueue``, then one ``job.refresh()`` to read
  the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from types import TracebackType
from typing import Any, Self

from saq import Queue
from saq.job import TERMINAL_STATUSES, Status

from . import concurrency_from_env, mark_ready, redis_url

queue = Queue.from_url(redis_url())


async def noop(ctx: Any) -> None:
    """Does nothing."""


async def started(ctx: Any) -> float:
    """The wall-clock time at which this job started."""
    return time.time()


settings = {
    "queue": queue,
    "functions": [noop, started],
    "concurrency": concurrency_from_env(),
}


class Producer:
    def __init__(self, url: str, poll: float) -> None:
        del url, poll  # the module's queue names the Redis; completions are pushed
        self._keepalive: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await queue.connect()
        self._keepalive = asyncio.create_task(
            queue.listen(["bench-keepalive"], lambda _key, _status: False, timeout=None)
        )
        for _ in range(200):  # until the pattern subscription is in place
            if queue._pubsub.pubsub.subscribed:  # saq keeps it private
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive
        await queue.disconnect()

    async def _listen(self, keys: list[str]) -> asyncio.Task[None]:
        pending = set(keys)
        failed: list[tuple[str, Status]] = []

        def callback(key: str, status: Status) -> bool:
            if status in TERMINAL_STATUSES:
                pending.discard(key)
                if status != Status.COMPLETE:
                    failed.append((key, status))
            return not pending

        async def wait() -> None:
            await queue.listen(keys, callback, timeout=None)
            if failed:
                raise RuntimeError(f"{len(failed)} saq jobs did not complete: {failed[:3]}")

        task = asyncio.create_task(wait())
        await asyncio.sleep(0)  # the listener registers its keys before anything is enqueued
        return task

    async def prepare(self, n: int) -> Any:
        return [uuid.uuid4().hex for _ in range(n)]

    async def fanout(self, keys: Any) -> int:
        listener = await self._listen(keys)
        await asyncio.gather(*(queue.enqueue("noop", key=key) for key in keys))
        await listener
        return len(keys)

    async def one(self) -> float:
        key = uuid.uuid4().hex
        listener = await self._listen([key])
        job = await queue.enqueue("started", key=key)
        await listener
        assert job is not None
        await job.refresh()
        return float(job.result)


mark_ready()
