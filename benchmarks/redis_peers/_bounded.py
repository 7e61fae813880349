"""``bounded_gather``: run coroutine factories with at most ``limit`` in flight, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def bounded_gather(factory: Callable[[], Awaitable[T]], n: int, limit: int) -> list[T]:
    """``[await factory() for _ in range(n)]``, ``limit`` at a time (results in order).

    For enqueue APIs without a batched form (taskiq's ``kiq``, arq's
    ``enqueue_job``): one call at a time would measure the producer's round trips,
    all N at once would open a connection per call (their pools are unbounded).
    """
    results: list[T] = []
    for start in range(0, n, limit):
        batch = [factory() for _ in range(min(limit, n - start))]
        results.extend(await asyncio.gather(*batch))
    return results
