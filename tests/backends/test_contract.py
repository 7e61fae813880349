"""The backend contract suite: the same workflows behave the same on every backend.

Every test takes the ``backend`` fixture (see conftest.py): ``memory://`` and
``memory://?serialize=true`` and Redis with two real worker processes.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import aioflow
from aioflow import (
    AtLeast,
    Critical,
    GroupFailedError,
    TaskCancelledError,
    TaskTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    chain,
    events,
    parallel,
    workflow,
)

from . import flows


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    flows.reset()
    yield
    flows.GATE.set()


async def test_chain_passes_results_by_name(backend: str) -> None:
    with workflow("w") as wf:
        chain(
            flows.one.bind(name="value"),
            flows.add.bind(name="plus"),
            flows.sync_double.bind(name="doubled"),
        )
    # add(value) reads "value"; sync_double(value) too: both are ancestors.
    result = await aioflow.run(wf, backend=backend)
    assert result["value"] == 1
    assert result["plus"] == 2
    assert result["doubled"] == 2
    assert result.output == 2


async def test_diamond_runs_the_join_once(backend: str) -> None:
    with workflow("w") as wf:
        value = flows.one.bind(name="value")
        left = flows.add.bind(name="left", more=10)
        right = flows.add.bind(name="right", more=20)
        join = flows.takes.bind(name="join", value="joined")
        value >> left >> join
        value >> right >> join
    result = await aioflow.run(wf, backend=backend)
    assert (result["left"], result["right"], result["join"]) == (11, 21, "joined")
    assert result.tasks["join"].executions == 1


async def test_strict_group_fails_fast(backend: str) -> None:
    with workflow("w") as wf:
        parallel(flows.fail, flows.waits, name="g") >> flows.never
    with pytest.raises(GroupFailedError) as info:
        await aioflow.run(wf, backend=backend)
    assert info.value.outcomes == {"fail": "failed", "waits": "cancelled"}
    assert isinstance(info.value.__cause__, ValueError)
    assert not flows.RUNNING


async def test_best_effort_group_gives_what_succeeded(backend: str) -> None:
    with workflow("w") as wf:
        parallel(flows.fail, flows.one, name="g", policy="best_effort") >> flows.takes.bind(
            value=None
        )
    result = await aioflow.run(wf, backend=backend)
    assert result["g"] == {"one": 1}
    assert result.tasks["fail"].status == "failed"


async def test_at_least_and_critical(backend: str) -> None:
    with workflow("w") as wf:
        parallel(flows.fail, flows.one, name="g", policy=AtLeast(1))
    assert (await aioflow.run(wf, backend=backend))["g"] == {"one": 1}
    with workflow("w2") as wf2:
        parallel(flows.fail, flows.one, name="g", policy=Critical("fail"))
    with pytest.raises(GroupFailedError):
        await aioflow.run(wf2, backend=backend)


async def test_retries_make_new_attempts(backend: str) -> None:
    with workflow("w") as wf:
        wf.add(flows.flaky.with_options(retries=aioflow.RetryPolicy(retries=2, backoff=0)))
    async with aioflow.start(wf, backend=backend) as handle:
        seen = [e async for e in handle.events()]
        result = await handle.result()
    assert result["flaky"] == 3
    assert result.tasks["flaky"].attempts == 3
    assert result.tasks["flaky"].executions == 1
    assert [e.attempt for e in seen if isinstance(e, events.TaskStarted)] == [1, 2, 3]
    assert len([e for e in seen if isinstance(e, events.TaskRetrying)]) == 2


async def test_exhausted_retries_fail_with_the_task_error(backend: str) -> None:
    with workflow("w") as wf:
        wf.add(flows.flaky.bind(failures=5).with_options(retries=1))
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf, backend=backend)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "attempt 2 fails" in str(info.value.__cause__)


async def test_timeouts(backend: str) -> None:
    with workflow("w") as wf:
        wf.add(flows.too_slow)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf, backend=backend)
    assert isinstance(info.value.__cause__, TaskTimeoutError)


async def test_loops(backend: str) -> None:
    with workflow("w") as wf:
        flows.counter >> flows.takes.bind(value="after")
    result = await aioflow.run(wf, backend=backend)
    assert result["counter"] == 4
    assert result.tasks["counter"].executions == 5


async def test_dynamic_tasks_and_goto(backend: str) -> None:
    with workflow("w") as wf:
        wf.add(flows.spawn)
    result = await aioflow.run(wf, backend=backend)
    assert result["child"] == "child of spawned"
    assert result.tasks["child"].dynamic
    with workflow("w2") as wf2:
        flows.jump >> flows.never
    result = await aioflow.run(wf2, backend=backend)
    assert result["child_jump"] == "landed"
    assert result.tasks["never"].status == "skipped"


async def test_terminate_and_cancel_from_a_task(backend: str) -> None:
    with workflow("w") as wf:
        flows.terminate >> flows.never
    result = await aioflow.run(wf, backend=backend)
    assert result.status == "succeeded" and result.reason == "enough"
    with workflow("w2") as wf2:
        flows.cancel_run >> flows.never
    with pytest.raises(WorkflowCancelledError) as info:
        await aioflow.run(wf2, backend=backend)
    assert info.value.reason == "no more"


async def test_channel_atomics(backend: str) -> None:
    with workflow("w") as wf:
        parallel(*[flows.bump.bind(name=f"b{i}") for i in range(5)], name="g") >> (
            flows.read_channel
        )
    result = await aioflow.run(wf, backend=backend)
    assert result["read_channel"]["count"] == 100
    assert sorted(result["read_channel"]["names"]) == [f"b{i}" for i in range(5)]


async def test_ctx_result_and_context_fields(backend: str) -> None:
    with workflow("w") as wf:
        flows.one >> flows.reads_result >> flows.picks_context
    result = await aioflow.run(wf, backend=backend, run_id="r1")
    assert result["reads_result"] == 1
    assert result["picks_context"] == "r1:picks_context:1:1"


async def test_ctx_result_of_a_group_is_its_members_results(backend: str) -> None:
    """On a worker too: the coordinator publishes a group's result with its successors
    (groups complete there, not on a worker)."""
    with workflow("w") as wf:
        parallel(flows.one, flows.add.bind(name="two", value=1), name="g") >> flows.reads_group
    result = await aioflow.run(wf, backend=backend)
    assert result["g"] == {"one": 1, "two": 2}
    assert result["reads_group"] == {"one": 1, "two": 2}


async def test_ctx_result_knows_unknown_names_and_unfinished_tasks(backend: str) -> None:
    with workflow("w") as wf:
        flows.probes >> flows.later
    result = await aioflow.run(wf, backend=backend, inputs={"mode": "x"}, strict_inputs=False)
    assert result["probes"] == {
        "unknown": "UnknownTaskError",
        "later": "not yet",
        "inputs": {"mode": "x"},
    }


async def test_events_of_a_run(backend: str) -> None:
    with workflow("w") as wf:
        flows.one >> flows.add.bind(value=1)
    async with aioflow.start(wf, backend=backend) as handle:
        kinds = [type(e).__name__ async for e in handle.events()]
        await handle.result()
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert kinds.count("TaskStarted") == 2 and kinds.count("TaskSucceeded") == 2


async def test_cancellation_leaves_nothing_running(backend: str) -> None:
    with workflow("w") as wf:
        parallel(flows.waits.bind(name="w1"), flows.blocks.bind(name="b1"), name="g")
    async with aioflow.start(wf, backend=backend) as handle:
        started = 0
        async for event in handle.events():
            if isinstance(event, events.TaskStarted):
                started += 1
                if started == 2:
                    break
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(handle.cancel)
                await anyio.sleep(0.02)
                flows.GATE.set()  # the thread cannot be interrupted: let it end
        await _nothing_running()
        with pytest.raises(WorkflowCancelledError) as info:
            await handle.result()
    assert info.value.result is not None
    assert {r.status for r in info.value.result.tasks.values()} == {"cancelled"}


async def _nothing_running() -> None:
    """No task of the run runs any more. On a worker, a cancelled thread's outcome is
    reported at once while the thread (which cannot be interrupted) ends once its
    gate opens: it is given a moment for that."""
    with anyio.fail_after(5):
        while flows.RUNNING:  # noqa: ASYNC110 - files of another process: no event to await
            await anyio.sleep(0.01)


async def test_cancel_one_task(backend: str) -> None:
    with workflow("w") as wf:
        parallel(flows.waits, flows.one, name="g", policy="best_effort")
    async with aioflow.start(wf, backend=backend) as handle:
        async for event in handle.events():
            if isinstance(event, events.TaskStarted) and event.task_name == "waits":
                break
        assert handle.cancel_task("waits", "not needed")
        result = await handle.result()
    assert result["g"] == {"one": 1}
    assert isinstance(result.tasks["waits"].error, TaskCancelledError)


async def test_a_task_error_keeps_its_type_and_traceback(backend: str) -> None:
    with workflow("w") as wf:
        wf.add(flows.raises_custom)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf, backend=backend)
    cause = info.value.__cause__
    assert isinstance(cause, flows.Custom)
    assert str(cause) == "custom failure"
    if backend != "memory://":  # it ran in another process (or as if it had)
        remote = cause.__cause__
        assert isinstance(remote, aioflow.RemoteTaskError)
        assert "raises_custom" in remote.remote_traceback


async def test_the_mixed_workflow_gives_the_same_results(backend: str) -> None:
    result = await aioflow.run(flows.mixed(), backend=backend)
    expected = (await aioflow.run(flows.mixed())).results
    flows.assert_same_results(result, expected)
    assert result["read_channel"]["count"] == 60
    assert result["reads_result"] == 1
    assert result["child"] == "child of spawned"
    assert result.tasks["retried"].attempts == 2


def test_a_task_context_refuses_pickling() -> None:
    seen: list[Any] = []

    @aioflow.task
    async def grab(ctx: aioflow.TaskContext) -> None:
        seen.append(ctx)

    with workflow("w") as wf:
        wf.add(grab)
    aioflow.run_sync(wf)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(seen[0])


# --- what cannot cross a process fails on the serializing backend, naming the task ----


async def test_a_result_that_cannot_cross_fails_naming_the_task() -> None:
    with workflow("w") as wf:
        wf.add(flows.returns_lock)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf, backend="memory://?serialize=true")
    cause = info.value.__cause__
    assert isinstance(cause, aioflow.SerializationError)
    assert "returns_lock" in str(cause) and "lock" in str(cause).lower()


async def test_an_argument_that_cannot_cross_fails_naming_the_task() -> None:
    with workflow("w") as wf:
        wf.add(flows.takes.bind(value=threading.Lock()))
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf, backend="memory://?serialize=true")
    cause = info.value.__cause__
    assert isinstance(cause, aioflow.SerializationError)
    assert "takes" in str(cause) and "lock" in str(cause).lower()
    # In-process, the same value is passed by reference and works.
    assert (await aioflow.run(wf))["takes"] is not None


async def test_a_channel_value_that_cannot_cross_fails_naming_the_task() -> None:
    with workflow("w") as wf:
        wf.add(flows.stores_lock)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf, backend="memory://?serialize=true")
    cause = info.value.__cause__
    assert isinstance(cause, aioflow.SerializationError)
    assert "stores_lock" in str(cause) and "lock" in str(cause)


async def test_a_backend_instance_is_accepted() -> None:
    from aioflow.backends import MemoryBackend

    with workflow("w") as wf:
        flows.one.bind(name="value") >> flows.add
    backend = MemoryBackend(serialize=True)
    assert (await aioflow.run(wf, backend=backend))["add"] == 2


async def test_a_task_naming_a_handler_nobody_has_fails_naming_it(backend: str) -> None:
    with workflow("w") as wf:
        wf.add(flows.needs_a_handler)
    error: type[BaseException] = (
        aioflow.WorkflowDefinitionError if backend.startswith("memory") else WorkflowFailedError
    )
    with pytest.raises(error) as info:  # in-process: before the run; remote: on the worker
        await aioflow.run(wf, backend=backend)
    assert "nowhere" in str(info.value)


async def test_max_concurrency_bounds_what_runs_at_once(backend: str) -> None:
    with workflow("w") as wf:
        parallel(*(flows.counts_peak.bind(name=f"p{i}") for i in range(12)), name="all")
    result = await aioflow.run(wf, backend=backend, max_concurrency=3)
    assert len(result["all"]) == 12
    peaks = list(result["all"].values())
    assert max(peaks) <= 3
