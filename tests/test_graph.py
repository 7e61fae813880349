"""Composition (>>, |, chain, parallel, wf.add), validation and graph export."""

from __future__ import annotations

import pytest

import aioflow
from aioflow import AtLeast, Critical, WorkflowDefinitionError, chain, parallel, task, workflow


@task
async def a() -> str:
    return "a"


@task
async def b() -> str:
    return "b"


@task
async def c() -> str:
    return "c"


@task
async def d() -> str:
    return "d"


def edges(wf: aioflow.Workflow) -> set[tuple[str, str]]:
    return {(s, t) for s, succ in wf.graph.successors.items() for t in succ}


def test_rshift_chains_and_registers_tasks() -> None:
    with workflow("w") as wf:
        a >> b >> c
    assert set(wf.tasks) == {"a", "b", "c"}
    assert edges(wf) == {("a", "b"), ("b", "c")}


def test_several_statements_build_a_diamond() -> None:
    with workflow("w") as wf:
        a >> b
        a >> c
        b >> d
        c >> d
    assert edges(wf) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert wf.graph.predecessors["d"] == ["b", "c"]


def test_chain_equals_rshift() -> None:
    with workflow("w") as wf:
        chain(a, b, c)
    assert edges(wf) == {("a", "b"), ("b", "c")}


def test_pipe_makes_one_group_with_barrier() -> None:
    with workflow("w") as wf:
        a >> (b | c | d)
    assert len(wf.groups) == 1
    (group,) = wf.groups.values()
    assert group.member_names == ["b", "c", "d"]
    assert ("a", "b") in edges(wf) and ("a", "d") in edges(wf)
    assert {("b", group.name), ("c", group.name), ("d", group.name)} <= edges(wf)


def test_group_successor_waits_on_barrier() -> None:
    with workflow("w") as wf:
        g = parallel(b, c, name="fetch", policy="best_effort")
        a >> g >> d
    assert (
        wf.groups["fetch"].policy == aioflow.BestEffort()
        or repr(wf.groups["fetch"].policy) == '"best_effort"'
    )
    assert ("fetch", "d") in edges(wf)
    assert ("b", "d") not in edges(wf)


def test_with_policy_replaces_policy() -> None:
    with workflow("w") as wf:
        g = (a | b).with_policy(AtLeast(1))
    assert wf.groups[g.name].policy == AtLeast(1)


def test_wf_add_registers_lone_tasks() -> None:
    with workflow("w") as wf:
        wf.add(a, b)
    assert set(wf.tasks) == {"a", "b"}
    assert edges(wf) == set()


def test_composing_outside_a_workflow_is_an_error() -> None:
    with pytest.raises(WorkflowDefinitionError, match="workflow"):
        a >> b


def test_group_members_must_be_tasks() -> None:
    with pytest.raises(WorkflowDefinitionError, match="members must be tasks"), workflow("w"):
        parallel(a >> b, c)


def test_duplicate_names_reported_at_validation() -> None:
    other_a = b.bind(name="a")
    with workflow("w") as wf:
        a >> other_a
    with pytest.raises(WorkflowDefinitionError, match="'a'") as info:
        wf.validate()
    assert "bind(name=" in info.value.hint


def test_static_cycle_is_named() -> None:
    with workflow("w") as wf:
        a >> b >> c
        c >> a
    with pytest.raises(WorkflowDefinitionError, match="cycle") as info:
        wf.validate()
    message = str(info.value)
    for name in ("a", "b", "c"):
        assert name in message
    assert "next_iteration" in info.value.hint


async def test_static_cycle_is_raised_by_run_before_anything_runs() -> None:
    ran: list[str] = []

    @task
    async def x() -> None:
        ran.append("x")

    @task
    async def y() -> None:
        ran.append("y")

    with workflow("w") as wf:
        x >> y >> x
    with pytest.raises(WorkflowDefinitionError):
        await aioflow.run(wf)
    assert ran == []


def test_empty_workflow_is_invalid() -> None:
    with workflow("w") as wf:
        pass
    with pytest.raises(WorkflowDefinitionError, match="no tasks"):
        wf.validate()


def test_invalid_group_policy_members() -> None:
    with workflow("w") as wf:
        parallel(a, b, policy=Critical(["zzz"]))
    with pytest.raises(WorkflowDefinitionError, match="zzz"):
        wf.validate()
    with workflow("w2") as wf2:
        parallel(a, b, policy=AtLeast(3))
    with pytest.raises(WorkflowDefinitionError, match="AtLeast"):
        wf2.validate()


def test_unknown_policy_name() -> None:
    with pytest.raises(aioflow.ConfigurationError, match="unknown group policy"), workflow("w"):
        parallel(a, b, policy="sometimes")


def test_mermaid_and_dot_export() -> None:
    with workflow("etl") as wf:
        a >> parallel(b, c, name="fan") >> d
    mermaid = wf.to_mermaid()
    assert mermaid.splitlines()[0:4] == ["---", "title: etl", "---", "flowchart TD"]
    for name in ("a", "b", "c", "d", "fan"):
        assert f'"{name}"' in mermaid or f'"{name}:' in mermaid
    assert mermaid.count("-->") == len(edges(wf))
    dot = wf.to_dot()
    assert dot.startswith('digraph "etl" {')
    assert '"a" -> "b";' in dot
    assert '"fan" -> "d";' in dot
    assert "cluster_0" in dot
    assert dot.count("->") == len(edges(wf))


def test_export_escapes_odd_names() -> None:
    odd = a.bind(name='we"ird name')
    with workflow("w") as wf:
        odd >> b
    assert "#quot;" in wf.to_mermaid()
    assert '"we\\"ird name" -> "b";' in wf.to_dot()


def test_validation_follows_changes_after_a_first_validate() -> None:
    with workflow("w") as wf:
        a >> b
    wf.validate()
    with wf:
        b >> a
    with pytest.raises(WorkflowDefinitionError, match="cycle"):
        wf.validate()


def test_unnamed_groups_are_named_by_their_workflow_in_order() -> None:
    def build() -> aioflow.Workflow:
        with workflow("w") as wf:
            a >> (b | c) >> d
            parallel(a.bind(name="a2"), b.bind(name="b2"))
        return wf

    with workflow("noise") as noise:
        parallel(a, b)  # groups made elsewhere do not shift the names
    first, second = build(), build()
    assert list(first.groups) == list(second.groups) == ["group_1", "group_2"]
    assert list(noise.groups) == ["group_1"]


def test_a_long_chain_can_be_led_into_and_printed_without_recursion() -> None:
    with workflow("w") as wf:
        long = chain(*[a.bind(name=f"t{i}") for i in range(3_000)])
        b >> long
    assert ("b", "t0") in edges(wf)
    assert repr(long) == "<Flow <Task t0> >> ... >> <Task t2999>>"


def test_wf_add_of_a_flow_registers_its_parts_in_definition_order() -> None:
    with workflow("w1"):
        flow = a >> (b | c) >> d
    with workflow("w2") as w2:
        w2.add(flow)
    assert list(w2.tasks) == ["a", "b", "c", "d"]
    (group,) = w2.groups
    assert edges(w2) == {
        ("a", "b"),
        ("a", "c"),
        ("b", group),
        ("c", group),
        (group, "d"),
    }


def test_wf_add_of_a_flow_into_its_own_workflow_changes_nothing() -> None:
    with workflow("w") as wf:
        flow = a >> b
        wf.add(flow)
    assert edges(wf) == {("a", "b")}
