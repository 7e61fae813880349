"""``aioflow.queue.depth`` and ``aioflow.tasks.dead_lettered`` of a Redis worker, read
back through the SDK's in-memory reader: a real redis-server, the worker and the
coordinator in this process (so a task can hold its slot until the test lets go)."""

from __future__ import annotations

import asyncio
import gc
import secrets
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer

import aioflow
from aioflow.observability import Metrics

from .conftest import Readings
from .inprocess_worker import backend_url, plant_garbage, prefix_of, serving, until

QUEUE = "gauges"
_gate: asyncio.Event | None = None  # set by the test: the held tasks may return


@aioflow.task(queue=QUEUE)
async def hold(index: int) -> int:
    assert _gate is not None
    await _gate.wait()
    return index


def held(count: int) -> aioflow.Workflow:
    with aioflow.workflow("obs-held") as wf:
        aioflow.parallel(*(hold.bind(name=f"h{i}", index=i) for i in range(count)))
    return wf


@pytest.fixture
def url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", secrets.token_hex(32))
    return backend_url(redis_server.url)


def gauge(readings: Readings, name: str, **attributes: Any) -> float | None:
    """The value of a gauge's point with ``attributes`` (None: no such point)."""
    for point in readings.points().get(name, []):
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            return float(point.value)
    return None


async def test_queue_depth_in_flight_and_dead_letters_of_a_worker(
    url: str, readings: Readings
) -> None:
    global _gate
    _gate = asyncio.Event()
    queue = {"aioflow.task.queue": QUEUE}
    depth = {**queue, "aioflow.task.priority": 0}
    async with serving(url, [Metrics(readings.provider)], [QUEUE]):
        async with anyio.create_task_group() as tg:
            finished = anyio.Event()

            async def coordinate() -> None:
                result = await aioflow.run(held(4), backend=url)
                assert sorted(result[f"h{i}"] for i in range(4)) == [0, 1, 2, 3]
                finished.set()

            tg.start_soon(coordinate)
            # One slot: one attempt runs, three entries wait in the stream.
            await until(
                lambda: (
                    gauge(readings, "aioflow.queue.depth", **depth) == 3
                    and readings.total("aioflow.tasks.in_flight", **queue) == 1
                )
            )
            assert readings.total("aioflow.tasks.started", **queue) == 1
            _gate.set()
            await finished.wait()
        assert readings.total("aioflow.tasks.succeeded", **queue) == 4
        await until(lambda: gauge(readings, "aioflow.queue.depth", **depth) == 0)
        assert readings.total("aioflow.tasks.dead_lettered") == 0

        await plant_garbage(url, QUEUE, 2)
        await until(lambda: readings.total("aioflow.tasks.dead_lettered", **queue) == 2)
        assert readings.total("aioflow.tasks.in_flight", **queue) == 0
        await until(lambda: gauge(readings, "aioflow.queue.depth", **depth) == 0)
    # The worker stopped: its depths are no longer reported.
    assert gauge(readings, "aioflow.queue.depth", **depth) is None


async def _xlen_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_xlen", {}).get("calls", 0))


async def test_without_an_active_metrics_the_worker_reads_no_depths(url: str) -> None:
    gc.collect()  # no Metrics of an earlier test is still about
    prefix = prefix_of(url)
    client = aioredis.Redis.from_url(url.partition("?")[0])
    try:
        before = await _xlen_calls(client)
        async with serving(url, [Metrics()], [QUEUE]) as worker:  # no SDK: inactive
            name = worker.worker_id.encode()

            async def expiry() -> float:  # each heartbeat moves it on (now + 0.6 s)
                return float(await client.zscore(f"{prefix}:workers", name) or 0.0)

            first = await until(expiry)

            async def three_beats_later() -> bool:
                return await expiry() >= first + 0.5

            await until(three_beats_later)
        assert await _xlen_calls(client) == before
    finally:
        await client.aclose()
