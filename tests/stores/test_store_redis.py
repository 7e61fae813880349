"""What only the Redis store does: several connection pools, lost connections, URLs,
the key layout, and whole workflows journaled in Redis and resumed.

The contract suite (``test_store_contract.py``) also runs on Redis; these tests use
the session's ``redis-server`` (``conftest.py``) on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from conftest import unique_prefix
from redis_server import RedisServer, RedisServerMissing, free_port
from store_helpers import finished, record, run_info

import aioflow
from aioflow import task, workflow
from aioflow.errors import CheckpointError, ConfigurationError
from aioflow.stores import RecordKind, blob_digest, open_run_store, parse_store_url
from aioflow.stores.redis import RedisStore


def store_of(server: RedisServer, **options: object) -> RedisStore:
    options.setdefault("prefix", unique_prefix())
    return RedisStore(server.url, **options)  # type: ignore[arg-type]


# --- several writers --------------------------------------------------------------------


async def test_two_stores_appending_to_one_run_keep_seqs_consecutive(
    redis_server: RedisServer,
) -> None:
    prefix = unique_prefix()
    batches, size, writers = 30, 3, 4
    async with (
        store_of(redis_server, prefix=prefix) as one,
        store_of(redis_server, prefix=prefix) as two,
    ):
        await one.begin_run(run_info("shared"), [record(RecordKind.RUN_STARTED)])

        async def write(store: RedisStore, name: str) -> None:
            for b in range(batches):
                batch = [finished(f"{name}/{b}/{i}", data=name.encode()) for i in range(size)]
                await store.append("shared", batch)

        async with anyio.create_task_group() as tg:
            for w in range(writers):
                tg.start_soon(write, one, f"one{w}")
                tg.start_soon(write, two, f"two{w}")
        assert one._client is not two._client
        records = await two.read("shared")
        total = 1 + 2 * writers * batches * size
        assert [r.seq for r in records] == list(range(1, total + 1))
        names = [r.task_name for r in records[1:]]
        assert len(set(names)) == len(names) == total - 1  # nothing lost, nothing twice
        for start in range(0, len(names), size):  # every batch is contiguous, in order
            chunk = names[start : start + size]
            stem = chunk[0].rpartition("/")[0]  # type: ignore[union-attr]
            assert chunk == [f"{stem}/{i}" for i in range(size)]
        info = await one.get_run("shared")
        assert (info.last_seq, info.tasks_succeeded) == (total, total - 1)
        assert (await one.statistics()).records == total


async def test_a_killed_connection_reconnects_and_never_leaves_half_a_batch(
    redis_server: RedisServer,
) -> None:
    admin = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        async with store_of(redis_server) as store:
            await store.begin_run(run_info("r"))
            for step in range(5):
                await store.append("r", [finished(f"a{step}"), finished(f"b{step}")])
                killed = await admin.client_kill_filter(_type="normal", skipme=True)
                assert killed >= 1
            await store.append("r", [finished("last")])
            records = await store.read("r")
            assert [r.seq for r in records] == list(range(1, 12))
            assert [r.task_name for r in records] == [
                *(name for step in range(5) for name in (f"a{step}", f"b{step}")),
                "last",
            ]
            assert (await store.get_run("r")).tasks_succeeded == 11
    finally:
        await admin.aclose()


async def test_a_retried_batch_is_applied_once(redis_server: RedisServer) -> None:
    """A batch sent again (redis-py retries after a dropped reply) lands once: the
    script recognizes the batch's token."""
    async with store_of(redis_server) as store:
        await store.begin_run(run_info("r"))
        batch = store._batch("r", [finished("a"), finished("b")], {}, None)
        keys, args = store._call_args(batch, ())
        first = await store._batch_script("append", batch, keys, args)
        again = await store._batch_script("append", batch, keys, args)
        assert int(first[1]) == int(again[1]) == 2
        assert [r.seq for r in await store.read("r")] == [1, 2]
        assert (await store.get_run("r")).tasks_succeeded == 2


async def test_without_a_server_calls_fail_with_a_checkpoint_error() -> None:
    port = free_port()
    store = RedisStore(f"redis://user:sekret-pw@127.0.0.1:{port}/0", connect_timeout=0.5, retries=1)
    with pytest.raises(CheckpointError) as caught:
        await store.begin_run(run_info("r"))
    error = caught.value
    assert f"127.0.0.1:{port}" in str(error) and f"127.0.0.1:{port}" in error.hint
    assert "Redis" in error.hint
    for text in (str(error), error.hint, error.describe(), repr(store), store.describe()):
        assert "sekret-pw" not in text
    await store.aclose()


