"""SIGTERM to a worker: a short grace hands its running tasks back at once (they
finish on the other worker, long before the visibility timeout); a long grace lets
them finish in place. ``aioflow workers`` lists live workers, not stopped ones.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis
from worker_processes import WorkerProcesses

import aioflow
from aioflow import RunStatus

from . import tasks
from .conftest import worker_logs
from .helpers import cli, opened, run_channel, wait_for

StartWorkers = Callable[..., WorkerProcesses]


def long_url(redis_url: str, prefix: str) -> str:
    # A visibility timeout far longer than the test: only a hand-back can move work.
    return f"{redis_url}?prefix={prefix}&visibility_timeout=60"


async def _wait_started(url: str, run_id: str, count: int) -> list[list[object]]:
    async with run_channel(url, run_id) as channel:

        async def started() -> list[list[object]]:
            starts = await channel.get("starts", [])
            return starts if len(starts) >= count else []

        found: list[list[object]] = await wait_for(started, within=15)
        return found


async def test_sigterm_with_short_grace_hands_running_tasks_back_at_once(
    redis_url: str, prefix: str, start_workers: StartWorkers, tmp_path: Path
) -> None:
    url = long_url(redis_url, prefix)
    workers = start_workers(url, count=1, concurrency=4, extra=["--grace", "0.5"])
    count = 4
    wf = tasks.fan_out("handed-back", tasks.long_sleeper, count, seconds=3.0)
    run_id = secrets.token_hex(8)
    with anyio.fail_after(30):
        async with aioflow.start(wf, backend=url, run_id=run_id) as run:
            starts = await _wait_started(url, run_id, count)
            first = workers.pids[0]
            assert {pid for _, pid, _ in starts} == {first}
            workers.start_one()  # the worker that takes the work over
            await anyio.to_thread.run_sync(workers.wait_ready)
            second = workers.pids[1]
            asked = time.monotonic()
            code = await anyio.to_thread.run_sync(workers.terminate, 0)
            stopped_in = time.monotonic() - asked
            result = await run.result()
            ended_in = time.monotonic() - asked
    assert code == 0, worker_logs(tmp_path)
    # Prompt: grace 0.5 s, then cancelled and handed back (the tasks had 3 s to go).
    assert stopped_in < 2.5, (stopped_in, worker_logs(tmp_path))
    # Finished elsewhere: started over on the second worker at once (no 60 s wait).
    assert ended_in < 3.0 + 6.0, ended_in
    assert result.status is RunStatus.SUCCEEDED
    assert {f"t{i:03d}": result[f"t{i:03d}"] for i in range(count)} == {
        f"t{i:03d}": f"slept {i}" for i in range(count)
    }
    for i in range(count):
        assert result.tasks[f"t{i:03d}"].executions == 1
    async with run_channel(url, run_id) as channel:
        finishes = await channel.get("finishes", [])
        executions = [await channel.get(f"exec:t{i:03d}") for i in range(count)]
    assert sorted(name for name, _, _ in finishes) == [f"t{i:03d}" for i in range(count)]
    assert {pid for _, pid, _ in finishes} == {second}
    assert executions == [2] * count  # cut short on the first, run whole on the second
    print(f"SIGTERM grace 0.5: worker exited in {stopped_in:.2f} s, run ended {ended_in:.2f} s")


async def test_sigterm_with_long_grace_lets_running_tasks_finish_in_place(
    redis_url: str,
    prefix: str,
    start_workers: StartWorkers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = long_url(redis_url, prefix)
    workers = start_workers(url, count=1, concurrency=4, extra=["--grace", "30"])
    count = 3
    wf = tasks.fan_out("finished-in-place", tasks.long_sleeper, count, seconds=1.5)
    run_id = secrets.token_hex(8)
    with anyio.fail_after(30):
        async with aioflow.start(wf, backend=url, run_id=run_id) as run:
            await _wait_started(url, run_id, count)
            workers.start_one()
            await anyio.to_thread.run_sync(workers.wait_ready)
            first, second = workers.pids

            # `aioflow workers` lists both, with their queues and what they run.
            code, out, err = await cli(capsys, "workers", "--backend", url, "--json")
            assert code == 0, err
            listed = {w["worker_id"]: w for w in json.loads(out)}
            assert set(listed) == {workers.worker_id(0), workers.worker_id(1)}
            assert {w["pid"] for w in listed.values()} == {first, second}
            assert all(w["queues"] == ["default"] for w in listed.values())
            assert all(not w["stopping"] for w in listed.values())

            asked = time.monotonic()
            code = await anyio.to_thread.run_sync(workers.terminate, 0)
            stopped_in = time.monotonic() - asked
            result = await run.result()
    assert code == 0, worker_logs(tmp_path)
    assert stopped_in < 10, stopped_in  # it waited for its tasks, not the whole grace
    assert result.status is RunStatus.SUCCEEDED
    async with run_channel(url, run_id) as channel:
        finishes = await channel.get("finishes", [])
        executions = [await channel.get(f"exec:t{i:03d}") for i in range(count)]
    assert executions == [1] * count  # finished where they started, once
    assert {pid for _, pid, _ in finishes} == {first}

    # After SIGTERM the stopped worker is gone from the list at once; then the other.
    code, out, err = await cli(capsys, "workers", "--backend", url, "--json")
    assert [w["worker_id"] for w in json.loads(out)] == [workers.worker_id(1)]
    assert await anyio.to_thread.run_sync(workers.terminate, 1) == 0
    code, out, err = await cli(capsys, "workers", "--backend", url, "--json")
    assert (code, json.loads(out)) == (0, [])
    async with opened(url) as backend:
        assert await backend.workers() == []
    # Stopped with nothing pending, both left the consumer group too (no name of a
    # gone worker piles up there as a fleet replaces its workers).
    client = aioredis.Redis.from_url(redis_url)
    try:
        consumers = await client.xinfo_consumers(f"{prefix}:queue:{{default}}:p0", "aioflow")
    finally:
        await client.aclose()
    assert consumers == []
