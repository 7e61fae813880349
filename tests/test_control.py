"""Retries, timeouts and dynamic control from the context."""

from __future__ import annotations

import anyio
import pytest

import aioflow
from aioflow import (
    CycleLimitExceededError,
    MaxStepsExceededError,
    RetryPolicy,
    TaskContext,
    TaskTimeoutError,
    UnknownTaskError,
    WorkflowCancelledError,
    WorkflowFailedError,
    events,
    parallel,
    task,
    workflow,
)

NO_WAIT = RetryPolicy(retries=3, backoff=0.0, jitter=0.0)


async def test_retries_until_success_with_attempt_numbers() -> None:
    attempts: list[int] = []

    @task(retries=NO_WAIT)
    async def flaky(ctx: TaskContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    with workflow("w") as wf:
        wf.add(flaky)
    result = await aioflow.run(wf)
    assert result["flaky"] == "ok"
    assert attempts == [1, 2, 3]
    assert result.tasks["flaky"].attempts == 3


async def test_retries_exhausted_fail_with_the_last_error() -> None:
    @task(retries=RetryPolicy(retries=2, backoff=0.0))
    async def always(ctx: TaskContext) -> None:
        raise ValueError(f"attempt {ctx.attempt}")

    with workflow("w") as wf:
        wf.add(always)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert str(info.value.__cause__) == "attempt 3"
    assert info.value.attempt == 3


async def test_retry_on_filters_exceptions() -> None:
    attempts: list[int] = []

    @task(retries=RetryPolicy(retries=5, backoff=0.0, retry_on=(ConnectionError,)))
    async def picky(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        raise KeyError("not retryable")

    with workflow("w") as wf:
        wf.add(picky)
    with pytest.raises(WorkflowFailedError):
        await aioflow.run(wf)
    assert attempts == [1]


async def test_backoff_does_not_block_other_tasks() -> None:
    first_failed = anyio.Event()
    other_done = anyio.Event()

    @task(retries=RetryPolicy(retries=1, backoff=0.2, jitter=0.0))
    async def slow_retry(ctx: TaskContext) -> bool:
        if ctx.attempt == 1:
            first_failed.set()
            raise ConnectionError("later")
        return other_done.is_set()

    @task
    async def other() -> None:
        await first_failed.wait()
        other_done.set()

    with workflow("w") as wf:
        parallel(slow_retry, other)
    assert (await aioflow.run(wf))["slow_retry"] is True


async def test_timeout_cancels_the_attempt_and_is_retried() -> None:
    attempts: list[int] = []

    @task(timeout=0.05, retries=RetryPolicy(retries=1, backoff=0.0))
    async def stuck(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        await anyio.sleep_forever()

    with workflow("w") as wf:
        wf.add(stuck)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    cause = info.value.__cause__
    assert isinstance(cause, TaskTimeoutError)
    assert cause.task_name == "stuck" and cause.timeout == 0.05 and cause.attempt == 2
    assert cause.code == "aioflow.task_timeout"
    assert attempts == [1, 2]


async def test_sync_task_timeout_after_cooperative_check() -> None:
    started = anyio.Event()

    @task(timeout=0.05)
    def spin(ctx: TaskContext) -> None:
        anyio.from_thread.run_sync(started.set)
        while True:
            ctx.check_cancelled()

    with workflow("w") as wf:
        wf.add(spin)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    assert started.is_set()


async def test_next_iteration_loops_and_successors_see_the_last_result() -> None:
    seen: list[int] = []

    @task(max_cycles=10)
    async def converge(ctx: TaskContext, data: int = 0) -> int:
        seen.append(data)
        if data < 4:
            ctx.next_iteration(data + 1)
        return data * 10

    @task
    async def after(converge: int) -> int:
        return converge

    with workflow("w") as wf:
        converge >> after
    result = await aioflow.run(wf)
    assert seen == [0, 1, 2, 3, 4]
    assert result["after"] == 40
    assert result.tasks["converge"].executions == 5


async def test_cycle_limit() -> None:
    @task(max_cycles=3)
    async def forever(ctx: TaskContext, data: int = 0) -> None:
        ctx.next_iteration(data + 1)

    with workflow("w") as wf:
        wf.add(forever)
    with pytest.raises(CycleLimitExceededError) as info:
        await aioflow.run(wf)
    err = info.value
    assert isinstance(err, WorkflowFailedError)
    assert isinstance(err.__cause__, CycleLimitExceededError)
    assert err.max_cycles == 3 and err.task_name == "forever"
    assert err.result is not None and err.result.tasks["forever"].executions == 3


async def test_max_steps_is_an_error_never_a_silent_stop() -> None:
    @task(max_cycles=1000)
    async def loop(ctx: TaskContext, data: int = 0) -> None:
        ctx.next_iteration(data + 1)

    with workflow("w") as wf:
        wf.add(loop)
    with pytest.raises(MaxStepsExceededError) as info:
        await aioflow.run(wf, max_steps=5)
    assert info.value.max_steps == 5
    assert info.value.result is not None
    assert info.value.result.tasks["loop"].executions == 5


async def test_next_task_adds_a_dynamic_task() -> None:
    @task
    async def producer(ctx: TaskContext) -> int:
        ctx.next_task(consumer)
        return 7

    @task
    async def consumer(producer: int) -> int:
        return producer * 2

    @task
    async def static_after(producer: int) -> int:
        return producer

    with workflow("w") as wf:
        producer >> static_after
    result = await aioflow.run(wf)
    assert result["consumer"] == 14
    assert result["static_after"] == 7
    assert result.tasks["consumer"].dynamic


async def test_next_task_goto_skips_static_successors() -> None:
    @task
    async def decide(ctx: TaskContext) -> str:
        ctx.next_task(alternative, goto=True)
        return "went elsewhere"

    @task
    async def normal() -> None:
        raise AssertionError("skipped by goto")

    @task
    async def alternative() -> str:
        return "alt"

    with workflow("w") as wf:
        decide >> normal
    result = await aioflow.run(wf)
    assert result["alternative"] == "alt"
    assert result.tasks["normal"].status == "skipped"
    assert result.output == "alt"


async def test_goto_an_existing_task_loops_through_the_graph() -> None:
    @task
    async def fetch(ctx: TaskContext) -> int:
        return await ctx.channel.incr("fetches")

    @task
    async def check(fetch: int, ctx: TaskContext) -> int:
        if fetch < 3:
            ctx.next_task("fetch", goto=True)
        return fetch

    @task
    async def report(check: int) -> str:
        return f"done after {check}"

    with workflow("w") as wf:
        fetch >> check >> report
    result = await aioflow.run(wf)
    assert result["report"] == "done after 3"
    assert result.tasks["fetch"].executions == 3
    assert result.tasks["check"].executions == 3
    assert result.tasks["report"].executions == 1


async def test_next_task_unknown_name_fails_loudly() -> None:
    @task
    async def jumper(ctx: TaskContext) -> None:
        ctx.next_task("nowhere")

    with workflow("w") as wf:
        wf.add(jumper)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, UnknownTaskError)
    assert "nowhere" in str(info.value.__cause__)


async def test_terminate_workflow_finishes_successfully_now() -> None:
    sibling_cancelled = anyio.Event()

    @task
    async def stopper(ctx: TaskContext) -> str:
        ctx.terminate_workflow("enough")
        return "stopped"

    @task
    async def sibling() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            sibling_cancelled.set()

    @task
    async def later(stopper: str) -> None:
        raise AssertionError("never runs")

    with workflow("w") as wf:
        stopper >> later
        wf.add(sibling)
    result = await aioflow.run(wf)
    assert result.status == "succeeded"
    assert result.reason == "enough"
    assert result["stopper"] == "stopped"
    assert result.tasks["later"].status == "skipped"
    assert result.tasks["sibling"].status == "cancelled"
    assert sibling_cancelled.is_set()


async def test_cancel_workflow_cancels_the_run() -> None:
    @task
    async def canceller(ctx: TaskContext) -> None:
        ctx.cancel_workflow("user said stop")

    @task
    async def later() -> None:
        raise AssertionError("never runs")

    with workflow("w") as wf:
        canceller >> later
    with pytest.raises(WorkflowCancelledError) as info:
        await aioflow.run(wf)
    err = info.value
    assert not isinstance(err, WorkflowFailedError)
    assert err.reason == "user said stop"
    assert err.task_name == "canceller" and "canceller" in str(err)
    assert err.code == "aioflow.workflow_cancelled"
    assert err.result is not None and err.result.status == "cancelled"
    assert err.result.tasks["later"].status == "skipped"


async def test_dynamic_task_is_announced() -> None:
    @task
    async def producer(ctx: TaskContext) -> None:
        ctx.next_task(extra)

    @task
    async def extra() -> None: ...

    with workflow("w") as wf:
        wf.add(producer)
    async with aioflow.start(wf) as handle:
        added = [e async for e in handle.events() if isinstance(e, events.TaskAdded)]
    assert [(e.task_name, e.by) for e in added] == [("extra", "producer")]


async def test_retry_events_are_emitted() -> None:
    @task(retries=NO_WAIT)
    async def flaky(ctx: TaskContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("once")

    with workflow("w") as wf:
        wf.add(flaky)
    async with aioflow.start(wf) as handle:
        kinds = [type(e) async for e in handle.events()]
    assert kinds == [
        events.RunStarted,
        events.TaskStarted,
        events.TaskRetrying,
        events.TaskStarted,
        events.TaskSucceeded,
        events.RunFinished,
    ]


async def test_next_iteration_on_a_task_without_a_data_parameter() -> None:
    @task(max_cycles=5)
    async def counter(ctx: TaskContext) -> int:
        count = await ctx.channel.incr("n")
        if count < 3:
            ctx.next_iteration()
        return count

    with workflow("w") as wf:
        wf.add(counter)
    assert (await aioflow.run(wf))["counter"] == 3


async def test_tasks_that_finished_as_the_run_ended_keep_their_results() -> None:
    @task
    async def stopper(ctx: TaskContext) -> str:
        ctx.terminate_workflow("done early")
        return "stopped"

    @task
    async def quick() -> str:
        return "also finished"

    with workflow("w") as wf:
        wf.add(stopper, quick)
    result = await aioflow.run(wf, max_concurrency=1)
    assert result.reason == "done early"
    assert result["quick"] == "also finished"
    assert result.tasks["quick"].status == "succeeded"


async def test_a_stray_cancellation_from_a_task_fails_the_run_instead_of_hanging() -> None:
    @task
    async def rogue() -> None:
        raise anyio.get_cancelled_exc_class()()

    @task
    async def fine() -> int:
        return 1

    with workflow("w") as wf:
        wf.add(rogue, fine)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, aioflow.TaskCancelledError)
    assert info.value.task_name == "rogue"
