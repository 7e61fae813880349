"""Issue 9's "done when": the mixed workflow gives the same results in-process and on
Redis with two worker processes, one of them killed with ``kill -9`` mid-run."""

from __future__ import annotations

import secrets
from pathlib import Path

import anyio
import pytest
from redis_server import RedisServer
from worker_processes import WorkerProcesses

import aioflow
from aioflow import events

from . import flows


@pytest.fixture(autouse=True)
def _fresh() -> None:
    flows.reset()


async def test_the_mixed_workflow_survives_a_worker_killed_mid_run(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"crash{secrets.token_hex(3)}"
    url = f"{redis_server.url}?prefix={prefix}&visibility_timeout=2"
    key = secrets.token_hex(32)
    monkeypatch.setenv("AIOFLOW_SECRET_KEY", key)
    env = {"AIOFLOW_SECRET_KEY": key, flows.STATE_ENV: str(flows.STATE)}
    expected = (await aioflow.run(flows.mixed_with_naps())).results
    flows.reset()
    with WorkerProcesses(
        url, imports=["backends.flows"], count=2, env=env, prefix=prefix, log_dir=tmp_path
    ) as workers:
        async with aioflow.start(flows.mixed_with_naps(), backend=url) as handle:
            killed = None
            with anyio.fail_after(30):
                async for event in handle.events():
                    if killed is None and isinstance(event, events.TaskStarted):
                        pids = flows.napping_pids() & set(workers.pids)
                        if pids:  # a worker naps: kill it, naps in flight and all
                            killed = workers.pids.index(min(pids))
                            workers.kill(killed)
                result = await handle.result()
    assert killed is not None, "no nap started on a worker"
    flows.assert_same_results(result, expected)
    assert all(result[f"nap{i}"] == "rested" for i in range(8))
    assert {r.status for r in result.tasks.values()} == {"succeeded"}
