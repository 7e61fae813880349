"""start(), the run handle: events, result, cancellation; cancellation from outside."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import anyio
import pytest

import aioflow
from aioflow import (
    RunStateError,
    TaskContext,
    WorkflowCancelledError,
    WorkflowFailedError,
    events,
    parallel,
    task,
    workflow,
)


@task
async def one() -> int:
    return 1


@task
async def two(one: int) -> int:
    return one + 1


def simple() -> aioflow.Workflow:
    with workflow("simple") as wf:
        one >> two
    return wf


async def test_events_are_typed_ordered_and_end_with_the_run() -> None:
    async with aioflow.start(simple(), run_id="r1") as handle:
        assert handle.run_id == "r1"
        seen = [event async for event in handle.events()]
        result = await handle.result()
    assert result["two"] == 2
    assert handle.status == "succeeded" and handle.done
    assert isinstance(seen[0], events.RunStarted) and seen[0].total_tasks == 2
    assert isinstance(seen[-1], events.RunFinished) and seen[-1].status == "succeeded"
    assert [(type(e).__name__, e.task_name) for e in seen[1:-1]] == [
        ("TaskStarted", "one"),
        ("TaskSucceeded", "one"),
        ("TaskStarted", "two"),
        ("TaskSucceeded", "two"),
    ]
    for event in seen:
        assert event.run_id == "r1"
        assert isinstance(event.time, datetime) and event.time.tzinfo is UTC
    assert seen[0].task_name is None and seen[-1].task_name is None


async def test_late_and_several_consumers_see_every_event() -> None:
    async with aioflow.start(simple()) as handle:
        await handle.result()
        first = [type(e) async for e in handle.events()]
        second = [type(e) async for e in handle.events()]
    assert first == second
    assert first[0] is events.RunStarted and first[-1] is events.RunFinished


async def test_cancel_returns_once_nothing_runs() -> None:
    started = anyio.Event()
    thread_started = anyio.Event()
    cleaned: list[str] = []
    thread_stopped = threading.Event()

    @task
    async def waits() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.append("async")

    @task
    def spins(ctx: TaskContext) -> None:
        anyio.from_thread.run_sync(thread_started.set)
        try:
            while True:
                ctx.check_cancelled()
        finally:
            thread_stopped.set()

    with workflow("w") as wf:
        parallel(waits, spins)
    async with aioflow.start(wf) as handle:
        await started.wait()
        await thread_started.wait()
        await handle.cancel("test over")
        assert cleaned == ["async"]
        assert thread_stopped.is_set()
        assert handle.status == "cancelled"
        with pytest.raises(WorkflowCancelledError) as info:
            await handle.result()
    assert info.value.reason == "test over"
    assert info.value.result is not None
    assert info.value.result.tasks["waits"].status == "cancelled"


async def test_cancelling_the_caller_cancels_the_run() -> None:
    started = anyio.Event()
    cleaned = anyio.Event()

    @task
    async def waits() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    with workflow("w") as wf:
        wf.add(waits)
    async with anyio.create_task_group() as tg:

        async def runner() -> None:
            await aioflow.run(wf)

        tg.start_soon(runner)
        await started.wait()
        tg.cancel_scope.cancel()
    assert cleaned.is_set()


async def test_leaving_start_with_an_exception_cancels_the_run() -> None:
    cleaned = anyio.Event()
    started = anyio.Event()

    @task
    async def waits() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    with workflow("w") as wf:
        wf.add(waits)
    with pytest.raises(KeyError):
        async with aioflow.start(wf):
            await started.wait()
            raise KeyError("user code failed")
    assert cleaned.is_set()


async def test_leaving_start_normally_waits_and_never_hides_a_failure() -> None:
    @task
    async def boom() -> None:
        raise ValueError("nobody looked")

    with workflow("w") as wf:
        wf.add(boom)
    with pytest.raises(WorkflowFailedError):
        async with aioflow.start(wf):
            pass


async def test_cancel_a_single_task() -> None:
    started = anyio.Event()

    @task
    async def waits() -> None:
        started.set()
        await anyio.sleep_forever()

    @task
    async def fine() -> int:
        return 1

    with workflow("w") as wf:
        parallel(waits, fine, name="g", policy="best_effort")
    async with aioflow.start(wf) as handle:
        await started.wait()
        assert handle.cancel_task("waits", "not needed")
        assert not handle.cancel_task("fine")
        result = await handle.result()
    assert result["g"] == {"fine": 1}
    assert result.tasks["waits"].status == "cancelled"
    with pytest.raises(aioflow.UnknownTaskError):
        handle.cancel_task("nope")


async def test_definition_errors_surface_from_start() -> None:
    @task
    async def needs(x: int) -> int:
        return x

    with workflow("w") as wf:
        wf.add(needs)
    with pytest.raises(aioflow.WorkflowDefinitionError):
        async with aioflow.start(wf):
            pass


async def test_result_error_when_run_has_not_finished_is_awaited() -> None:
    gate = anyio.Event()

    @task
    async def waits() -> str:
        await gate.wait()
        return "done"

    with workflow("w") as wf:
        wf.add(waits)
    async with aioflow.start(wf) as handle:
        assert handle.status == "running" or handle.status == "pending"
        gate.set()
        assert (await handle.result())["waits"] == "done"


def test_handle_and_context_have_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        aioflow.RunHandle()
    with pytest.raises(TypeError, match="no public constructor"):
        TaskContext()
    with pytest.raises(TypeError, match="no public constructor"):
        aioflow.RunResult()
    assert issubclass(RunStateError, aioflow.AioflowError)


async def test_cancel_before_the_run_started_runs_nothing() -> None:
    ran: list[str] = []

    @task
    async def never() -> None:
        ran.append("never")

    with workflow("w") as wf:
        wf.add(never)
    async with aioflow.start(wf) as handle:
        await handle.cancel("changed my mind")
        with pytest.raises(WorkflowCancelledError, match="changed my mind"):
            await handle.result()
    assert ran == []
    assert handle.status == "cancelled"


async def test_cancel_twice_and_after_the_end_is_harmless() -> None:
    async with aioflow.start(simple()) as handle:
        result = await handle.result()
        await handle.cancel()
        await handle.cancel()
    assert result.status == "succeeded"
    assert handle.status == "succeeded"


async def test_tasks_still_queued_never_start_after_cancel() -> None:
    started: list[str] = []
    first_running = anyio.Event()

    @task
    async def work(ctx: TaskContext) -> None:
        started.append(ctx.task_name)
        if ctx.task_name == "w0":
            first_running.set()
            await anyio.sleep_forever()

    with workflow("w") as wf:
        wf.add(*(work.bind(name=f"w{i}") for i in range(50)))
    async with aioflow.start(wf, max_concurrency=1) as handle:
        await first_running.wait()
        await handle.cancel()
    assert started == ["w0"]


async def test_statistics_follow_the_run() -> None:
    gate = anyio.Event()
    started = anyio.Event()

    @task
    async def first() -> int:
        return 1

    @task
    async def blocked(first: int) -> int:
        started.set()
        await gate.wait()
        return first

    @task
    async def last(blocked: int) -> int:
        return blocked

    with workflow("w") as wf:
        first >> blocked >> last
    async with aioflow.start(wf) as handle:
        await started.wait()
        mid = handle.statistics()
        assert (mid.total, mid.succeeded, mid.running, mid.waiting) == (3, 1, 1, 1)
        assert mid.finished == 1 and mid.executions == 2 and mid.elapsed >= 0
        gate.set()
        await handle.result()
        end = handle.statistics()
    assert (end.succeeded, end.running, end.waiting, end.executions) == (3, 0, 0, 3)
