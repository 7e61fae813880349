"""Regression tests for the engine defects of issue 6, at the public API.

Each test failed on the engine before its fix; the item number of the issue is in
the test's name.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from typing import Any

import anyio
import pytest

import aioflow
from aioflow import (
    AtLeast,
    ConfigurationError,
    GroupFailedError,
    GroupOutcomes,
    GroupPolicy,
    TaskCancelledError,
    TaskContext,
    TaskTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    events,
    parallel,
    task,
    workflow,
)

# --- 1. a join re-run after a loop-back waits for the whole new round -------------------


async def test_item01_rerun_join_waits_for_every_predecessor_of_the_new_round() -> None:
    seen: list[tuple[int, int]] = []

    @task
    async def fetch(ctx: TaskContext) -> int:
        return await ctx.channel.incr("round")

    @task
    async def b(fetch: int) -> int:
        return fetch

    @task
    async def c(fetch: int) -> int:
        await anyio.sleep(0.05)  # slower than b
        return fetch

    @task
    async def d(b: int, c: int, ctx: TaskContext) -> tuple[int, int]:
        seen.append((b, c))
        if len(seen) == 1:
            ctx.next_task("fetch", goto=True)
        return (b, c)

    with workflow("w") as wf:
        fetch >> b >> d
        fetch >> c >> d
    result = await aioflow.run(wf)
    assert seen == [(1, 1), (2, 2)]
    assert result["d"] == (2, 2)
    assert result.tasks["d"].executions == 2


async def test_item01_rerun_join_still_waits_for_an_unfinished_outside_predecessor() -> None:
    order: list[str] = []
    gate = anyio.Event()

    @task
    async def fetch(ctx: TaskContext) -> int:
        return await ctx.channel.incr("round")

    @task
    async def loop(fetch: int, ctx: TaskContext) -> int:
        order.append(f"loop{fetch}")
        if fetch == 1:
            ctx.next_task("fetch", goto=True)
        else:
            gate.set()
        return fetch

    @task
    async def outside() -> str:
        await gate.wait()
        order.append("outside")
        return "o"

    @task
    async def join(loop: int, outside: str) -> str:
        order.append("join")
        return f"{loop}{outside}"

    with workflow("w") as wf:
        fetch >> loop >> join
        outside >> join
    result = await aioflow.run(wf)
    assert result["join"] == "2o"
    assert order == ["loop1", "loop2", "outside", "join"]


# --- 2. timeouts of sync tasks, and of async tasks that swallow the cancellation -------


async def test_item02_sync_task_timeout_ends_the_attempt_at_its_deadline() -> None:
    finished = threading.Event()

    @task(timeout=0.1)
    def slow() -> str:
        time.sleep(0.3)
        finished.set()
        return "late"

    with workflow("w") as wf:
        wf.add(slow)
    t0 = time.perf_counter()
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    elapsed = time.perf_counter() - t0
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    assert finished.is_set(), "the thread must be awaited before the run returns"
    assert elapsed >= 0.3
    result = info.value.result
    assert result is not None
    assert "slow" not in result.results  # the late value is discarded
    assert result.tasks["slow"].attempts == 1
    assert result.tasks["slow"].status == "failed"


async def test_item02_sync_task_timeout_is_retried() -> None:
    calls: list[int] = []

    @task(timeout=0.05, retries=aioflow.RetryPolicy(retries=1, backoff=0))
    def sometimes_slow() -> str:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.2)
            return "late"
        return "on time"

    with workflow("w") as wf:
        wf.add(sometimes_slow)
    result = await aioflow.run(wf)
    assert result["sometimes_slow"] == "on time"
    assert result.tasks["sometimes_slow"].attempts == 2


async def test_item02_async_task_swallowing_cancellation_past_its_deadline_times_out() -> None:
    @task(timeout=0.05)
    async def stubborn() -> str:
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class():
            pass  # swallowed: returns after its deadline anyway
        return "late"

    with workflow("w") as wf:
        wf.add(stubborn)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, TaskTimeoutError)


# --- 3. cancel_task on a sync task ----------------------------------------------------------


async def test_item03_cancel_task_on_a_sync_task_counts_as_cancelled_for_its_group() -> None:
    started = threading.Event()
    release = threading.Event()

    @task
    def blocking() -> str:
        started.set()
        release.wait(5)
        return "too late"

    @task
    async def fine() -> int:
        return 1

    with workflow("w") as wf:
        parallel(blocking, fine, name="g", policy="best_effort")
    async with aioflow.start(wf) as handle:
        await anyio.to_thread.run_sync(started.wait)
        assert handle.cancel_task("blocking", "not needed")
        release.set()
        result = await handle.result()
    assert result["g"] == {"fine": 1}
    assert result.tasks["blocking"].status == "cancelled"
    assert isinstance(result.tasks["blocking"].error, TaskCancelledError)
    assert "blocking" not in result.results


async def test_item03_a_sync_task_running_when_the_run_is_cancelled_is_recorded_cancelled() -> None:
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    @task
    def blocking() -> str:
        started.set()
        release.wait(5)
        finished.set()
        return "too late"

    with workflow("w") as wf:
        wf.add(blocking)
    async with aioflow.start(wf) as handle:
        await anyio.to_thread.run_sync(started.wait)
        async with anyio.create_task_group() as tg:
            tg.start_soon(handle.cancel)
            await anyio.sleep(0.05)
            assert not handle.done, "cancel() returns only once the thread has ended"
            release.set()
        assert finished.is_set()
        with pytest.raises(WorkflowCancelledError) as info:
            await handle.result()
    result = info.value.result
    assert result is not None
    assert result.tasks["blocking"].status == "cancelled"
    assert "blocking" not in result.results


# --- 4. an empty group is judged at once -----------------------------------------------------


async def test_item04_an_empty_group_is_judged_at_once_and_its_successors_run() -> None:
    @task
    async def a() -> int:
        return 1

    @task
    async def b(g: dict[str, Any]) -> str:
        return f"{len(g)} members"

    urls: list[Any] = []
    with workflow("w") as wf:
        a >> parallel(*urls, name="g") >> b
    async with aioflow.start(wf) as handle:
        seen = [e async for e in handle.events()]
        result = await handle.result()
    assert result["b"] == "0 members"
    assert result["g"] == {}
    finished = [e for e in seen if isinstance(e, events.GroupFinished)]
    assert [(e.task_name, e.succeeded) for e in finished] == [("g", True)]


async def test_item04_an_empty_group_first_in_the_workflow() -> None:
    @task
    async def after(g: dict[str, Any]) -> int:
        return len(g)

    with workflow("w") as wf:
        parallel(name="g") >> after
    assert (await aioflow.run(wf))["after"] == 0


# --- 6. goto inside a group member -------------------------------------------------------------


async def test_item06_goto_in_a_group_member_counts_as_finished_for_its_group() -> None:
    @task
    async def other() -> str:
        return "other"

    @task
    async def jumper(ctx: TaskContext) -> int:
        ctx.next_task(other, goto=True)
        return 1

    @task
    async def sibling() -> int:
        return 2

    @task
    async def after(g: dict[str, int]) -> dict[str, int]:
        return g

    with workflow("w") as wf:
        parallel(jumper, sibling, name="g") >> after
    async with aioflow.start(wf) as handle:
        seen = [e async for e in handle.events()]
        result = await handle.result()
    assert result["after"] == {"jumper": 1, "sibling": 2}
    assert result["other"] == "other"
    assert any(isinstance(e, events.GroupFinished) and e.succeeded for e in seen)


# --- 7. upstream results are passed by reference in-process (documented rule) ---------------


async def test_item07_in_process_results_are_shared_by_reference_as_documented() -> None:
    @task
    async def src() -> list[int]:
        return [1]

    @task
    async def reader(src: list[int]) -> int:
        return id(src)

    with workflow("w") as wf:
        src >> reader
    result = await aioflow.run(wf)
    assert result["reader"] == id(result["src"])  # zero-copy: treat results as read-only


# --- 8. every run option is validated before anything runs -----------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_threads": 0},
        {"max_threads": -1},
        {"max_threads": 1.5},
        {"max_concurrency": 0},
        {"max_steps": 0},
        {"checkpoint_every": "sometimes"},
        {"inputs": ["not", "a", "mapping"]},
    ],
)
async def test_item08_invalid_options_are_configuration_errors(options: dict[str, Any]) -> None:
    ran: list[str] = []

    @task
    def step() -> None:
        ran.append("step")

    with workflow("w") as wf:
        wf.add(step)
    with anyio.fail_after(5), pytest.raises(ConfigurationError):
        await aioflow.run(wf, **options)
    assert ran == []


# --- 9. BaseException subclasses, failing policies and failing instruments ------------------


class Interrupting(BaseException):
    pass


async def test_item09_a_base_exception_from_a_task_fails_the_run() -> None:
    @task
    async def weird() -> None:
        raise Interrupting("not an Exception")

    with workflow("w") as wf:
        wf.add(weird)
    async with aioflow.start(wf) as handle:
        seen = [e async for e in handle.events()]
        with pytest.raises(WorkflowFailedError) as info:
            await handle.result()
    assert isinstance(info.value.__cause__, Interrupting)
    assert info.value.result is not None
    assert info.value.result.tasks["weird"].status == "failed"
    run_finished = [e for e in seen if isinstance(e, events.RunFinished)]
    assert [e.status for e in run_finished] == ["failed"]


async def test_item09_a_base_exception_from_a_sync_task_fails_the_run() -> None:
    @task
    def weird() -> None:
        raise Interrupting("from a thread")

    with workflow("w") as wf:
        wf.add(weird)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, Interrupting)


class Broken(GroupPolicy):
    def evaluate(self, outcomes: GroupOutcomes) -> bool:
        raise ValueError("policy bug")


async def test_item09_a_failing_group_policy_fails_the_run_with_its_error_chained() -> None:
    @task
    async def m() -> int:
        return 1

    with workflow("w") as wf:
        parallel(m, name="g", policy=Broken())
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, ValueError)
    assert "g" in str(info.value)
    assert info.value.result is not None


async def test_item09_a_failing_instrument_is_logged_once_and_disabled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    class Faulty:
        def on_task_end(self, event: events.Event) -> None:
            calls.append(str(event.task_name))
            raise RuntimeError("instrument bug")

    @task
    async def a() -> int:
        return 1

    @task
    async def b(a: int) -> int:
        return a + 1

    with workflow("w") as wf:
        a >> b
    with caplog.at_level(logging.ERROR, logger="aioflow"):
        result = await aioflow.run(wf, instruments=[Faulty()])
    assert result["b"] == 2
    assert calls == ["a"]  # disabled after its first failure
    assert sum("instrument bug" in r.getMessage() for r in caplog.records) == 1


# --- 10. errors raised by a run pickle, with their partial result -----------------------------


async def test_item10_errors_raised_by_real_runs_pickle() -> None:
    @task
    async def ok() -> int:
        return 1

    @task
    async def bad(ok: int) -> None:
        raise ValueError("boom")

    with workflow("w") as wf:
        ok >> bad
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is WorkflowFailedError
    assert copy.result is not None
    assert copy.result.status == "failed"
    assert copy.result["ok"] == 1
    assert copy.result.tasks["bad"].status == "failed"
    assert copy.code == info.value.code and copy.hint == info.value.hint

    @task
    async def member() -> None:
        raise ValueError("member failed")

    with workflow("g") as wf2:
        parallel(member, ok, name="grp")
    with pytest.raises(GroupFailedError) as ginfo:
        await aioflow.run(wf2)
    gcopy = pickle.loads(pickle.dumps(ginfo.value))
    assert gcopy.outcomes == ginfo.value.outcomes
    assert gcopy.result is not None and gcopy.result.status == "failed"

    @task
    async def quits(ctx: TaskContext) -> None:
        ctx.cancel_workflow("enough")

    with workflow("c") as wf3:
        wf3.add(quits)
    with pytest.raises(WorkflowCancelledError) as cinfo:
        await aioflow.run(wf3)
    ccopy = pickle.loads(pickle.dumps(cinfo.value))
    assert ccopy.reason == "enough" and ccopy.result is not None


# --- 11. cancel_workflow, then cancel_task, under a timeout ----------------------------------


async def test_item11_cancel_task_after_cancel_workflow_records_a_cancellation() -> None:
    started = anyio.Event()

    @task(timeout=10)
    async def quitter(ctx: TaskContext) -> None:
        ctx.cancel_workflow("by request")
        started.set()
        await anyio.sleep_forever()

    with workflow("w") as wf:
        wf.add(quitter)
    async with aioflow.start(wf) as handle:
        await started.wait()
        assert handle.cancel_task("quitter")
        with pytest.raises(WorkflowCancelledError) as info:
            await handle.result()
    result = info.value.result
    assert result is not None
    record = result.tasks["quitter"]
    assert record.status == "cancelled"
    assert isinstance(record.error, TaskCancelledError)


# --- 13. queued is queued; never started is not an execution ----------------------------------


async def test_item13_statistics_tell_queued_from_running_and_records_never_started() -> None:
    running = 0
    ten_running = anyio.Event()

    @task
    async def sleeper() -> None:
        nonlocal running
        running += 1
        if running == 10:
            ten_running.set()
        await anyio.sleep_forever()

    with workflow("w") as wf:
        parallel(*[sleeper.bind(name=f"s{i}") for i in range(50)], name="g")
    async with aioflow.start(wf, max_concurrency=10) as handle:
        await ten_running.wait()
        await anyio.sleep(0.01)
        stats = handle.statistics()
        assert (stats.running, stats.queued, stats.executions) == (10, 40, 10)
        await handle.cancel()
        seen = [e async for e in handle.events()]
    with pytest.raises(WorkflowCancelledError) as info:
        await handle.result()
    result = info.value.result
    assert result is not None
    records = result.tasks.values()
    started = [r for r in records if r.executions]
    never = [r for r in records if not r.executions]
    assert len(started) == 10 and len(never) == 40
    assert all(r.status == "cancelled" for r in started)
    assert all(r.status == "skipped" and r.attempts == 0 for r in never)
    cancelled_events = {e.task_name for e in seen if isinstance(e, events.TaskCancelled)}
    assert cancelled_events == {r.name for r in started}


# --- 14. durations: the attempt's in the event, all attempts' in the record -------------------


async def test_item14_event_duration_is_the_attempt_record_duration_is_the_sum() -> None:
    @task(retries=aioflow.RetryPolicy(retries=1, backoff=0))
    async def flaky(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            await anyio.sleep(0.1)
            raise ValueError("first attempt fails")
        return 1

    with workflow("w") as wf:
        wf.add(flaky)
    async with aioflow.start(wf) as handle:
        seen = [e async for e in handle.events()]
        result = await handle.result()
    succeeded = [e for e in seen if isinstance(e, events.TaskSucceeded)]
    assert len(succeeded) == 1 and succeeded[0].attempt == 2
    assert succeeded[0].duration < 0.05
    assert result.tasks["flaky"].duration >= 0.1


# --- 15. outcomes agree with records; TaskStarted precedes every TaskFailed -------------------


async def test_item15_strict_group_outcomes_name_cancelled_siblings_cancelled() -> None:
    started = anyio.Event()

    @task
    async def slow() -> None:
        started.set()
        await anyio.sleep_forever()

    @task
    async def boom() -> None:
        await started.wait()
        raise ValueError("boom")

    with workflow("w") as wf:
        parallel(slow, boom, name="g")
    with pytest.raises(GroupFailedError) as info:
        await aioflow.run(wf)
    assert info.value.outcomes == {"slow": "cancelled", "boom": "failed"}
    result = info.value.result
    assert result is not None
    assert result.tasks["slow"].status == "cancelled"


async def test_item15_a_task_failing_while_its_arguments_are_filled_is_started_first() -> None:
    @task
    async def fails() -> None:
        raise ValueError("x")

    @task
    async def other() -> int:
        return 1

    @task
    async def needs(fails: int) -> int:  # filled from a tolerated failure: no result
        return fails

    with workflow("w") as wf:
        parallel(fails, other, name="g", policy=AtLeast(1)) >> needs
    async with aioflow.start(wf) as handle:
        seen = [e async for e in handle.events() if e.task_name == "needs"]
        with pytest.raises(WorkflowFailedError):
            await handle.result()
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["TaskStarted", "TaskFailed"]


# --- 17. backends: unknown schemes first, injected keyrings honoured --------------------------


async def test_item17_unknown_backend_scheme_is_named_before_any_key_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIOFLOW_SECRET_KEY", raising=False)

    @task
    async def a() -> int:
        return 1

    with workflow("w") as wf:
        wf.add(a)
    with pytest.raises(ConfigurationError) as info:
        await aioflow.run(wf, backend="foo://x")
    assert "foo" in str(info.value)
    assert "memory" in str(info.value)  # the schemes that exist
    assert "SECRET_KEY" not in str(info.value)


async def test_item17_an_injected_keyring_is_honoured_by_the_key_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from contextlib import AbstractAsyncContextManager

    from aioflow.backends import Backend, MemoryBackend, RunLink, Session
    from aioflow.serialization import Keyring

    class Remote(Backend):
        """A backend that claims to cross processes (in-process underneath)."""

        schemes = ("remote",)
        remote = True

        def session(self, link: RunLink) -> AbstractAsyncContextManager[Session]:
            return MemoryBackend().session(link)

    monkeypatch.delenv("AIOFLOW_SECRET_KEY", raising=False)

    @task
    async def a() -> int:
        return 1

    with workflow("w") as wf:
        wf.add(a)
    with pytest.raises(ConfigurationError, match="AIOFLOW_SECRET_KEY"):
        await aioflow.run(wf, backend=Remote())
    keyring = Keyring("k" * 32)
    assert (await aioflow.run(wf, backend=Remote(), keyring=keyring))["a"] == 1


# --- 16. run inputs that no task consumes --------------------------------------------------


async def test_item16_an_input_no_task_uses_is_refused_with_a_suggestion() -> None:
    ran: list[int] = []

    @task
    async def price(min_eur: int = 0) -> int:
        ran.append(min_eur)
        return min_eur

    with workflow("w") as wf:
        wf.add(price)
    with pytest.raises(aioflow.WorkflowDefinitionError) as info:
        await aioflow.run(wf, inputs={"min_euro": 50})
    assert "min_euro" in str(info.value)
    assert "did you mean 'min_eur'" in info.value.hint
    assert ran == []
    result = await aioflow.run(wf, inputs={"min_euro": 50}, strict_inputs=False)
    assert result["price"] == 0


async def test_item16_an_unknown_run_option_is_refused_with_a_suggestion() -> None:
    @task
    async def a() -> int:
        return 1

    with workflow("w") as wf:
        wf.add(a)
    with pytest.raises(ConfigurationError) as info:
        await aioflow.run(wf, max_concurency=3)  # type: ignore[call-arg]
    assert "max_concurrency" in info.value.hint
