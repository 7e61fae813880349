"""The scheduler: ordering, joins, parameter filling, threads, limits, results."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import anyio
import pytest

import aioflow
from aioflow import (
    Handler,
    RunStateError,
    Task,
    TaskContext,
    WorkflowDefinitionError,
    WorkflowFailedError,
    current_context,
    parallel,
    task,
    workflow,
)


@task
async def extract() -> list[int]:
    return [1, 2, 3]


@task(retries=3, timeout=10.0)
async def double(extract: list[int]) -> list[int]:
    return [x * 2 for x in extract]


@task
def total(double: list[int], ctx: TaskContext) -> int:
    assert ctx.task_name == "total"
    return sum(double)


def etl() -> aioflow.Workflow:
    with workflow("etl") as wf:
        extract >> double >> total
    return wf


async def test_contract_example_in_process() -> None:
    result = await aioflow.run(etl())
    assert result["total"] == 12
    assert result.output == 12
    assert result.status == "succeeded"
    assert result.results == {"extract": [1, 2, 3], "double": [2, 4, 6], "total": 12}
    assert set(result.tasks) == {"extract", "double", "total"}
    record = result.tasks["double"]
    assert record.status == "succeeded" and record.attempts == 1 and record.executions == 1
    assert record.duration >= 0 and record.started_at is not None
    assert len(result.run_id) == 32


def test_run_sync_from_synchronous_code() -> None:
    assert aioflow.run_sync(etl())["total"] == 12


async def test_run_sync_inside_a_loop_is_refused() -> None:
    with pytest.raises(RunStateError, match="running event loop") as info:
        aioflow.run_sync(etl())
    assert "await aioflow.run" in info.value.hint


async def test_diamond_runs_join_once_with_both_results() -> None:
    calls: list[str] = []

    @task
    async def a() -> int:
        calls.append("a")
        return 1

    @task
    async def b(a: int) -> int:
        calls.append("b")
        return a + 1

    @task
    async def c(a: int) -> int:
        calls.append("c")
        return a + 2

    @task
    async def d(b: int, c: int) -> int:
        calls.append("d")
        return b * c

    with workflow("diamond") as wf:
        a >> b
        a >> c
        b >> d
        c >> d
    result = await aioflow.run(wf)
    assert result["d"] == 6
    assert sorted(calls) == ["a", "b", "c", "d"]
    assert calls[0] == "a" and calls[-1] == "d"


async def test_successor_starts_only_after_all_predecessors() -> None:
    release = anyio.Event()
    order: list[str] = []

    @task
    async def slow() -> None:
        await release.wait()
        order.append("slow")

    @task
    async def fast() -> None:
        order.append("fast")
        release.set()

    @task
    async def join() -> None:
        order.append("join")

    with workflow("w") as wf:
        slow >> join
        fast >> join
    await aioflow.run(wf)
    assert order == ["fast", "slow", "join"]


async def test_parameter_precedence() -> None:
    seen: dict[str, Any] = {}

    @task
    async def x() -> str:
        return "upstream-x"

    @task
    async def ctx_named() -> str:
        return "upstream-ctx"

    @task
    async def consumer(
        x: str,
        ctx: TaskContext,
        y: str,
        z: str = "default-z",
        w: str = "default-w",
    ) -> None:
        seen.update(x=x, ctx=ctx, y=y, z=z, w=w)

    with workflow("w") as wf:
        x >> consumer.bind(name="consumer", w="bound-w")
        ctx_named >> wf.tasks["consumer"]
    await aioflow.run(wf, inputs={"x": "input-x", "y": "input-y", "w": "input-w"})
    assert seen["x"] == "upstream-x"  # predecessor beats input
    assert isinstance(seen["ctx"], TaskContext)  # context beats the task named ctx
    assert seen["y"] == "input-y"  # input fills what no predecessor does
    assert seen["z"] == "default-z"  # default last
    assert seen["w"] == "bound-w"  # bound beats everything


async def test_bound_value_beats_predecessor_result() -> None:
    @task
    async def src() -> int:
        return 1

    @task
    async def sink(src: int) -> int:
        return src

    with workflow("w") as wf:
        src >> sink.bind(name="sink", src=99)
    assert (await aioflow.run(wf))["sink"] == 99


async def test_ancestor_results_reach_later_tasks() -> None:
    @task
    async def first() -> int:
        return 10

    @task
    async def middle() -> int:
        return 1

    @task
    async def last(first: int, middle: int) -> int:
        return first + middle

    with workflow("w") as wf:
        first >> middle >> last
    assert (await aioflow.run(wf))["last"] == 11


async def test_unfillable_parameter_fails_before_anything_runs() -> None:
    ran: list[str] = []

    @task
    async def starter() -> None:
        ran.append("starter")

    @task
    async def needy(missing: int) -> int:
        return missing

    with workflow("w") as wf:
        starter >> needy
    with pytest.raises(WorkflowDefinitionError, match="'missing'") as info:
        await aioflow.run(wf)
    assert "inputs=" in info.value.hint
    assert ran == []
    # ... and the same workflow runs once the input is given.
    assert (await aioflow.run(wf, inputs={"missing": 4}))["needy"] == 4


async def test_parameter_named_after_a_non_predecessor_task_has_a_precise_hint() -> None:
    @task
    async def left() -> int:
        return 1

    @task
    async def right(left: int) -> int:
        return left

    with workflow("w") as wf:
        wf.add(left, right)
    with pytest.raises(WorkflowDefinitionError) as info:
        await aioflow.run(wf)
    assert "left >> right" in info.value.hint


async def test_sync_tasks_run_in_worker_threads_without_blocking_the_loop() -> None:
    gate = threading.Event()
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}

    @task
    def blocking(ctx: TaskContext) -> str:
        threads["blocking"] = threading.get_ident()
        assert current_context() is ctx
        # Waits for an async sibling: only possible if the loop is not blocked.
        assert gate.wait(timeout=10)
        return "unblocked"

    @task
    async def opener() -> None:
        threads["opener"] = threading.get_ident()
        gate.set()

    with workflow("w") as wf:
        parallel(blocking, opener)
    result = await aioflow.run(wf)
    assert result["blocking"] == "unblocked"
    assert threads["blocking"] != loop_thread
    assert threads["opener"] == loop_thread


async def test_current_context_in_async_task_and_outside() -> None:
    @task
    async def who() -> tuple[str, str, int]:
        ctx = current_context()
        return ctx.run_id, ctx.task_name, ctx.attempt

    with workflow("w") as wf:
        wf.add(who)
    result = await aioflow.run(wf, run_id="run-1")
    assert result["who"] == ("run-1", "who", 1)
    with pytest.raises(RunStateError):
        current_context()


async def test_each_execution_gets_its_own_context() -> None:
    contexts: list[TaskContext] = []

    @task
    async def grab(ctx: TaskContext) -> None:
        contexts.append(ctx)

    with workflow("w") as wf:
        parallel(*(grab.bind(name=f"g{i}") for i in range(5)))
    await aioflow.run(wf)
    assert len({id(c) for c in contexts}) == 5
    assert sorted(c.task_name for c in contexts) == [f"g{i}" for i in range(5)]


async def test_failure_keeps_partial_result_and_original_traceback() -> None:
    @task
    async def ok() -> int:
        return 1

    @task
    async def boom(ok: int) -> None:
        raise ValueError("exploded")

    @task
    async def never(boom: None) -> None:
        raise AssertionError("must not run")

    with workflow("w") as wf:
        ok >> boom >> never
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    err = info.value
    assert err.code == "aioflow.workflow_failed"
    assert err.task_name == "boom"
    assert isinstance(err.__cause__, ValueError)
    frames = [f.name for f in traceback.extract_tb(err.__cause__.__traceback__)]
    assert "boom" in frames
    assert err.result is not None
    assert err.result.status == "failed"
    assert err.result["ok"] == 1
    assert err.result.tasks["boom"].status == "failed"
    assert err.result.tasks["boom"].error is err.__cause__
    assert err.result.tasks["never"].status == "skipped"


async def test_inputs_fill_parameters() -> None:
    @task
    async def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    with workflow("w") as wf:
        wf.add(greet)
    assert (await aioflow.run(wf, inputs={"name": "ada"})).output == "hello ada!"


async def test_output_needs_a_single_sink() -> None:
    @task
    async def one() -> int:
        return 1

    @task
    async def two() -> int:
        return 2

    with workflow("w") as wf:
        wf.add(one, two)
    result = await aioflow.run(wf)
    with pytest.raises(RunStateError, match="single sink"):
        _ = result.output
    assert result["one"] == 1 and result.get("three") is None
    with pytest.raises(KeyError, match="three"):
        _ = result["three"]


async def test_group_sink_output_is_member_results() -> None:
    @task
    async def p() -> int:
        return 1

    @task
    async def q() -> int:
        return 2

    with workflow("w") as wf:
        parallel(p, q, name="both")
    assert (await aioflow.run(wf)).output == {"p": 1, "q": 2}


async def test_max_concurrency_bounds_running_tasks_and_priority_orders_them() -> None:
    running = 0
    peak = 0
    order: list[str] = []

    def make(name: str, priority: int) -> Task[[], None]:
        async def body() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            order.append(name)
            await anyio.lowlevel.checkpoint()
            running -= 1

        return task(name=name, priority=priority)(body)

    tasks = [make(f"t{i}", priority=i) for i in range(6)]
    with workflow("w") as wf:
        wf.add(*tasks)
    await aioflow.run(wf, max_concurrency=1)
    assert peak == 1
    assert order == [f"t{i}" for i in reversed(range(6))]

    running = peak = 0
    order.clear()
    await aioflow.run(wf, max_concurrency=3)
    assert peak <= 3


async def test_custom_handler_receives_the_call() -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    class Recording(Handler):
        async def execute(
            self, task: Task[..., Any], args: tuple[Any, ...], kwargs: Any, ctx: TaskContext
        ) -> Any:
            calls.append((task.name, args, dict(kwargs)))
            return "from-handler"

    @task(handler="recording")
    async def remote(value: int) -> str:
        raise AssertionError("the handler decides how to run it")

    with workflow("w") as wf:
        wf.add(remote.bind(name="remote", value=3))
    result = await aioflow.run(wf, handlers={"recording": Recording()})
    assert result["remote"] == "from-handler"
    assert calls == [("remote", (), {"value": 3})]
    with pytest.raises(WorkflowDefinitionError, match="recording"):
        await aioflow.run(wf)


async def test_a_redis_backend_without_a_shared_key_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 1: the key is checked first, nothing is sent anywhere.
    monkeypatch.delenv("AIOFLOW_SECRET_KEY", raising=False)
    with pytest.raises(aioflow.ConfigurationError, match="AIOFLOW_SECRET_KEY") as info:
        await aioflow.run(etl(), backend="redis://127.0.0.1:1/0")
    assert "generate" in info.value.hint.lower() or "AIOFLOW_SECRET_KEY" in info.value.hint


async def test_unsupported_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", "k" * 32)
    with pytest.raises(aioflow.ConfigurationError, match="backend") as info:
        await aioflow.run(etl(), backend="carrier-pigeon://")
    assert "memory://" in info.value.hint
    assert (await aioflow.run(etl(), backend="memory://"))["total"] == 12


async def test_channel_is_shared_and_atomic_across_tasks() -> None:
    @task
    async def bump(ctx: TaskContext) -> None:
        for _ in range(10):
            await ctx.channel.incr("count")
            await anyio.lowlevel.checkpoint()
        await ctx.channel.append("seen", ctx.task_name)

    @task
    async def read(ctx: TaskContext) -> tuple[int, list[str]]:
        return await ctx.channel.get("count"), sorted(await ctx.channel.get("seen"))

    with workflow("w") as wf:
        parallel(*(bump.bind(name=f"b{i}") for i in range(4))) >> read
    assert (await aioflow.run(wf))["read"] == (40, ["b0", "b1", "b2", "b3"])


async def test_result_lookup_from_context() -> None:
    @task
    async def first() -> int:
        return 5

    @task
    async def second(ctx: TaskContext) -> int:
        with pytest.raises(aioflow.UnknownTaskError):
            ctx.result("nope")
        assert ctx.result("third", None) is None
        return int(ctx.result("first")) + 1

    @task
    async def third() -> None: ...

    with workflow("w") as wf:
        first >> second >> third
    assert (await aioflow.run(wf))["second"] == 6
