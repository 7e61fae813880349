"""Regression tests for definition defects of issue 6 (items 4, 5, 15, 16, 19).

Each test failed before its fix. They use the public API (aioflow.run, workflow,
wf.validate()) except where the behaviour is a function the engine calls.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import aioflow
from aioflow import AtLeast, WorkflowDefinitionError, chain, parallel, task, workflow


def edges(wf: aioflow.Workflow) -> set[tuple[str, str]]:
    return {(s, t) for s, succ in wf.graph.successors.items() for t in succ}


# --- item 4: an empty group is judged at once, it does not cut the graph ------------


@task
async def a() -> str:
    return "a"


@task
async def b() -> str:
    return "b"


def test_item4_an_edge_into_an_empty_group_leads_to_its_barrier() -> None:
    with workflow("w") as wf:
        a >> parallel(*[], name="g") >> b
    assert edges(wf) == {("a", "g"), ("g", "b")}
    assert wf.graph.validate() == ["a", "g", "b"]


def test_item4_an_empty_group_may_be_the_first_node() -> None:
    with workflow("w") as wf:
        parallel(name="g") >> b
    assert edges(wf) == {("g", "b")}
    assert wf.graph.validate() == ["g", "b"]


def test_item4_empty_groups_in_a_row_and_between_groups_keep_the_order() -> None:
    with workflow("w") as wf:
        a >> parallel(name="g1") >> parallel(name="g2") >> (b | b.bind(name="b2"))
    assert {("a", "g1"), ("g1", "g2"), ("g2", "b"), ("g2", "b2")} <= edges(wf)
    assert wf.graph.validate()[:3] == ["a", "g1", "g2"]


def test_item4_an_empty_group_is_no_group_member() -> None:
    with pytest.raises(WorkflowDefinitionError, match="members must be tasks"), workflow("w"):
        parallel(chain(parallel(name="g")), a)


async def test_item4_an_empty_group_after_a_task_succeeds_and_its_successor_runs() -> None:
    @task
    async def after(g: dict[str, Any]) -> dict[str, Any]:
        return g

    with workflow("w") as wf:
        a >> parallel(*[], name="g", policy="best_effort") >> after
    result = await aioflow.run(wf)
    assert result["g"] == {}
    assert result["after"] == {}


async def test_item4_an_empty_first_group_succeeds_and_its_successor_runs() -> None:
    @task
    async def after(g: dict[str, Any]) -> dict[str, Any]:
        return g

    with workflow("w") as wf:
        parallel(name="g") >> after
    result = await aioflow.run(wf)
    assert result["after"] == {}


def test_item4_an_empty_group_refuses_at_least_one() -> None:
    with workflow("w") as wf:
        a >> parallel(name="g", policy=AtLeast(1)) >> b
    with pytest.raises(WorkflowDefinitionError, match="AtLeast"):
        wf.validate()


# --- item 5: wf.add(flow) keeps the flow's edges ------------------------------------


async def test_item5_adding_a_flow_to_another_workflow_keeps_its_edges() -> None:
    ran: list[str] = []

    @task
    async def first() -> int:
        await anyio.sleep(0.02)  # unordered, `second` would start first
        ran.append("first")
        return 41

    @task
    async def second(first: int) -> int:
        ran.append("second")
        return first + 1

    with workflow("w1"):
        flow = first >> second
    with workflow("w2") as w2:
        w2.add(flow)
    result = await aioflow.run(w2)
    assert result["second"] == 42
    assert ran == ["first", "second"]


async def test_item5_adding_a_chain_keeps_its_edges_and_definition_order() -> None:
    ran: list[str] = []

    @task
    async def step(n: int) -> None:
        await anyio.sleep(0.001 * (5 - n))  # later steps are quicker
        ran.append(f"s{n}")

    with workflow("w1"):
        flow = chain(*[step.bind(name=f"s{n}", n=n) for n in range(5)])
    w2 = workflow("w2").add(flow)  # also outside a block
    assert list(w2.tasks) == [f"s{n}" for n in range(5)]
    await aioflow.run(w2)
    assert ran == [f"s{n}" for n in range(5)]


def test_item5_adding_a_fragment_with_groups_keeps_every_edge() -> None:
    with workflow("w1") as w1:
        flow = a >> parallel(b, b.bind(name="b2"), name="fan") >> a.bind(name="end")
    with workflow("w2") as w2:
        w2.add(flow)
    assert edges(w2) == edges(w1)
    assert w2.graph.validate() == w1.graph.validate()


def test_item5_adding_a_very_long_chain_does_not_recurse() -> None:
    with workflow("w1") as w1:
        flow = chain(*[a.bind(name=f"t{i}") for i in range(5_000)])
    w2 = workflow("w2").add(flow)
    assert edges(w2) == edges(w1)
    assert len(edges(w2)) == 4_999


# --- item 15: a group listing a task twice ------------------------------------------


async def test_item15_a_group_listing_a_task_twice_is_refused_before_anything_runs() -> None:
    ran: list[str] = []

    @task
    async def twice() -> None:
        ran.append("twice")

    with workflow("w") as wf:
        parallel(twice, twice, policy=AtLeast(2))
    with pytest.raises(WorkflowDefinitionError, match="'twice'") as info:
        wf.validate()
    assert "bind(name=" in info.value.hint
    with pytest.raises(WorkflowDefinitionError, match="'twice'"):
        await aioflow.run(wf)
    assert ran == []


def test_item15_pipe_with_the_same_task_twice_is_refused() -> None:
    with workflow("w") as wf:
        a >> (b | b | a.bind(name="c"))
    with pytest.raises(WorkflowDefinitionError, match="lists task 'b' more than once"):
        wf.validate()


# --- item 16: run inputs and unfilled parameters ------------------------------------


async def test_item16_an_input_no_task_takes_is_refused_before_anything_runs() -> None:
    ran: list[str] = []

    @task
    async def convert(min_eur: int = 10) -> int:
        ran.append("convert")
        return min_eur

    with workflow("w") as wf:
        a >> convert
    with pytest.raises(WorkflowDefinitionError, match="'min_euro'") as info:
        await aioflow.run(wf, inputs={"min_euro": 50})
    assert ran == []
    assert "did you mean 'min_eur'?" in info.value.hint
    result = await aioflow.run(wf, inputs={"min_euro": 50}, strict_inputs=False)
    assert result["convert"] == 10


async def test_item16_unfilled_parameter_hint_suggests_the_close_input() -> None:
    ran: list[str] = []

    @task
    async def convert(min_eur: int) -> int:
        ran.append("convert")
        return min_eur

    with workflow("w") as wf:
        a >> convert
    with pytest.raises(WorkflowDefinitionError, match="filled by nothing") as info:
        await aioflow.run(wf, inputs={"min_euro": 50}, strict_inputs=False)
    assert ran == []
    assert "did you mean" in info.value.hint and "'min_euro'" in info.value.hint


# --- item 19: two different functions with one name ---------------------------------


def _step_of_module_one() -> aioflow.Task[..., Any]:
    @task
    async def step() -> int:
        return 1

    return step


def _step_of_module_two() -> aioflow.Task[..., Any]:
    @task
    def step() -> int:
        return 2

    return step


def test_item19_two_functions_named_alike_get_a_task_name_hint_saying_where() -> None:
    one, two = _step_of_module_one(), _step_of_module_two()
    with workflow("w") as wf:
        one >> two
    with pytest.raises(
        WorkflowDefinitionError, match="two different nodes are named 'step'"
    ) as info:
        wf.validate()
    hint = info.value.hint
    assert "@task(name=" in hint
    for fn in (one.fn, two.fn):
        code = fn.__code__
        assert f"{fn.__module__}:{fn.__qualname__}" in hint
        assert f"{code.co_filename}:{code.co_firstlineno}" in hint


def test_item19_two_copies_of_one_function_keep_the_bind_hint() -> None:
    with workflow("w") as wf:
        a >> a.bind()  # a copy without a new name
    with pytest.raises(WorkflowDefinitionError, match="'a'") as info:
        wf.validate()
    assert "a.bind(name=" in info.value.hint
    assert "@task(name=" not in info.value.hint


def test_item19_a_function_without_code_is_named_by_module_and_qualname() -> None:
    class Step:
        __name__ = "step"

        def __call__(self) -> int:
            return 3

    one = _step_of_module_one()
    other = task(Step())
    with workflow("w") as wf:
        one >> other
    with pytest.raises(WorkflowDefinitionError) as info:
        wf.validate()
    assert f"{__name__}:{Step.__qualname__}" in info.value.hint
