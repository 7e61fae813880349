"""The coordinator's pub/sub connection lost and made again: an outcome announced
before the server has the channel subscribed again is found in Redis, not lost.

A TCP proxy between the coordinator and Redis severs the coordinator's connections
and holds its ``SUBSCRIBE`` back, so the gap between a new connection and its
subscription lasts as long as the test wants: the task finishes in that gap, and its
outcome is announced to no one. Without waiting for the subscription before it
reconciled, the coordinator looked at the stored outcomes too early and waited for
an announcement that never came (the run hung: CI saw it under ``CLIENT KILL``).
The test gives such a coordinator a second to look (its ``HMGET`` seen passing the
proxy) before the task ends, so it fails every time without the fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import redis.asyncio as aioredis
from redis_server import RedisServer
from tcp_proxy import TcpProxy
from worker_processes import WorkerProcesses

import aioflow

from . import tasks
from .helpers import wait_for


async def test_an_outcome_announced_while_the_coordinator_resubscribes_is_not_lost(
    url: str,
    prefix: str,
    redis_server: RedisServer,
    start_workers: Callable[..., WorkerProcesses],
    tmp_path: Path,
) -> None:
    start_workers(url, count=1, concurrency=2)  # straight to Redis, not through the proxy
    state = tmp_path / "gate"
    state.mkdir()
    os.mkfifo(state / "go")
    with aioflow.workflow("gated") as wf:
        wf.add(tasks.gated.bind(name="g", state=str(state)))
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with anyio.create_task_group() as tg:
            proxy = TcpProxy(redis_server.port)
            await tg.start(proxy.serve)
            proxied = url.replace(f":{redis_server.port}/", f":{proxy.port}/")
            with anyio.fail_after(30):
                async with aioflow.start(wf, backend=proxied) as run:

                    async def started() -> bool:
                        return (state / "started").exists()

                    await wait_for(started, within=15)
                    proxy.hold(b"SUBSCRIBE")
                    looked = proxy.watch(b"HMGET")
                    proxy.sever()
                    await proxy.held.wait()  # connected again, not subscribed yet
                    # A coordinator that looks at the stored outcomes now (too early)
                    # does so at once: give it a second to, before the task ends.
                    with anyio.move_on_after(1):
                        await looked.wait()
                    # Opening the FIFO waits for the task, reading it: no sleep.
                    await anyio.to_thread.run_sync((state / "go").write_text, "through")
                    outcomes = f"{prefix}:run:{{{run.run_id}}}:out"

                    async def stored() -> bool:
                        return bool(await client.hlen(outcomes))

                    await wait_for(stored, within=15)  # stored, and announced to no one
                    proxy.release()
                    result = await run.result()
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
    assert result["g"] == "through"
    assert proxy.connections > 1  # the coordinator did connect again


async def test_an_announcement_lost_without_a_reconnect_is_found_in_redis(
    url: str, redis_server: RedisServer, start_workers: Callable[..., WorkerProcesses]
) -> None:
    """Pub/sub delivers at most once: here the proxy throws the outcome's message away
    while the coordinator's connection stays up (no reconnect, so no reconciling for
    that). A run that hears nothing for a while reads the stored outcomes anyway."""
    start_workers(url, count=1, concurrency=2)
    with aioflow.workflow("lost") as wf:
        wf.add(tasks.quick.bind(name="q", index=3))
    async with anyio.create_task_group() as tg:
        proxy = TcpProxy(redis_server.port)
        await tg.start(proxy.serve)
        proxied = url.replace(f":{redis_server.port}/", f":{proxy.port}/")
        proxy.drop(b"$7\r\nmessage\r\n")  # every pub/sub message to the coordinator
        with anyio.fail_after(30):
            result = await aioflow.run(wf, backend=proxied)
        tg.cancel_scope.cancel()
    assert result["q"] == 6
    assert proxy.dropped >= 1  # its outcome was announced, and not heard
