"""DockerHandler against a real Docker Engine: success, every failure path, the context
inside, the warm pool, and cleanup (no container is ever left behind)."""

from __future__ import annotations

import logging
import time

import anyio
import box_tasks as bt
import pytest
from docker_engine import containers

import aioflow
from aioflow import workflow
from aioflow.errors import (
    BackendUnavailableError,
    ConfigurationError,
    ContainerError,
    ContainerMemoryError,
    ImageNotFoundError,
    RemoteTaskError,
    TaskTimeoutError,
    WorkflowFailedError,
)
from aioflow.handlers import DockerHandler

pytestmark = pytest.mark.usefixtures("box_image")


def one(task: aioflow.Task) -> aioflow.Workflow:  # type: ignore[type-arg]
    with workflow(f"wf-{task.name}") as wf:
        wf.add(task)
    return wf


async def wait_for_container(host: str, run_id: str) -> None:
    for _ in range(400):
        if await containers(host, **{"aioflow.run_id": run_id}):
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"no container of run {run_id} appeared")


async def test_success_returns_the_value_and_forwards_stdout_to_the_log(
    box_image: str, docker_host: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioflow")
    handler = DockerHandler(box_image)
    result = await aioflow.run(one(bt.add.bind(x=2, y=3)), handlers={"box": handler})
    assert result["add"] == 5
    lines = [r.getMessage() for r in caplog.records if r.name == "aioflow.container"]
    assert any("adding 2 and 3" in line and result.run_id in line for line in lines), lines
    assert await containers(docker_host) == []  # removed after the call
    assert handler._docker is None  # the run closed the handler's client (R2)


@pytest.mark.parametrize("pool_size", [0, 1])
async def test_every_line_a_call_writes_is_forwarded_with_its_ids(
    box_image: str, caplog: pytest.LogCaptureFixture, pool_size: int
) -> None:
    """Docker reads a container's stdout (the result) and stderr (the task's lines)
    apart: the result may overtake the last lines. They were lost with a one-shot
    container, or forwarded with the next call's ids from a pool's."""
    caplog.set_level(logging.INFO, logger="aioflow")
    count = 20_000
    with workflow("chatty") as wf:
        bt.chatty.bind(name="first", lines=count) >> bt.chatty.bind(name="second", lines=count)
    result = await aioflow.run(wf, handlers={"box": DockerHandler(box_image, pool_size=pool_size)})
    assert (result["first"], result["second"]) == (count, count)
    forwarded: dict[str, list[str]] = {"first": [], "second": []}
    for r in caplog.records:
        if r.name == "aioflow.container" and isinstance(r.msg, dict) and "line" in r.msg:
            forwarded[r.msg["task_name"]].append(r.msg["line"])
    for name in ("first", "second"):
        assert len(forwarded[name]) == count, (name, forwarded[name][-3:])
        assert forwarded[name][-1] == f"chatty line {count - 1}"


async def test_exception_comes_back_with_its_remote_traceback_chained(box_image: str) -> None:
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(bt.boom), handlers={"box": DockerHandler(box_image)})
    remote = info.value.__cause__
    assert isinstance(remote, RemoteTaskError)
    assert remote.remote_type == "ValueError"
    assert "boom in the box (attempt 1)" in remote.remote_traceback
    assert "box_tasks.py" in remote.remote_traceback  # the frame inside the container
    assert remote.task_name == "boom"


async def test_trusted_image_raises_the_tasks_own_exception(box_image: str) -> None:
    handler = DockerHandler(box_image, allow_pickle=True)
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(bt.boom), handlers={"box": handler})
    error = info.value.__cause__
    assert isinstance(error, ValueError)
    assert isinstance(error.__cause__, RemoteTaskError)
    assert "box_tasks.py" in error.__cause__.remote_traceback


async def test_timeout_kills_the_container_at_the_deadline(
    box_image: str, docker_host: str
) -> None:
    task = bt.sleeper.bind(name="slow", seconds=60.0).with_options(timeout=1.5)
    t0 = time.monotonic()
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(task), handlers={"box": DockerHandler(box_image)})
    assert isinstance(info.value.__cause__, TaskTimeoutError)
    assert time.monotonic() - t0 < 10
    assert await containers(docker_host) == []


async def test_memory_limit_hit_says_exit_137_and_names_the_limit(box_image: str) -> None:
    handler = DockerHandler(box_image, memory="64m")
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(bt.hog), handlers={"box": handler})
    error = info.value.__cause__
    assert isinstance(error, ContainerMemoryError)
    assert error.exit_code == 137
    assert "137" in str(error) and "64m" in str(error) and "memory" in str(error)


async def test_a_container_that_exits_reports_its_status(box_image: str) -> None:
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(bt.crash), handlers={"box": DockerHandler(box_image)})
    error = info.value.__cause__
    assert type(error) is ContainerError
    assert error.exit_code == 7 and "status 7" in str(error)


async def test_cancelling_the_run_mid_task_removes_the_container(
    box_image: str, docker_host: str
) -> None:
    handler = DockerHandler(box_image)
    async with aioflow.start(one(bt.sleeper), handlers={"box": handler}) as handle:
        await wait_for_container(docker_host, handle.run_id)
        await handle.cancel()
    assert await containers(docker_host) == []


async def test_engine_unreachable_is_backend_unavailable_with_a_docker_host_hint(
    box_image: str, tmp_path: object
) -> None:
    handler = DockerHandler(box_image, docker_host="unix:///nonexistent/aioflow/docker.sock")
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(bt.noop), handlers={"box": handler})
    error = info.value.__cause__
    assert isinstance(error, BackendUnavailableError)
    assert "DOCKER_HOST" in error.hint


