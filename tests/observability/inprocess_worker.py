"""A Redis worker in the test's own process and event loop (its tasks can wait on
the test), and entries planted on a queue's stream for it to dead-letter."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import redis.asyncio as aioredis

import aioflow


def backend_url(server_url: str) -> str:
    """A fresh prefix on ``server_url``; visibility_timeout=0.6: a heartbeat (and a
    queue-depth reading) every 0.2 s."""
    return f"{server_url}?prefix=gauges-{secrets.token_hex(3)}&visibility_timeout=0.6"


def prefix_of(url: str) -> str:
    query = url.partition("?")[2]
    return dict(part.split("=") for part in query.split("&"))["prefix"]


@asynccontextmanager
async def serving(
    url: str, instruments: Sequence[object], queues: Sequence[str], concurrency: int = 1
) -> AsyncIterator[aioflow.Worker]:
    """A worker of ``queues`` running in this event loop, shut down on exit."""
    worker = aioflow.Worker(url, instruments=instruments, concurrency=concurrency)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: worker.run(queues=list(queues), grace=1.0))
        try:
            yield worker
        finally:
            worker.shutdown()


async def plant_garbage(url: str, queue: str, count: int) -> None:
    """Entries that do not verify on ``queue``'s stream: a worker dead-letters them."""
    prefix = prefix_of(url)
    client = aioredis.Redis.from_url(url.partition("?")[0])
    try:
        for i in range(count):
            await client.xadd(
                f"{prefix}:queue:{{{queue}}}:p0",
                {"r": f"forged-{i}", "c": f"c-{i}", "d": b"\x00not a payload"},
            )
            await client.incr(f"{prefix}:queue:{{{queue}}}:len")
    finally:
        await client.aclose()


async def until(check: Callable[[], Any], within: float = 10.0) -> Any:
    """Until ``check()`` (awaited if need be) is truthy; fails after ``within`` s.

    Polls: what it waits on changes on the worker's heartbeat (a timer) or lives in
    Redis; nothing sends an event the test could wait on.
    """
    with anyio.fail_after(within):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await anyio.sleep(0.02)
