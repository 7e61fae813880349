"""The coordinator killed mid-run (SIGKILL), then resumed (``aioflow.resume`` and
``aioflow resume``) with the workers still running: tasks journaled as finished
before the kill do not run again, the result is complete.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from worker_processes import TESTS, WorkerProcesses

import aioflow
from aioflow import RunStatus
from aioflow.stores import RecordKind, open_run_store

from . import coordinated
from .conftest import worker_logs
from .helpers import cli, wait_for

StartWorkers = Callable[..., WorkerProcesses]
NAMES = [f"c{i}" for i in range(4)] + [f"f{i:02d}" for i in range(10)]


def executions(state: Path) -> dict[str, int]:
    counts = dict.fromkeys(NAMES, 0)
    for path in state.iterdir():
        counts[path.name.split(".")[0]] += 1
    return counts


async def _kill_coordinator_mid_run(store_url: str, run_id: str, state: Path) -> set[str]:
    """Start the coordinator, SIGKILL it once some tasks are journaled as finished;
    return the names of those that were (per the journal)."""
    coordinator = subprocess.Popen(  # noqa: ASYNC220 - it starts at once
        [sys.executable, "-m", "distributed.coordinator", store_url, run_id],
        cwd=TESTS,
        env={**os.environ, coordinated.STATE_ENV: str(state)},
        stdin=subprocess.DEVNULL,
    )
    try:
        async with open_run_store(store_url) as store:

            async def enough() -> bool:
                try:
                    info = await store.get_run(run_id)
                except aioflow.CheckpointError:
                    return False  # not begun yet
                return info.tasks_succeeded >= 6  # the chain and two of the fan-out

            await wait_for(enough, within=20, interval=0.01)
            os.kill(coordinator.pid, signal.SIGKILL)
            assert await anyio.to_thread.run_sync(coordinator.wait) == -signal.SIGKILL
            info = await store.get_run(run_id)
            assert info.status == "running"  # it died: nothing finished the run
            records = await store.read(run_id)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
    return {
        r.task_name
        for r in records
        if r.kind is RecordKind.TASK_FINISHED and r.status == "succeeded" and r.task_name
    }


@pytest.mark.parametrize("how", ["api", "cli"])
async def test_killed_coordinator_is_resumed_without_rerunning_finished_tasks(
    redis_url: str,
    prefix: str,
    start_workers: StartWorkers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    # A store URL is a backend URL too (prefix= is an option of both).
    url = f"{redis_url}?prefix={prefix}"
    start_workers(url, count=2, concurrency=8)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv(coordinated.STATE_ENV, str(state))
    run_id = secrets.token_hex(8)
    with anyio.fail_after(40):
        finished = await _kill_coordinator_mid_run(url, run_id, state)
        assert set(NAMES[:4]) <= finished < set(NAMES), finished
        if how == "api":
            result = await aioflow.resume(url, coordinated.wf, run_id=run_id)
        else:
            code, out, err = await cli(
                capsys, "resume", url, "distributed.coordinated:wf", "--run-id", run_id, "--json"
            )
            assert code == 0, (out, err, worker_logs(tmp_path))
            document = json.loads(out)
            assert document["status"] == "succeeded", document
    counts = executions(state)
    # Journaled as finished before the kill: never run again.
    assert {name: counts[name] for name in finished} == dict.fromkeys(finished, 1)
    # The others ran at least once (those running at the kill, again after it).
    assert all(counts[name] >= 1 for name in NAMES), counts
    if how == "api":
        assert result.status is RunStatus.SUCCEEDED
        assert {name: result[name] for name in NAMES} == {
            name: int(name[1:]) + 1000 for name in NAMES
        }
    async with open_run_store(url) as store:
        info = await store.get_run(run_id)
    assert (info.status, info.tasks_succeeded) == ("succeeded", len(NAMES))
    print(f"coordinator killed after {len(finished)} tasks; executions {counts}")