async def test_missing_image_says_how_to_build_it() -> None:
    handler = DockerHandler("aioflow-tests:no-such-image")
    with pytest.raises(WorkflowFailedError) as info:
        await aioflow.run(one(bt.noop), handlers={"box": handler})
    error = info.value.__cause__
    assert isinstance(error, ImageNotFoundError)
    assert "build-image" in error.hint and "docs/containers.md" in error.hint


@pytest.mark.parametrize("backend", [None, "memory://?serialize=true"])
async def test_channel_results_and_inputs_inside_the_container(
    box_image: str, backend: str | None
) -> None:
    with workflow("ctx") as wf:
        bt.produce >> bt.consume >> bt.check
    result = await aioflow.run(
        wf,
        inputs={"mode": "fast"},
        backend=backend,
        handlers={"box": DockerHandler(box_image)},
        strict_inputs=False,
    )
    inside = result["consume"]
    assert inside["doubled"] == 42 and inside["arg"] == 21
    assert inside["hits"] == 3 and inside["missing"] == "default"
    assert inside["unknown"] == "UnknownTaskError"
    assert inside["inputs"] == {"mode": "fast"}
    assert inside["run_id"] == result.run_id and inside["task_name"] == "consume"
    assert inside["keys"] == ["doubled", "hits", "seen"]
    assert result["check"] == [42, ["consume"], 3]


async def test_control_requests_from_inside_reach_the_engine(box_image: str) -> None:
    with workflow("loop") as wf:
        bt.count >> bt.after
    result = await aioflow.run(wf, handlers={"box": DockerHandler(box_image, pool_size=1)})
    assert result["count"] == 4 and result["after"] == 40
    with workflow("stop") as wf:
        bt.stop_here >> bt.never
    stopped = await aioflow.run(wf, handlers={"box": DockerHandler(box_image)})
    assert stopped["stop_here"] == "stopped" and "never" not in stopped.results


async def test_hardened_defaults_and_no_signing_key_inside(
    box_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", "k" * 40)
    handler = DockerHandler(box_image, env={"MODE": "test"})
    seen = (await aioflow.run(one(bt.inspect_box), handlers={"box": handler}))["inspect_box"]
    assert (seen["uid"], seen["gid"]) == (65534, 65534)
    assert int(seen["cap_eff"], 16) == 0 and seen["no_new_privs"] == "1"
    assert seen["root_writable"] is False
    assert seen["interfaces"] == ["lo"]
    assert seen["mode"] == "test"
    assert not [name for name in seen["env"] if name.startswith("AIOFLOW_SECRET")]
    with pytest.raises(ConfigurationError, match="signing key"):
        DockerHandler(box_image, env={"AIOFLOW_SECRET_KEY": "x" * 40})


async def test_warm_pool_serves_200_tasks_on_at_most_n_containers(
    box_image: str, docker_host: str
) -> None:
    handler = DockerHandler(box_image, pool_size=4, max_tasks_per_container=80)
    with workflow("pool") as wf:
        wf.add(*(bt.where.bind(name=f"w{i}") for i in range(200)))
    result = await aioflow.run(wf, handlers={"box": handler})
    hosts = {result[f"w{i}"] for i in range(200)}
    assert 3 <= len(hosts) <= 8, hosts  # 4 at a time, each replaced after 80 calls
    assert await containers(docker_host) == []  # the run closed the pool


async def test_a_pool_container_past_its_limit_serves_on_while_its_successor_starts(
    box_image: str, docker_host: str
) -> None:
    handler = DockerHandler(box_image, pool_size=1, max_tasks_per_container=3)
    calls = [bt.where_after.bind(name=f"c{i}", seconds=0.15) for i in range(14)]
    with workflow("recycle") as wf:
        aioflow.chain(*calls)  # one call after another, on the one pooled container
    result = await aioflow.run(wf, handlers={"box": handler})
    hosts = [result[f"c{i}"] for i in range(14)]
    # The 4th call comes at once after the 3rd: a successor cannot be up yet, so the
    # old container served it (no call waited for a start); later ones moved over.
    assert hosts[3] == hosts[2] == hosts[0]
    assert len(set(hosts)) >= 2, hosts
    changes = [i for i in range(1, 14) if hosts[i] != hosts[i - 1]]
    assert all(hosts[i] not in hosts[:i] for i in changes)  # never back to an old one
    assert await containers(docker_host) == []


async def test_after_50_failing_runs_not_one_container_is_left(
    box_image: str, docker_host: str
) -> None:
    cold = DockerHandler(box_image)
    pooled = DockerHandler(box_image, pool_size=2)
    failing = [
        bt.boom,
        bt.crash,
        bt.sleeper.bind(name="late", seconds=30.0).with_options(timeout=0.5),
    ]
    failures = 0

    async def fail(index: int, limit: anyio.CapacityLimiter) -> None:
        nonlocal failures
        async with limit:
            handler = pooled if index % 2 else cold
            try:
                await aioflow.run(one(failing[index % 3]), handlers={"box": handler})
            except WorkflowFailedError:
                failures += 1

    limit = anyio.CapacityLimiter(8)
    async with anyio.create_task_group() as tg:
        for index in range(50):
            tg.start_soon(fail, index, limit)
    assert failures == 50
    assert await containers(docker_host) == []
