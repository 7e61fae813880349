"""RedisChannel beyond the contract: atomic across clients, signed, isolated, in a run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
import redis.asyncio as aioredis
from channel_helpers import OTHER_KEY, Point, keyring, unique_run_id
from redis_server import RedisServer, free_port

import aioflow
from aioflow import ChannelError, TaskContext, parallel, task, workflow
from aioflow.channels.redis import LIST_MARKER, RedisChannel
from aioflow.serialization import Keyring


@pytest.fixture
async def two_channels(redis_server: RedisServer) -> AsyncIterator[tuple[RedisChannel, ...]]:
    """Two channels of one run, each with its own client and connection pool."""
    run_id = unique_run_id()
    async with (
        RedisChannel(redis_server.url, run_id, keyring()) as first,
        RedisChannel(redis_server.url, run_id, keyring()) as second,
    ):
        assert first._client.connection_pool is not second._client.connection_pool
        yield first, second


def raw_key(channel: RedisChannel, key: str) -> bytes:
    return f"{channel.prefix}:run:{{{channel.run_id}}}:chan:{key}".encode()


async def test_concurrent_incr_from_two_clients_is_exact(
    two_channels: tuple[RedisChannel, RedisChannel],
) -> None:
    async def bump(channel: RedisChannel, amount: int) -> None:
        for _ in range(20):
            await channel.incr("count", amount)

    async with anyio.create_task_group() as tg:
        for channel in two_channels:
            for _ in range(10):  # 10 tasks x 20 = 200 increments per channel
                tg.start_soon(bump, channel, 1)
    first, second = two_channels
    assert await first.get("count") == 400
    assert await second.get("count") == 400
    assert await second.incr("count", 0) == 400


async def test_concurrent_append_from_two_clients_keeps_every_item(
    two_channels: tuple[RedisChannel, RedisChannel],
) -> None:
    lengths: list[int] = []

    async def push(channel_index: int, worker: int) -> None:
        for i in range(20):
            item = (channel_index, worker, i)
            lengths.append(await two_channels[channel_index].append("items", item))

    async with anyio.create_task_group() as tg:
        for channel_index in range(2):
            for worker in range(10):
                tg.start_soon(push, channel_index, worker)
    items = await two_channels[0].get("items")
    assert len(items) == 400
    expected = [(c, w, i) for c in range(2) for w in range(10) for i in range(20)]
    assert sorted(items) == expected
    assert sorted(lengths) == list(range(1, 401))  # every append saw its own new length


async def test_a_tampered_value_is_refused(redis_server: RedisServer) -> None:
    async with RedisChannel(redis_server.url, unique_run_id(), keyring()) as channel:
        await channel.set("p", Point(1, 2.0))
        await channel.append("l", "item")
        raw = redis_server.client()
        try:
            data = bytearray(raw.get(raw_key(channel, "p")))
            data[-1] ^= 0x01
            raw.set(raw_key(channel, "p"), bytes(data))
            raw.rpush(raw_key(channel, "l"), b"AF" + b"\x00" * 60)
            raw.set(raw_key(channel, "foreign"), b"hello")
            raw.sadd(raw_key(channel, "a set"), b"x")
        finally:
            raw.close()
        with pytest.raises(ChannelError, match="refused") as info:
            await channel.get("p")
        assert "AIOFLOW_SECRET_KEY" in info.value.hint
        with pytest.raises(ChannelError, match="refused"):
            await channel.get("l")
        with pytest.raises(ChannelError, match="not written by aioflow"):
            await channel.get("foreign")
        with pytest.raises(ChannelError, match="Redis set"):
            await channel.get("a set")
        with pytest.raises(ChannelError, match="Redis set"):
            await channel.incr("a set")


async def test_a_value_signed_with_another_key_is_refused(redis_server: RedisServer) -> None:
    run_id = unique_run_id()
    async with (
        RedisChannel(redis_server.url, run_id, Keyring(OTHER_KEY)) as writer,
        RedisChannel(redis_server.url, run_id, keyring()) as reader,
    ):
        await writer.set("k", {"secret": 1})
        with pytest.raises(ChannelError, match="refused"):
            await reader.get("k")
        await writer.incr("n")  # native ints are not signed: a counter is just a number
        assert await reader.get("n") == 1


async def test_ints_are_native_redis_integers(redis_server: RedisServer) -> None:
    async with RedisChannel(redis_server.url, unique_run_id(), keyring()) as channel:
        await channel.set("n", 7)
        await channel.incr("m", 3)
        await channel.append("l", 1)
        raw = redis_server.client()
        try:
            assert raw.get(raw_key(channel, "n")) == b"7"
            assert raw.incrby(raw_key(channel, "m"), 2) == 5
            assert raw.lrange(raw_key(channel, "l"), 0, 0) == [LIST_MARKER]
        finally:
            raw.close()
        assert await channel.get("m") == 5
        await channel.set("big", 2**70)  # beyond 64 bits: encoded, still an int
        assert await channel.get("big") == 2**70
        with pytest.raises(ChannelError, match="64 bits"):
            await channel.incr("big")
        await channel.set("top", 2**63 - 1)
        with pytest.raises(ChannelError, match="overflow"):
            await channel.incr("top")
        assert await channel.get("top") == 2**63 - 1


async def test_runs_do_not_see_each_others_keys(redis_server: RedisServer) -> None:
    async with (
        RedisChannel(redis_server.url, unique_run_id(), keyring()) as one,
        RedisChannel(redis_server.url, unique_run_id(), keyring()) as two,
        RedisChannel(redis_server.url, one.run_id, keyring(), prefix="other") as elsewhere,
    ):
        await one.set("shared name", 1)
        await one.incr("n", 10)
        await two.set("shared name", 2)
        assert await one.get("shared name") == 1
        assert await two.get("shared name") == 2
        assert await two.get("n") is None
        assert await two.incr("n") == 1
        assert sorted(await one.keys()) == ["n", "shared name"]
        assert await elsewhere.keys() == []
        assert await two.delete("shared name")
        assert await one.get("shared name") == 1


async def test_clear_deletes_only_this_runs_keys(redis_server: RedisServer) -> None:
    async with (
        RedisChannel(redis_server.url, unique_run_id(), keyring()) as one,
        RedisChannel(redis_server.url, unique_run_id(), keyring()) as two,
    ):
        for i in range(600):  # more than one DEL batch
            await one.set(f"k{i}", i)
        await one.append("l", 1)
        await two.set("k0", "kept")
        assert await one.clear() == 601
        assert await one.keys() == []
        assert await one.clear() == 0
        assert await two.get("k0") == "kept"


async def test_a_run_id_that_is_a_prefix_of_another_is_separate(redis_server: RedisServer) -> None:
    base = unique_run_id()
    async with (
        RedisChannel(redis_server.url, base, keyring()) as short,
        RedisChannel(redis_server.url, base + "x", keyring()) as long,
    ):
        await long.set("k", 1)
        assert await short.keys() == []


async def test_retention_ttl_applies_to_new_keys(redis_server: RedisServer) -> None:
    async with RedisChannel(redis_server.url, unique_run_id(), keyring(), ttl=60) as channel:
        await channel.set("s", "v")
        await channel.incr("n")
        await channel.append("l", 1)
        await channel.set("own", 1, ttl=0.1)
        raw = redis_server.client()
        try:
            for key in ("s", "n", "l"):
                assert 0 < raw.pttl(raw_key(channel, key)) <= 60_000
            assert 0 < raw.pttl(raw_key(channel, "own")) <= 100
        finally:
            raw.close()
        await anyio.sleep(0.12)
        assert await channel.get("own") is None
        assert await channel.incr("n") == 2


async def test_a_caller_client_is_used_and_not_closed(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    try:
        channel = RedisChannel(client, unique_run_id(), keyring())
        await channel.set("k", (1,))
        await channel.aclose()
        assert await channel.get("k") == (1,)  # still open: the caller owns it
    finally:
        await client.aclose()
    with pytest.raises(ChannelError, match="decode responses"):
        RedisChannel(aioredis.Redis(decode_responses=True), "r", keyring())


async def test_connection_errors_name_the_url_without_its_password() -> None:
    port = free_port()  # nothing listens there
    url = f"redis://alice:s3cret-pw@127.0.0.1:{port}/0"
    async with RedisChannel(url, "r1", keyring(), connect_timeout=1.0) as channel:
        with pytest.raises(ChannelError) as info:
            await channel.get("k")
    text = f"{info.value} {info.value.hint} {channel!r}"
    assert "s3cret-pw" not in text
    assert f"redis://alice@127.0.0.1:{port}/0" in str(info.value)
    assert "reachable" in info.value.hint


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("http://127.0.0.1/", "r"), "redis://"),
        (("redis://127.0.0.1/", "with{brace}"), "run_id"),
        (("redis://127.0.0.1/", ""), "run_id"),
        ((42, "r"), "URL"),
    ],
)
def test_bad_options_are_refused(args: tuple[object, str], message: str) -> None:
    with pytest.raises(ChannelError, match=message):
        RedisChannel(args[0], args[1], keyring())  # type: ignore[arg-type]


def test_importing_aioflow_does_not_import_redis() -> None:
    code = "import sys, aioflow, aioflow.channels; assert 'redis' not in sys.modules, 'redis'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_a_workflow_shares_a_redis_channel(redis_server: RedisServer) -> None:
    @task
    async def work(ctx: TaskContext) -> None:
        for i in range(20):
            await ctx.channel.incr("count")
            await ctx.channel.incr("sum", i)
            await anyio.lowlevel.checkpoint()
        await ctx.channel.append("seen", (ctx.task_name, Point(1, 0.5)))

    @task
    async def sink(ctx: TaskContext) -> tuple[int, int, list[str]]:
        seen = await ctx.channel.get("seen")
        assert all(point == Point(1, 0.5) for _, point in seen)
        return (
            await ctx.channel.get("count"),
            await ctx.channel.get("sum"),
            sorted(name for name, _ in seen),
        )

    with workflow("redis-channel") as wf:
        parallel(*(work.bind(name=f"w{i}") for i in range(5))) >> sink
    run_id = unique_run_id()
    async with RedisChannel(redis_server.url, run_id, keyring()) as channel:
        results = await aioflow.run(wf, channel=channel)
        assert results["sink"] == (100, 5 * sum(range(20)), [f"w{i}" for i in range(5)])
    async with RedisChannel(redis_server.url, run_id, keyring()) as reader:
        assert await reader.get("count") == 100  # visible to any process of the run


async def test_a_resumed_run_finds_its_redis_channel_as_it_left_it(
    redis_server: RedisServer, tmp_path: object
) -> None:
    gate = {"fail": True}

    @task
    async def writes(ctx: TaskContext) -> None:
        await ctx.channel.append("log", "once")
        await ctx.channel.incr("n", 3)

    @task
    async def then(ctx: TaskContext) -> tuple[list[str], int]:
        if gate["fail"]:
            raise ConnectionError("down")
        return await ctx.channel.get("log"), await ctx.channel.get("n")

    with workflow("resumed-redis-channel") as wf:
        writes >> then
    run_id = unique_run_id()
    db = f"sqlite:///{tmp_path}/runs.db"
    async with RedisChannel(redis_server.url, run_id, keyring()) as channel:
        with pytest.raises(aioflow.WorkflowFailedError):
            await aioflow.run(wf, channel=channel, checkpoint=db, run_id=run_id)
    gate["fail"] = False
    async with RedisChannel(redis_server.url, run_id, keyring()) as channel:
        result = await aioflow.resume(db, wf, channel=channel)
    # The journal's writes are not applied again to a durable channel: no doubles.
    assert result["then"] == (["once"], 3)
