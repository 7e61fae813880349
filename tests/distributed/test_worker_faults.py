"""Workers that die: kill -9 with tasks in flight, every client connection killed,
SIGTERM with long tasks (short grace: handed back; long grace: finished in place).

Each test checks that every task completes exactly once in the run's results and
no result is lost.
"""

from __future__ import annotations

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
from .helpers import run_channel, wait_for

StartWorkers = Callable[..., WorkerProcesses]


def assert_complete(result: aioflow.RunResult, count: int, factor: int) -> None:
    """Every one of the ``count`` tasks succeeded once, with its own value."""
    assert result.status is RunStatus.SUCCEEDED
    names = [f"t{i:03d}" for i in range(count)]
    assert sorted(set(result.results) - {"all"}) == names  # "all": the group's own
    assert {name: result[name] for name in names} == {f"t{i:03d}": i * factor for i in range(count)}
    for name in names:
        record = result.tasks[name]
        assert (record.status, record.executions) == ("succeeded", 1), record


async def test_kill_9_of_a_worker_with_tasks_in_flight(
    url: str, prefix: str, start_workers: StartWorkers, tmp_path: Path
) -> None:
    concurrency = 4
    workers = start_workers(url, count=2, concurrency=concurrency)
    victim, survivor = workers.pids
    victim_id = workers.worker_id(0)
    count = 60
    # On the victim, the first `concurrency` executions run as anywhere else (done, and
    # stored), the next `concurrency` are held: they are in flight when it is killed,
    # however slow this machine is (a heartbeat's `running` counts entries taken, not
    # executions started: the kill could come between two batches, nothing running).
    wf = tasks.fan_out(
        "killed", tasks.sleeper, count, seconds=0.3, hold_pid=victim, hold_after=concurrency
    )
    run_id = secrets.token_hex(8)
    started = time.monotonic()
    with anyio.fail_after(40):
        async with (
            aioflow.start(wf, backend=url, run_id=run_id) as run,
            run_channel(url, run_id) as channel,
        ):

            async def victim_full() -> bool:
                return len(await channel.get("held", [])) == concurrency

            await wait_for(victim_full, within=15)
            workers.kill(0)  # SIGKILL: its entries stay pending until reclaimed
            killed_at = time.monotonic()
            result = await run.result()
    reclaimed_within = time.monotonic() - killed_at
    elapsed = time.monotonic() - started
    assert_complete(result, count, 10)
    async with run_channel(url, run_id) as channel:
        executions = {f"t{i:03d}": await channel.get(f"exec:t{i:03d}", 0) for i in range(count)}
        ran, done = await channel.get("ran"), await channel.get("done")
        held, in_flight = set(await channel.get("held")), await channel.get("running")
    runs = {name: [pid for task, pid in ran if task == name] for name in executions}
    assert {name: len(pids) for name, pids in runs.items()} == executions
    on_victim = {name for name, pid in ran if pid == victim}
    done_on_victim = {name for name, pid in done if pid == victim}
    # The victim ran 2 x concurrency: the first finished, the held ones never did
    # (killed: their `running` count stays up).
    assert (len(done_on_victim), len(held), in_flight) == (concurrency, concurrency, concurrency)
    assert on_victim == done_on_victim | held
    # Every task ran; those in flight on the dead worker ran again, on the survivor, once.
    again = {name for name, n in executions.items() if n > 1}
    assert all(1 <= n <= 2 for n in executions.values()), executions
    assert held <= again, (held, again, worker_logs(tmp_path))
    assert all(runs[name] == [victim, survivor] for name in again), runs
    # Besides those, only a task the victim had finished may run again: its outcome was
    # stored, its entry not yet acknowledged when it was killed (the first outcome wins).
    assert again - held <= done_on_victim, (again, held, done_on_victim)
    # Reclaimed after the visibility timeout (2 s), within seconds, not minutes.
    assert reclaimed_within < 15
    # Its entries claimed, the dead worker's name left the consumer group.
    client = aioredis.Redis.from_url(url.split("?")[0])
    try:
        consumers = await client.xinfo_consumers(f"{prefix}:queue:{{default}}:p0", "aioflow")
    finally:
        await client.aclose()
    names = {c["name"].decode() for c in consumers}
    assert victim_id not in names and workers.worker_id(1) in names, names
    print(f"kill -9: {len(held)} in flight, {len(again)} tasks re-run, run took {elapsed:.2f} s")


async def _client_killer(redis_url: str, kinds: list[str], stop: anyio.Event) -> int:
    """``CLIENT KILL TYPE <kind>`` every ~100 ms (all of them but this client)."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    kills = 0
    try:
        my_id = await client.client_id()
        while not stop.is_set():
            for kind in kinds:
                # SKIPME yes: this client is never killed (it is "normal" too).
                await client.execute_command("CLIENT", "KILL", "TYPE", kind, "SKIPME", "yes")
                kills += 1
            with anyio.move_on_after(0.1):
                await stop.wait()
        assert my_id
    finally:
        await client.aclose()
    return kills


async def _queue_state(redis_url: str, prefix: str, run_id: str) -> dict[str, object]:
    """The stream, its group's pending entries and the run's stored outcomes."""
    client = aioredis.Redis.from_url(redis_url)
    stream = f"{prefix}:queue:{{default}}:p0"
    reads = {
        "stream_length": lambda: client.xlen(stream),
        "pending": lambda: client.xpending(stream, "aioflow"),
        "consumers": lambda: client.xinfo_consumers(stream, "aioflow"),
        "outcomes_stored": lambda: client.hlen(f"{prefix}:run:{{{run_id}}}:out"),
        "queue_len_counter": lambda: client.get(f"{prefix}:queue:{{default}}:len"),
    }
    found: dict[str, object] = {}
    try:
        for name, read in reads.items():
            try:
                found[name] = await read()
            except Exception as exc:  # what could be read is still worth saying
                found[name] = repr(exc)
    finally:
        await client.aclose()
    return found


@pytest.mark.parametrize("kinds", [["normal"], ["pubsub"], ["normal", "pubsub"]])
async def test_every_client_connection_killed_repeatedly_during_a_run(
    url: str,
    redis_url: str,
    prefix: str,
    start_workers: StartWorkers,
    tmp_path: Path,
    kinds: list[str],
) -> None:
    start_workers(url, count=2, concurrency=8)
    count = 400  # about 1.3 s of work for 2 x 8 slots: a dozen kills or more
    wf = tasks.fan_out("client-kill", tasks.slow, count, seconds=0.05)
    stop = anyio.Event()
    kills = 0
    started = time.monotonic()

    async def killer() -> None:
        nonlocal kills
        kills = await _client_killer(redis_url, kinds, stop)

    run_id = secrets.token_hex(8)
    try:
        with anyio.fail_after(45):
            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                try:
                    result = await aioflow.run(wf, backend=url, max_concurrency=64, run_id=run_id)
                finally:
                    stop.set()
    except TimeoutError:  # say where the tasks are, for the next time it happens
        state = await _queue_state(redis_url, prefix, run_id)
        raise AssertionError(f"the run did not end: {state}\n{worker_logs(tmp_path)}") from None
    elapsed = time.monotonic() - started
    assert_complete(result, count, 1)
    assert kills >= 3, (kills, elapsed)
    print(f"CLIENT KILL TYPE {'+'.join(kinds)}: {kills} kills, run took {elapsed:.2f} s")
