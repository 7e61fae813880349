"""Property tests of the scheduler on random DAGs: every task runs exactly once, after
all of its predecessors, and sees their results."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aioflow
from aioflow import TaskContext, task, workflow


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    n = draw(st.integers(min_value=1, max_value=25))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=60)) if pairs else []
    return n, edges


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dag=dags(),
    max_concurrency=st.sampled_from([1, 2, 7, None]),
    yields=st.booleans(),
)
def test_random_dags_run_each_task_once_in_dependency_order(
    dag: tuple[int, list[tuple[int, int]]], max_concurrency: int | None, yields: bool
) -> None:
    n, edges = dag
    preds: dict[int, list[int]] = {i: [] for i in range(n)}
    for i, j in edges:
        preds[j].append(i)
    clock = itertools.count()
    started: dict[str, int] = {}
    finished: dict[str, int] = {}

    async def body(ctx: TaskContext) -> int:
        name = ctx.task_name
        assert name not in started, f"{name} ran twice"
        started[name] = next(clock)
        if yields:
            await anyio.lowlevel.checkpoint()
        index = int(name[1:])
        # Each task returns 1 + the sum of its predecessors' results.
        value = 1 + sum(ctx.result(f"t{p}") for p in preds[index])
        finished[name] = next(clock)
        return value

    node = task(body)
    with workflow("random") as wf:
        nodes = [node.bind(name=f"t{i}") for i in range(n)]
        wf.add(*nodes)
        for i, j in edges:
            nodes[i] >> nodes[j]
    result = aioflow.run_sync(wf, max_concurrency=max_concurrency)

    expected: dict[int, int] = {}
    for i in range(n):
        expected[i] = 1 + sum(expected[p] for p in preds[i])
    assert result.results == {f"t{i}": expected[i] for i in range(n)}
    assert len(started) == n
    for i, j in edges:
        assert finished[f"t{i}"] < started[f"t{j}"], f"t{j} started before t{i} finished"
    assert all(record.executions == 1 for record in result.tasks.values())


@settings(max_examples=40, deadline=None)
@given(
    members=st.integers(min_value=1, max_value=8),
    failing=st.sets(st.integers(min_value=0, max_value=7)),
    at_least=st.integers(min_value=0, max_value=8),
)
def test_at_least_policy_decides_like_a_count(
    members: int, failing: set[int], at_least: int
) -> None:
    failing = {i for i in failing if i < members}
    at_least = min(at_least, members)

    async def body(ctx: TaskContext) -> int:
        if int(ctx.task_name[1:]) in failing:
            raise RuntimeError("planned failure")
        return 1

    node = task(body)
    with workflow("group") as wf:
        aioflow.parallel(
            *(node.bind(name=f"m{i}") for i in range(members)),
            name="g",
            policy=aioflow.AtLeast(at_least),
        )
    succeeded = members - len(failing)
    outcome: Any
    try:
        outcome = aioflow.run_sync(wf)["g"]
    except aioflow.GroupFailedError as exc:
        outcome = exc
    if succeeded >= at_least:
        assert outcome == {f"m{i}": 1 for i in range(members) if i not in failing}
    else:
        assert isinstance(outcome, aioflow.GroupFailedError)
