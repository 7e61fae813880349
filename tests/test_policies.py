"""Group policies in runs, and the retry policy's arithmetic."""

from __future__ import annotations

import random

import anyio
import pytest

import aioflow
from aioflow import (
    AtLeast,
    Critical,
    GroupFailedError,
    GroupOutcomes,
    GroupPolicy,
    RetryPolicy,
    WorkflowFailedError,
    parallel,
    task,
    workflow,
)


@task
async def ok1() -> int:
    return 1


@task
async def ok2() -> int:
    return 2


@task
async def bad() -> int:
    raise RuntimeError("member failed")


async def test_strict_first_failure_fails_group_and_cancels_siblings() -> None:
    cancelled = anyio.Event()

    @task
    async def hangs() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    @task
    async def after(fan: dict[str, int]) -> None:
        raise AssertionError("must not run")

    with workflow("w") as wf:
        parallel(hangs, bad, name="fan") >> after
    with pytest.raises(GroupFailedError) as info:
        await aioflow.run(wf)
    err = info.value
    assert isinstance(err, WorkflowFailedError)
    assert cancelled.is_set()
    assert err.group == "fan"
    assert err.outcomes == {"hangs": "cancelled", "bad": "failed"}  # as its record says
    assert isinstance(err.errors["bad"], RuntimeError)
    assert isinstance(err.__cause__, RuntimeError)
    assert err.result is not None
    assert err.result.tasks["hangs"].status == "cancelled"
    assert err.result.tasks["after"].status == "skipped"
    assert "fan" in str(err) and "bad=failed" in str(err)


async def test_best_effort_successors_run_with_what_succeeded() -> None:
    @task
    async def merge(fan: dict[str, int], bad: int = -1) -> tuple[dict[str, int], int]:
        return fan, bad

    with workflow("w") as wf:
        parallel(ok1, ok2, bad, name="fan", policy="best_effort") >> merge
    result = await aioflow.run(wf)
    assert result["merge"] == ({"ok1": 1, "ok2": 2}, -1)
    assert result.tasks["bad"].status == "failed"
    assert result.status == "succeeded"


async def test_missing_upstream_result_without_default_fails_clearly() -> None:
    @task
    async def needs_bad(bad: int) -> int:
        return bad

    with workflow("w") as wf:
        parallel(ok1, bad, policy="best_effort") >> needs_bad
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, aioflow.MissingUpstreamResultError)
    assert "default" in info.value.__cause__.hint


@pytest.mark.parametrize(("n", "succeeds"), [(2, True), (3, False)])
async def test_at_least(n: int, succeeds: bool) -> None:
    with workflow("w") as wf:
        parallel(ok1, ok2, bad, name="fan", policy=AtLeast(n))
    if succeeds:
        assert (await aioflow.run(wf))["fan"] == {"ok1": 1, "ok2": 2}
    else:
        with pytest.raises(GroupFailedError, match="AtLeast"):
            await aioflow.run(wf)


async def test_critical_members() -> None:
    with workflow("w") as wf:
        parallel(ok1, bad, name="fan", policy=Critical(["ok1"]))
    assert (await aioflow.run(wf))["fan"] == {"ok1": 1}

    with workflow("w2") as wf2:
        parallel(ok1, bad, name="fan", policy=Critical("bad"))
    with pytest.raises(GroupFailedError) as info:
        await aioflow.run(wf2)
    assert info.value.outcomes["bad"] == "failed"


async def test_custom_group_policy() -> None:
    class Majority(GroupPolicy):
        def evaluate(self, outcomes: GroupOutcomes) -> bool:
            return len(outcomes.succeeded) * 2 > outcomes.total

    with workflow("w") as wf:
        (ok1 | ok2 | bad).with_policy(Majority())
    assert (await aioflow.run(wf)).status == "succeeded"

    with workflow("w2") as wf2:
        (ok1 | bad).with_policy(Majority())
    with pytest.raises(GroupFailedError, match="Majority"):
        await aioflow.run(wf2)


def test_group_outcomes_views() -> None:
    outcomes = GroupOutcomes({"a": "succeeded", "b": "failed", "c": "pending", "d": "cancelled"})
    assert outcomes.succeeded == ["a"]
    assert outcomes.failed == ["b", "d"]
    assert outcomes.pending == ["c"]
    assert outcomes.total == 4


def test_retry_policy_delays_grow_and_stay_bounded() -> None:
    policy = RetryPolicy(retries=10, backoff=1.0, factor=2.0, max_backoff=5.0, jitter=0.0)
    assert [policy.delay(i) for i in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(retries=3, backoff=1.0, jitter=0.5)
    rng = random.Random(7)
    for attempt in range(1, 4):
        base = min(jittered.max_backoff, 2.0 ** (attempt - 1))
        delay = jittered.delay(attempt, rng)
        assert base * 0.5 <= delay <= base


def test_retry_policy_decides_what_to_retry() -> None:
    policy = RetryPolicy(retries=2, retry_on=(ConnectionError,))
    assert policy.max_attempts == 3
    assert policy.should_retry(1, ConnectionError())
    assert policy.should_retry(2, ConnectionResetError())
    assert not policy.should_retry(3, ConnectionError())
    assert not policy.should_retry(1, ValueError())


@pytest.mark.parametrize(
    "kwargs", [{"retries": -1}, {"backoff": -1.0}, {"factor": 0.5}, {"jitter": 2.0}]
)
def test_retry_policy_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(aioflow.ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
