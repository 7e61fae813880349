"""Planning: where each parameter comes from (plan_graph), and checking run inputs."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aioflow
from aioflow import TaskContext, WorkflowDefinitionError, chain, parallel, task, workflow
from aioflow.plan import ParamPlan, Source, check_inputs, plan_graph, plan_params


@task
async def src() -> int:
    return 1


@task
async def use(src: int) -> int:
    return src


def planned(wf: aioflow.Workflow, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    order = wf.graph.validate()
    return plan_graph(wf.graph, order, inputs or {})


def sources(plan: tuple[ParamPlan, ...]) -> dict[str, Source]:
    return {p.name: p.source for p in plan}


# --- plan_graph ---------------------------------------------------------------------


def test_far_ancestor_is_upstream_for_every_task_of_a_chain() -> None:
    with workflow("w") as wf:
        chain(src, *[use.bind(name=f"c{i}") for i in range(50)])
    plans = planned(wf)
    assert set(plans) == {f"c{i}" for i in range(50)}  # src has no parameters
    assert all(sources(plan) == {"src": Source.UPSTREAM} for plan in plans.values())


def test_far_ancestor_chain_of_10k_is_planned_without_deep_walks() -> None:
    # Quadratic before (a graph walk per parameter); a plain loop now. Not a timing
    # test: the recursion limit shows that nothing walks the chain recursively.
    with workflow("w") as wf:
        chain(src, *[use.bind(name=f"c{i}") for i in range(10_000)])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        plans = planned(wf)
    finally:
        sys.setrecursionlimit(limit)
    assert plans["c9999"][0].source is Source.UPSTREAM


def test_a_node_that_is_not_an_ancestor_does_not_feed_by_name() -> None:
    @task
    async def late(src: int = 5) -> int:
        return src

    with workflow("w") as wf:
        late >> src  # src runs after late: its result cannot fill late's parameter
    assert sources(planned(wf)["late"]) == {"src": Source.DEFAULT}
    with workflow("w2") as wf2:
        wf2.add(src, use)  # no edge at all
    with pytest.raises(WorkflowDefinitionError, match="'src' of task 'use'") as info:
        planned(wf2)
    assert "does not run before 'use'" in info.value.hint


def test_precedence_bound_context_upstream_input_default() -> None:
    @task
    async def sink(
        bound: int, ctx: TaskContext, src: int, given: int, fallback: int = 0, b: int = 0
    ) -> None:
        return None

    @task
    async def b() -> int:
        return 2

    with workflow("w") as wf:
        src >> b >> sink.bind(bound=1)
    plan = planned(wf, {"given": 3, "src": 4, "bound": 5})["sink"]
    assert sources(plan) == {
        "bound": Source.BOUND,
        "ctx": Source.CONTEXT,
        "src": Source.UPSTREAM,  # a far ancestor beats the input of that name
        "given": Source.INPUT,
        "fallback": Source.DEFAULT,
        "b": Source.UPSTREAM,  # the direct predecessor
    }


def test_a_group_feeds_a_far_descendant_by_its_name() -> None:
    @task
    async def after(fan: dict[str, int]) -> None:
        return None

    with workflow("w") as wf:
        parallel(src, use.bind(name="u", src=0), name="fan") >> src.bind(name="mid") >> after
    assert sources(planned(wf)["after"]) == {"fan": Source.UPSTREAM}


def test_a_task_never_feeds_its_own_parameter() -> None:
    @task
    async def loop(loop: int = 7) -> int:
        return loop

    with workflow("w") as wf:
        src >> loop
    assert sources(planned(wf)["loop"]) == {"loop": Source.DEFAULT}


def test_bind_copies_planned_alike_share_one_plan_tuple() -> None:
    with workflow("w") as wf:
        src >> parallel(*[use.bind(name=f"u{i}") for i in range(100)])
    plans = planned(wf)
    assert len({id(plan) for plan in plans.values()}) == 1


@st.composite
def dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]], list[list[int]]]:
    """A random DAG (edges i -> j with i < j) and, per node, the nodes it names."""
    n = draw(st.integers(2, 12))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=30))
    wants = [draw(st.lists(st.integers(0, n - 1), unique=True, max_size=3)) for _ in range(n)]
    return n, edges, wants


@settings(max_examples=200, deadline=None)
@given(dags())
def test_plan_graph_agrees_with_planning_each_task_alone(
    case: tuple[int, list[tuple[int, int]], list[list[int]]],
) -> None:
    n, edges, wants = case
    made = []
    for i in range(n):
        params = ", ".join(f"n{w}: int = 0" for w in wants[i])
        namespace: dict[str, Any] = {}
        exec(f"async def n{i}({params}) -> None: return None", namespace)
        made.append(task(namespace[f"n{i}"]))
    with workflow("w") as wf:
        wf.add(*made)
        for i, j in edges:
            made[i] >> made[j]
    order = wf.graph.validate()
    expected = {
        name: plan_params(
            t, upstream=ancestors(wf.graph, name).__contains__, known=order, inputs={}
        )
        for name, t in wf.tasks.items()
        if t.params
    }
    assert plan_graph(wf.graph, order, {}) == expected


def ancestors(graph: Any, node: str) -> set[str]:
    """Every node before ``node`` along edges: the slow, obvious reference."""
    seen: set[str] = set()
    stack = [node]
    while stack:
        for pred in graph.predecessors[stack.pop()]:
            if pred not in seen:
                seen.add(pred)
                stack.append(pred)
    return seen


# --- the "filled by nothing" hint ----------------------------------------------------


async def test_unfilled_parameter_suggests_a_close_input_before_anything_runs() -> None:
    ran: list[str] = []

    @task
    async def convert(min_eur: int) -> int:
        ran.append("convert")
        return min_eur

    with workflow("w") as wf:
        src >> convert
    with pytest.raises(WorkflowDefinitionError, match="'min_eur'") as info:
        # strict_inputs=False: else the unused input is refused first (check_inputs)
        await aioflow.run(wf, inputs={"min_euro": 50}, strict_inputs=False)
    assert ran == []
    assert "did you mean" in info.value.hint
    assert "'min_euro'" in info.value.hint


async def test_unfilled_parameter_suggests_a_close_node_name() -> None:
    @task
    async def extract() -> int:
        return 1

    @task
    async def load(extrct: int) -> int:
        return extrct

    with workflow("w") as wf:
        extract >> load
    with pytest.raises(WorkflowDefinitionError, match="'extrct'") as info:
        await aioflow.run(wf)
    assert "did you mean" in info.value.hint and "'extract'" in info.value.hint


def test_unfilled_parameter_without_anything_close_has_no_guess() -> None:
    @task
    async def lonely(zzz: int) -> int:
        return zzz

    with workflow("w") as wf:
        wf.add(lonely)
    with pytest.raises(WorkflowDefinitionError) as info:
        planned(wf, {"min_euro": 1})
    assert "did you mean" not in info.value.hint
    assert "lonely.bind(zzz=...)" in info.value.hint


# --- check_inputs -------------------------------------------------------------------


@task
async def convert(min_eur: int, rate: float = 1.0, ctx: Any = None) -> float:
    return min_eur * rate


def test_check_inputs_refuses_an_input_no_task_takes_and_suggests_the_close_name() -> None:
    with pytest.raises(WorkflowDefinitionError, match="'min_euro'") as info:
        check_inputs({"convert": convert}, {"min_euro": 50})
    assert "did you mean 'min_eur'?" in info.value.hint
    assert "strict_inputs=False" in info.value.hint


def test_check_inputs_names_every_unused_input() -> None:
    with pytest.raises(WorkflowDefinitionError) as info:
        check_inputs({"convert": convert}, {"min_euro": 50, "rate": 2.0, "zzz": 1})
    message = str(info.value)
    assert "'min_euro'" in message and "'zzz'" in message and "'rate'" not in message
    assert "'min_euro': did you mean 'min_eur'?" in info.value.hint
    assert "'zzz': did you mean" not in info.value.hint


def test_check_inputs_counts_a_parameter_whatever_fills_it() -> None:
    bound = convert.bind(name="bound", min_eur=3)
    check_inputs({"bound": bound}, {"min_eur": 1, "rate": 2.0, "ctx": None})
    check_inputs({"convert": convert}, {})


def test_check_inputs_not_strict_allows_extras() -> None:
    check_inputs({"convert": convert}, {"min_euro": 50}, strict=False)
