"""FORGET_CONSUMER: a consumer leaves its group only with nothing pending, idle long
enough (checked and done in one script, on a real Redis)."""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from aioflow.backends._redis_layout import FORGET_CONSUMER, GROUP, Scripts


async def test_a_consumer_is_forgotten_only_when_it_holds_nothing(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    stream = f"forget-{secrets.token_hex(4)}".encode()
    scripts = Scripts(forget=FORGET_CONSUMER)
    try:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        entry = await client.xadd(stream, {b"d": b"x"})
        await client.xreadgroup(GROUP, b"ghost", {stream: ">"}, count=1)

        async def forget(name: bytes, idle_ms: int) -> int:
            return int(await scripts.call(client, "forget", [stream], [GROUP, name, idle_ms]))

        assert await forget(b"ghost", 0) == 0  # it holds an entry: kept
        await client.xack(stream, GROUP, entry)
        assert await forget(b"ghost", 3_600_000) == 0  # idle for less than that: kept
        assert await forget(b"nobody", 0) == 0  # not a member: nothing to do
        assert await forget(b"ghost", 0) == 1
        assert await client.xinfo_consumers(stream, GROUP) == []
    finally:
        await client.delete(stream)
        await client.aclose()
