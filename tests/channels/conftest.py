"""Fixtures of the channel tests: every contract test runs on every channel.

The Redis channel runs on a real ``redis-server`` started for the session on a free
port of 127.0.0.1 (``tests/redis_server.py``); each Redis channel gets a fresh run
id, so every channel starts empty. Without ``redis-server`` the Redis tests fail
(with how to install it); they are never skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from channel_helpers import Advance, FakeClock, keyring, unique_run_id
from redis_server import RedisServer

from aioflow.channels import Channel, MemoryChannel
from aioflow.channels.redis import RedisChannel

CHANNEL_KINDS = ("memory", "redis")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=CHANNEL_KINDS)
def channel_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def channel(
    channel_kind: str, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[Channel]:
    """An empty channel of each kind (memory on the fake clock, Redis with a new run id)."""
    if channel_kind == "memory":
        yield MemoryChannel(clock=clock)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with RedisChannel(server.url, unique_run_id(), keyring()) as redis_channel:
        yield redis_channel


@pytest.fixture
def advance(channel_kind: str, clock: FakeClock) -> Advance:
    """Let ``seconds`` pass for the channel's TTLs (keep them short: Redis sleeps)."""

    async def advance(seconds: float) -> None:
        if channel_kind == "memory":
            clock.now += seconds
        else:
            await anyio.sleep(seconds)

    return advance
