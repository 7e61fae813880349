"""@task, Task options, bind() and parameter analysis."""

from __future__ import annotations

import pytest

import aioflow
from aioflow import RetryPolicy, TaskContext, WorkflowDefinitionError, task


@task
async def fetch(url: str, retries_seen: int = 0) -> str:
    return url


def test_decorator_without_arguments_keeps_name_and_function() -> None:
    assert fetch.name == "fetch"
    assert fetch.is_async
    assert fetch.options.retries.retries == 0
    assert fetch.options.handler == "inline"


def test_decorator_options() -> None:
    @task(name="custom", retries=3, timeout=10.0, max_cycles=5, queue="io", priority=7)
    def work() -> int:
        return 1

    assert work.name == "custom"
    assert not work.is_async
    assert work.options.retries == RetryPolicy(retries=3)
    assert work.options.timeout == 10.0
    assert work.options.max_cycles == 5
    assert work.options.queue == "io"
    assert work.options.priority == 7


def test_retry_policy_object_is_kept() -> None:
    policy = RetryPolicy(retries=2, backoff=0.0)

    @task(retries=policy)
    async def work() -> None: ...

    assert work.options.retries is policy


@pytest.mark.parametrize(
    "kwargs",
    [{"timeout": 0}, {"timeout": -1.0}, {"max_cycles": 0}, {"retries": -1}, {"retries": "3"}],
)
def test_invalid_options_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(aioflow.AioflowError) as info:
        task(**kwargs)(lambda: None)  # type: ignore[call-overload]
    assert info.value.code
    assert info.value.hint


def test_calling_a_task_calls_the_function() -> None:
    @task
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5


def test_bind_makes_a_new_node_with_bound_parameters() -> None:
    bound = fetch.bind(name="fetch_b", url="b")
    assert bound is not fetch
    assert bound.name == "fetch_b"
    assert bound.bound == {"url": "b"}
    assert fetch.bound == {}
    rebound = bound.bind(name="fetch_c", retries_seen=2)
    assert rebound.bound == {"url": "b", "retries_seen": 2}


def test_bind_unknown_parameter_is_a_definition_error() -> None:
    with pytest.raises(WorkflowDefinitionError, match="nope"):
        fetch.bind(name="x", nope=1)


def test_with_options_changes_only_what_is_asked() -> None:
    slow = fetch.with_options(name="slow_fetch", timeout=5.0, retries=2)
    assert slow.name == "slow_fetch"
    assert slow.options.timeout == 5.0
    assert slow.options.retries.retries == 2
    assert fetch.options.timeout is None


def test_context_parameter_detected_by_annotation_or_name() -> None:
    @task
    def a(ctx: TaskContext) -> None: ...

    @task
    def b(context: TaskContext) -> None: ...

    @task
    def c(ctx) -> None:  # type: ignore[no-untyped-def]
        ...

    assert [p.is_context for p in a.params] == [True]
    assert [p.is_context for p in b.params] == [True]
    assert [p.is_context for p in c.params] == [True]


def test_generator_functions_are_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="generator"):

        @task
        def gen():  # type: ignore[no-untyped-def]
            yield 1


def test_decorating_a_task_twice_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="already a task"):
        task(fetch)  # type: ignore[call-overload]