async def test_a_wrong_password_is_a_checkpoint_error_that_does_not_show_it(
    redis_server: RedisServer,
) -> None:
    url = f"redis://someone:sekret-pw@127.0.0.1:{redis_server.port}/0"
    store = open_run_store(url)
    assert isinstance(store, RedisStore)
    with pytest.raises(CheckpointError) as caught:
        await store.open()
    for text in (str(caught.value), caught.value.hint, repr(store), store.describe()):
        assert "sekret-pw" not in text
    assert "someone@127.0.0.1" in store.describe()
    await store.aclose()


def test_store_urls_never_show_the_password() -> None:
    parsed = parse_store_url("rediss://me:p%40ss@redis.example:6380/2?prefix=app&retention=7d")
    assert (parsed.scheme, parsed.prefix, parsed.retention) == ("rediss", "app", 604800.0)
    assert "p%40ss" not in str(parsed) and "p%40ss" not in repr(parsed)
    assert str(parsed) == "rediss://me:***@redis.example:6380/2?prefix=app&retention=7d"
    store = open_run_store("rediss://me:p%40ss@redis.example:6380/2?prefix=app&timeout=2s")
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.timeout) == ("app", 2.0)
    assert "p%40ss" not in repr(store) and "p@ss" not in store.describe()
    with pytest.raises(ConfigurationError) as caught:
        parse_store_url("redis://me:sekret@localhost:6379/x")
    assert "sekret" not in str(caught.value)


@pytest.mark.parametrize(
    "options",
    [{"prefix": ""}, {"prefix": "a b"}, {"prefix": "a{b}"}, {"timeout": 0}, {"retries": -1}],
)
def test_bad_options_are_a_configuration_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore("redis://127.0.0.1:6379/0", **options)  # type: ignore[arg-type]


def test_not_a_redis_url_or_client() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisStore("sqlite:///x.db")
    with pytest.raises(ConfigurationError, match="takes a redis"):
        RedisStore(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="decode responses"):
        RedisStore(aioredis.Redis(decode_responses=True))


async def test_an_injected_client_is_used_and_left_open(redis_server: RedisServer) -> None:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        async with RedisStore(client, prefix=unique_prefix()) as store:
            await store.begin_run(run_info("r"), [finished("a")])
            assert store.describe().startswith(f"redis://127.0.0.1:{redis_server.port}/0")
        assert await client.ping()  # the caller's client is still usable
    finally:
        await client.aclose()


# --- key layout -------------------------------------------------------------------------


