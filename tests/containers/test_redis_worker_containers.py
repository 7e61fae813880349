"""Issue 10's "done when", distributed: a workflow mixing in-process and container
tasks, with the channel, ctx.result and a loop inside a container, gives the same
results in-process and on a Redis worker that runs its box tasks in containers."""

from __future__ import annotations

import secrets
from pathlib import Path

import box_tasks as bt
import pytest
from docker_engine import containers
from redis_server import RedisServer
from worker_processes import WorkerProcesses

import aioflow
from aioflow import workflow
from aioflow.handlers import DockerHandler


def mixed() -> aioflow.Workflow:
    with workflow("mixed-box") as wf:
        bt.produce >> bt.consume >> bt.check  # inline, box, inline
        bt.count >> bt.after  # a loop in a box, then inline
    return wf


async def test_a_redis_worker_runs_box_tasks_in_containers(
    box_image: str,
    docker_host: str,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = await aioflow.run(mixed(), handlers={"box": DockerHandler(box_image)})
    prefix = f"box{secrets.token_hex(3)}"
    url = f"{redis_server.url}?prefix={prefix}"
    key = secrets.token_hex(32)
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", key)
    env = {
        "AIOFLOW_SECRET_KEY": key,
        "DOCKER_HOST": docker_host,
        "AIOFLOW_TEST_IMAGE": box_image,
        "PYTHONPATH": str(Path(bt.__file__).parent),
    }
    with WorkerProcesses(
        url,
        imports=["box_tasks"],
        count=1,
        env=env,
        prefix=prefix,
        extra=["--handlers", "box_tasks:handlers"],
        log_dir=tmp_path,
    ):
        result = await aioflow.run(mixed(), backend=url)
    same = {k: v for k, v in result.results.items() if k != "consume"}
    assert same == {k: v for k, v in expected.results.items() if k != "consume"}
    inside, before = result["consume"], expected["consume"]
    assert inside["run_id"] == result.run_id
    assert {k: v for k, v in inside.items() if k != "run_id"} == {
        k: v for k, v in before.items() if k != "run_id"
    }
    assert result["count"] == 4 and result["after"] == 40
    assert await containers(docker_host) == []  # the worker's containers are gone too
