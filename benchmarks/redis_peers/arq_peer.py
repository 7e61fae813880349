"""arq: worker-side functions, worker settings and the producer.

Workers: ``arq benchmarks.redis_peers.arq_peer.WorkerSettings`` (arq runs one
worker per process; the harness starts W), ``max_jobs=32``, arq's defaults
otherwise: in particular ``poll_delay=0.5`` s (an idle arq worker looks at its
queue every 0.5 s, which is what its enqueue-to-start latency shows) and
logging at INFO (a line per job).

arq pins ``redis<6`` (arq 0.28.0, its latest release) while taskiq-redis needs
``redis>=8``: the harness runs arq with its own interpreter (``--python
arq=/path/to/venv/bin/python``).

Producer: ``create_pool``, ``enqueue_job`` (no batched form; 32 in flight at a
time), then ``job.result(poll_delay=POLL)`` for each job in enqueue order (arq's
results are polled; ``POLL`` is ``--poll``, 1 ms by default; arq's own default
is 0.5 s).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, ClassVar, Self

from arq import create_pool
from arq.connections import RedisSettings

from . import concurrency_from_env, mark_ready, redis_url
from ._bounded import bounded_gather


async def noop(ctx: Any) -> None:
    """Does nothing."""


async def started(ctx: Any) -> float:
    """The wall-clock time at which this job started."""
    return time.time()


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, started]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = concurrency_from_env()


class Producer:
    def __init__(self, url: str, poll: float) -> None:
        self.url = url
        self.poll = poll
        self.pool: Any = None

    async def __aenter__(self) -> Self:
        self.pool = await create_pool(RedisSettings.from_dsn(self.url))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.pool.aclose()

    async def prepare(self, n: int) -> Any:
        return n

    async def fanout(self, n: Any) -> int:
        jobs = await bounded_gather(lambda: self.pool.enqueue_job("noop"), n, 32)
        for job in jobs:
            await job.result(poll_delay=self.poll)  # re-raises the job's exception
        return len(jobs)

    async def one(self) -> float:
        job = await self.pool.enqueue_job("started")
        return float(await job.result(poll_delay=self.poll))


mark_ready()