async def test_keys_are_namespaced_with_a_hash_tag_per_run(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    blob = b"x" * 100
    async with store_of(redis_server, prefix=prefix) as store:
        await store.begin_run(run_info("r1"), [finished("a")], blobs={blob_digest(blob): blob})
        await store.finish_run("r1", "succeeded")
        client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            keys = {k.decode() async for k in client.scan_iter(match=f"{prefix}:*")}
            assert all(k.startswith(f"{prefix}:") for k in keys)
            run_keys = {k for k in keys if ":run:" in k and ":batch:" not in k}
            assert run_keys == {
                f"{prefix}:run:{{r1}}",
                f"{prefix}:run:{{r1}}:records",
                f"{prefix}:run:{{r1}}:blobs",
            }
            assert await client.type(f"{prefix}:run:{{r1}}:records") == b"stream"
            assert await client.type(f"{prefix}:runs") == b"zset"
            assert f"{prefix}:blob:{blob_digest(blob)}" in keys
            assert await store.purge(older_than=0) == 1
            left = {k.decode() async for k in client.scan_iter(match=f"{prefix}:*")}
            assert not any(":run:" in k and ":batch:" not in k for k in left)
            assert not any(":blob:" in k for k in left)
        finally:
            await client.aclose()


async def test_a_foreign_record_is_refused_as_corrupt(redis_server: RedisServer) -> None:
    prefix = unique_prefix()
    async with store_of(redis_server, prefix=prefix) as store:
        await store.begin_run(run_info("r"), [finished("a")])
        client = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
        try:
            await client.xadd(f"{prefix}:run:{{r}}:records", {"k": "from-the-future"}, id="2-0")
            with pytest.raises(CheckpointError, match="unknown to this aioflow"):
                await store.read("r")
            await client.xadd(f"{prefix}:run:{{r}}:records", {"x": "y"}, id="4-0")
            with pytest.raises(CheckpointError, match="corrupt"):
                await store.read("r", after=2)
        finally:
            await client.aclose()


# --- whole workflows --------------------------------------------------------------------


async def test_a_workflow_journals_in_redis_and_a_failed_run_resumes(
    redis_server: RedisServer,
) -> None:
    calls: list[str] = []
    fail = {"on": True}

    @task
    async def ok() -> int:
        calls.append("ok")
        return 2

    @task
    async def fragile(ok: int) -> int:
        calls.append("fragile")
        if fail["on"]:
            raise ConnectionError("down")
        return ok * 21

    with workflow("fragile") as wf:
        ok >> fragile
    url = f"{redis_server.url}?prefix={unique_prefix()}"
    with pytest.raises(aioflow.WorkflowFailedError) as caught:
        await aioflow.run(wf, checkpoint=url)
    run_id = caught.value.run_id
    async with open_run_store(url) as store:
        info = await store.get_run(run_id)
        assert (info.status, info.workflow, info.tasks_succeeded) == ("failed", "fragile", 1)
        assert info.last_seq == len(await store.read(run_id)) > 2
    fail["on"] = False
    result = await aioflow.resume(url, wf, run_id=run_id)
    assert result["fragile"] == 42
    assert calls == ["ok", "fragile", "fragile"]
    async with open_run_store(url) as store:
        info = await store.get_run(run_id)
        assert (info.status, info.tasks_succeeded) == ("succeeded", 2)


async def test_a_small_workflow_is_journaled(redis_server: RedisServer) -> None:
    @task
    async def extract() -> list[int]:
        return [1, 2, 3]

    @task
    async def double(extract: list[int]) -> list[int]:
        return [x * 2 for x in extract]

    with workflow("etl") as wf:
        extract >> double
    url = f"redis://127.0.0.1:{redis_server.port}/0?prefix={unique_prefix()}"
    result = await aioflow.run(wf, checkpoint=url)
    assert result["double"] == [2, 4, 6]
    async with open_run_store(url) as store:
        (info,) = await store.list_runs()
        assert (info.status, info.tasks_total, info.tasks_succeeded) == ("succeeded", 2, 2)
        kinds = [r.kind for r in await store.read(info.run_id)]
        assert kinds[0] is RecordKind.RUN_STARTED and RecordKind.TASK_FINISHED in kinds


def test_the_redis_store_is_imported_on_first_use() -> None:
    code = (
        "import sys, aioflow.stores as s; s.open_run_store('memory://'); "
        "print('redis' in sys.modules, 'aioflow.stores.redis' in sys.modules); "
        "s.open_run_store('redis://127.0.0.1:1/0'); print('aioflow.stores.redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


# --- under fire (slow) --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_connections_killed_repeatedly_during_concurrent_appends(
    redis_server: RedisServer,
) -> None:
    """Every client connection is killed every few milliseconds while four stores append
    to one run: each batch lands whole and at most once; a batch whose call succeeded
    lands exactly once; the seqs stay consecutive."""
    prefix = unique_prefix()
    stores = [store_of(redis_server, prefix=prefix, retries=5) for _ in range(4)]
    confirmed: set[str] = set()
    uncertain: set[str] = set()
    size = 4
    admin = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        await stores[0].begin_run(run_info("r"))

        async def write(store: RedisStore, name: str) -> None:
            for b in range(60):
                tag = f"{name}/{b}"
                try:
                    await store.append("r", [finished(f"{tag}/{i}") for i in range(size)])
                except CheckpointError:
                    uncertain.add(tag)  # the outcome is unknown: landed whole, or not at all
                else:
                    confirmed.add(tag)

        async def kill(stop: anyio.Event) -> None:
            while not stop.is_set():
                await admin.client_kill_filter(_type="normal", skipme=True)
                await anyio.sleep(0.005)

        stop = anyio.Event()
        async with anyio.create_task_group() as killers:
            killers.start_soon(kill, stop)
            async with anyio.create_task_group() as tg:
                for n, store in enumerate(stores):
                    for w in range(3):
                        tg.start_soon(write, store, f"s{n}w{w}")
            stop.set()
        records = await stores[1].read("r")
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        names = [r.task_name or "" for r in records]
        assert len(names) % size == 0
        landed: list[str] = []
        for start in range(0, len(names), size):
            chunk = names[start : start + size]
            tag = chunk[0].rpartition("/")[0]
            assert chunk == [f"{tag}/{i}" for i in range(size)]  # whole, in order
            landed.append(tag)
        assert len(landed) == len(set(landed))  # never twice
        assert confirmed <= set(landed)  # nothing confirmed is lost
        assert set(landed) <= confirmed | uncertain
        assert (await stores[2].get_run("r")).tasks_succeeded == len(records)
    finally:
        await admin.aclose()
        for store in stores:
            await store.aclose()


def test_without_redis_server_the_helper_fails_with_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server there
    with pytest.raises(RedisServerMissing, match="apt-get install -y redis-server"):
        RedisServer(tmp_path / "redis").start()
