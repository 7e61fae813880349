"""Helpers of the distributed tests: the run's channel, Redis state, bounded waits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from aioflow.backends.redis import RedisBackend
from aioflow.channels import Channel
from aioflow.serialization import Keyring


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend.from_url(url, **options)
    async with backend:
        yield backend


@contextlib.asynccontextmanager
async def run_channel(url: str, run_id: str) -> AsyncIterator[Channel]:
    """The channel of run ``run_id`` as tasks on the workers see it."""
    async with opened(url) as backend:
        yield backend.run_channel(run_id, Keyring.from_env())


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, within: float, interval: float = 0.02
) -> Any:
    """Until ``await check()`` is truthy (returned); fails after ``within`` seconds.

    Polls: what it waits on lives in another process (Redis state, a worker's
    heartbeat), which sends no event the test could wait on.
    """
    with anyio.fail_after(within):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(interval)


async def cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """``aioflow ARGV`` in a thread (it runs its own event loop); exit code, out, err."""
    from aioflow import cli as aioflow_cli

    capsys.readouterr()
    code = await anyio.to_thread.run_sync(aioflow_cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err
