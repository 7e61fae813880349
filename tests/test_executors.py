"""The executor pool: grows only when work waits, honours limits and priorities."""

from __future__ import annotations

import anyio
import pytest

from aioflow._executors import ExecutorPool

cancelled: list[int] = []


async def test_waiting_work_grows_the_pool_until_all_run_concurrently() -> None:
    n = 200
    started = 0
    all_started = anyio.Event()
    release = anyio.Event()

    async def blocking(_: int, scope: anyio.CancelScope) -> None:
        nonlocal started
        started += 1
        if started == n:
            all_started.set()
        await release.wait()

    async with anyio.create_task_group() as tg:
        pool: ExecutorPool[int] = ExecutorPool(tg, blocking, cancelled.append, limit=None)
        for i in range(n):
            pool.submit(i)
        await all_started.wait()  # would hang if the pool did not grow to n executors
        assert pool.executors == n
        release.set()
        pool.close()


async def test_quick_work_needs_few_executors() -> None:
    done: list[int] = []

    async def quick(i: int, scope: anyio.CancelScope) -> None:
        done.append(i)

    async with anyio.create_task_group() as tg:
        pool: ExecutorPool[int] = ExecutorPool(tg, quick, cancelled.append, limit=1000)
        for i in range(5000):
            pool.submit(i)
        pool.close()
    assert sorted(done) == list(range(5000))
    assert pool.executors < 200


@pytest.mark.parametrize("limit", [1, 3])
async def test_limit_and_priority(limit: int) -> None:
    running = 0
    peak = 0
    order: list[int] = []

    async def work(priority: int, scope: anyio.CancelScope) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        order.append(priority)
        await anyio.lowlevel.checkpoint()
        running -= 1

    async with anyio.create_task_group() as tg:
        pool: ExecutorPool[int] = ExecutorPool(tg, work, cancelled.append, limit=limit)
        for priority in [1, 5, 3, 9, 7]:
            pool.submit(priority, priority)
        pool.close()
    assert peak <= limit
    if limit == 1:
        assert order == [9, 7, 5, 3, 1]


async def test_idle_executors_are_reused_and_end_on_close() -> None:
    seen: list[int] = []
    gate = anyio.Event()

    async def work(i: int, scope: anyio.CancelScope) -> None:
        seen.append(i)
        gate.set()

    async with anyio.create_task_group() as tg:
        pool: ExecutorPool[int] = ExecutorPool(tg, work, cancelled.append, limit=4)
        pool.submit(1)
        await gate.wait()
        await anyio.wait_all_tasks_blocked()  # the executor is idle, waiting for work
        gate = anyio.Event()
        pool.submit(2)
        await gate.wait()
        pool.close()
    assert seen == [1, 2]
    assert pool.executors == 1


async def test_cancelling_an_items_scope_cancels_that_item_only() -> None:
    scopes: dict[int, anyio.CancelScope] = {}
    started = {1: anyio.Event(), 2: anyio.Event()}
    finished: list[int] = []
    gone: list[int] = []

    async def work(i: int, scope: anyio.CancelScope) -> None:
        scopes[i] = scope
        started[i].set()
        if i == 1:
            await anyio.sleep_forever()
        await started[1].wait()
        finished.append(i)

    async with anyio.create_task_group() as tg:
        pool: ExecutorPool[int] = ExecutorPool(tg, work, gone.append, limit=4)
        pool.submit(1)
        pool.submit(2)
        await started[1].wait()
        await started[2].wait()
        scopes[1].cancel()
        await anyio.wait_all_tasks_blocked()
        pool.close()
    assert gone == [1]
    assert finished == [2]
