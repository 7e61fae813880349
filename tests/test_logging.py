"""Library code is quiet by default; logs are structured and carry the run's ids."""

from __future__ import annotations

import io
from collections.abc import Iterator

import anyio
import pytest
from log_capture import json_lines, json_log_capture

import aioflow
from aioflow import TaskContext, task, workflow


@task
async def chatty(ctx: TaskContext) -> int:
    ctx.log.info("working", rows=3)
    return 3


@task(retries=aioflow.RetryPolicy(retries=1, backoff=0.0))
async def flaky(ctx: TaskContext, chatty: int) -> int:
    if ctx.attempt == 1:
        raise ConnectionError("blip")
    ctx.log.warning("second try worked")
    return chatty


def make() -> aioflow.Workflow:
    with workflow("logs") as wf:
        chatty >> flaky
    return wf


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    with json_log_capture("DEBUG") as stream:
        yield stream


async def test_nothing_is_printed_without_configuration(
    capfd: pytest.CaptureFixture[str],
) -> None:
    await aioflow.run(make())
    out, err = capfd.readouterr()
    assert out == "" and err == ""


async def test_json_logs_carry_run_task_and_attempt(json_logs: io.StringIO) -> None:
    result = await aioflow.run(make(), run_id="run-42")
    lines = json_lines(json_logs)
    assert lines, "logging was configured, so lines are expected"
    working = next(line for line in lines if line["event"] == "working")
    assert working["run_id"] == "run-42"
    assert working["task_name"] == "chatty"
    assert working["attempt"] == 1
    assert working["rows"] == 3
    assert working["level"] == "info"
    second = next(line for line in lines if line["event"] == "second try worked")
    assert second["attempt"] == 2 and second["task_name"] == "flaky"
    retry = next(line for line in lines if "retrying" in line["event"])
    assert retry["task_name"] == "flaky" and "blip" in retry["error"]
    finished = next(line for line in lines if line["event"] == "run finished")
    assert finished["status"] == "succeeded" and finished["run_id"] == "run-42"
    assert result.status == "succeeded"


@task(timeout=0.05)
async def stuck() -> None:
    await anyio.sleep(10)


@task
async def broken() -> None:
    raise ValueError("bad row")


async def test_failures_are_logged_at_their_level_with_the_error(
    json_logs: io.StringIO,
) -> None:
    with workflow("failing") as wf:
        flaky.bind(chatty=1) >> broken
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(wf, run_id="run-fail")
    with workflow("stuck") as stuck_wf:
        stuck_wf.add(stuck)
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(stuck_wf, run_id="run-stuck")
    lines = json_lines(json_logs)
    retry = next(line for line in lines if "retrying" in line["event"])
    assert retry["level"] == "warning" and retry["task_name"] == "flaky"
    assert "ConnectionError: blip" in retry["exception"]
    failed = {line["task_name"]: line for line in lines if line["event"] == "task failed"}
    assert set(failed) == {"stuck", "broken"}
    assert failed["broken"]["run_id"] == "run-fail"
    assert "ValueError: bad row" in failed["broken"]["exception"]
    assert failed["stuck"]["run_id"] == "run-stuck"
    assert "TaskTimeoutError" in failed["stuck"]["exception"]
    assert {line["level"] for line in failed.values()} == {"error"}
