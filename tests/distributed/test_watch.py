"""Live progress of distributed runs: what the coordinator publishes to Redis, and
``aioflow watch RUN_ID --backend URL`` following it from another process.

The runs execute on real ``aioflow worker`` processes (they import this module for
its tasks); a run is held open mid-way by tasks that block on a Redis list the test
pushes to (``BLPOP``), so the test decides when it ends.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from log_capture import json_lines, json_log_capture
from rich.console import Console
from worker_processes import WorkerProcesses

import aioflow
from aioflow import RunStatus, WorkflowCancelledError, WorkflowFailedError
from aioflow._cli.progress import ProgressDisplay
from aioflow._progress import ProgressSnapshot

from . import tasks
from .helpers import cli

StartWorkers = Callable[..., WorkerProcesses]
TESTS = Path(__file__).resolve().parent.parent
THIS = "distributed.test_watch"  # how the workers import this module


# --- tasks (run on the workers) ---------------------------------------------------------


@aioflow.task
async def gated(redis_url: str, gate: str) -> str:
    """Says it started (``<gate>:started``), then waits for an item on ``gate``."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.rpush(f"{gate}:started", b"1")
        await client.blpop([gate], timeout=30)
    finally:
        await client.aclose()
    return "released"


@aioflow.task
async def boom() -> None:
    raise ValueError("boom")


def held_open(redis_url: str, gate: str, *, quick: int = 4, held: int = 2) -> aioflow.Workflow:
    """``quick`` tasks that finish at once and ``held`` that wait for the gate."""
    with aioflow.workflow("held") as wf:
        aioflow.parallel(
            *(tasks.quick.bind(name=f"q{i}", index=i) for i in range(quick)),
            *(gated.bind(name=f"g{i}", redis_url=redis_url, gate=gate) for i in range(held)),
            name="all",
        )
    return wf


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.fixture
def workers(url: str, start_workers: StartWorkers) -> WorkerProcesses:
    return start_workers(url, count=1, concurrency=8, extra=["--import", THIS])


def progress_key(prefix: str, run_id: str) -> str:
    return f"{prefix}:run:{{{run_id}}}:progress"


async def latest(client: aioredis.Redis, prefix: str, run_id: str) -> dict[str, Any]:
    entries: Any = await client.xrevrange(progress_key(prefix, run_id), "+", "-", count=1)
    assert entries, "no progress snapshot"
    document: dict[str, Any] = json.loads(entries[0][1][b"d"])
    return document


async def wait_started(client: aioredis.Redis, gate: str, count: int) -> None:
    for _ in range(count):
        assert await client.blpop([f"{gate}:started"], timeout=20), "a gated task did not start"


@asynccontextmanager
async def watch_process(*argv: str) -> AsyncIterator[tuple[Process, BufferedByteReceiveStream]]:
    """``python -m aioflow watch ARGV``: the process and its stdout, line by line."""
    process = await anyio.open_process(
        [sys.executable, "-m", "aioflow", "watch", *argv],
        cwd=TESTS,
        env=os.environ.copy(),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        yield process, BufferedByteReceiveStream(process.stdout)
    finally:
        if process.returncode is None:
            process.terminate()  # by its handle: the process this test started
        await process.aclose()


async def next_snapshot(stdout: BufferedByteReceiveStream) -> dict[str, Any]:
    line = await stdout.receive_until(b"\n", 1 << 20)
    document: dict[str, Any] = json.loads(line)
    return document


@pytest.fixture
def warnings_log() -> Iterator[io.StringIO]:
    with json_log_capture("WARNING") as stream:
        yield stream


# --- aioflow watch -------------------------------------------------------------------------


async def test_watch_attaches_mid_run_and_follows_it_to_the_end(
    url: str, redis_url: str, workers: WorkerProcesses, client: aioredis.Redis
) -> None:
    run_id = secrets.token_hex(8)
    gate = f"gate-{run_id}"
    with anyio.fail_after(40):
        async with aioflow.start(held_open(redis_url, gate), backend=url, run_id=run_id) as run:
            await wait_started(client, gate, 2)
            async with watch_process(run_id, "--backend", url, "--json") as (process, stdout):
                # Attached mid-run: the quick tasks are done, the gated ones run.
                seen = await next_snapshot(stdout)
                assert seen["run_id"] == run_id and seen["workflow"] == "held"
                assert seen["status"] == "running" and seen["total"] == 6
                while seen["counts"]["succeeded"] < 4 or seen["counts"]["running"] < 2:
                    seen = await next_snapshot(stdout)
                    assert seen["status"] == "running"
                assert seen["counts"] == {
                    "queued": 0,
                    "running": 2,
                    "succeeded": 4,
                    "failed": 0,
                    "cancelled": 0,
                    "skipped": 0,
                }
                assert sorted(seen["running"]) == ["g0", "g1"]
                assert seen["started_at"] <= seen["at"] and seen["finished_at"] is None

                await client.rpush(gate, b"go", b"go")  # release both
                while seen["status"] == "running":
                    seen = await next_snapshot(stdout)
                assert seen["status"] == "succeeded"
                assert seen["counts"]["succeeded"] == 6 and seen["counts"]["running"] == 0
                assert seen["finished_at"] is not None
                assert await process.wait() == 0
            result = await run.result()
    assert result.status is RunStatus.SUCCEEDED


async def test_watch_exits_as_the_run_ended_failed_or_cancelled(
    url: str,
    redis_url: str,
    prefix: str,
    workers: WorkerProcesses,
    client: aioredis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed_id = secrets.token_hex(8)
    with aioflow.workflow("failing") as wf:
        aioflow.parallel(boom.bind(name="bad"), tasks.quick.bind(name="ok", index=1), name="all")
    with anyio.fail_after(30), pytest.raises(WorkflowFailedError):
        await aioflow.run(wf, backend=url, run_id=failed_id)
    code, out, err = await cli(capsys, "watch", failed_id, "--backend", url, "--json")
    assert code == 1, (out, err)  # as `aioflow run` for a failed run
    (line,) = out.splitlines()  # the run had ended: its last snapshot, and done
    document = json.loads(line)
    assert document["status"] == "failed" and document["counts"]["failed"] == 1

    code, out, err = await cli(capsys, "watch", failed_id, "--backend", url)  # text lines
    assert code == 1 and f"failing {failed_id}: failed 2/2 done" in out, (out, err)

    cancelled_id = secrets.token_hex(8)
    gate = f"gate-{cancelled_id}"
    held = held_open(redis_url, gate, quick=0, held=1)
    with anyio.fail_after(30):
        async with aioflow.start(held, backend=url, run_id=cancelled_id) as run:
            await wait_started(client, gate, 1)
            await run.cancel("enough")
            with pytest.raises(WorkflowCancelledError):
                await run.result()
    code, out, err = await cli(capsys, "watch", cancelled_id, "--backend", url, "--json")
    assert code == 130, (out, err)
    assert json.loads(out)["status"] == "cancelled"


async def test_watching_a_run_before_its_first_snapshot_waits_for_it(
    url: str,
    redis_url: str,
    prefix: str,
    workers: WorkerProcesses,
    client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aioflow.backends import _redis_progress
    from aioflow.backends.redis import RedisBackend

    def slow_first(self: RedisBackend, run_id: str, workflow: str) -> tuple[object]:
        return (_redis_progress.ProgressPublisher(self, run_id, workflow, interval=5.0),)

    monkeypatch.setattr(RedisBackend, "run_instruments", slow_first)
    run_id = secrets.token_hex(8)
    gate = f"gate-{run_id}"
    held = held_open(redis_url, gate, quick=0, held=1)
    seen: list[ProgressSnapshot] = []
    with anyio.fail_after(30):
        async with aioflow.start(held, backend=url, run_id=run_id) as run:
            await wait_started(client, gate, 1)  # running, journaled, no snapshot yet
            assert await client.xlen(progress_key(prefix, run_id)) == 0
            async with RedisBackend.from_url(url) as watcher:
                async for snapshot in watcher.follow_progress(run_id):
                    seen.append(snapshot)
                    if len(seen) == 1:
                        assert snapshot.status == "running"
                        await client.rpush(gate, b"go")
            await run.result()
    assert seen[-1].status == "succeeded" and seen[-1].final


async def test_watch_of_an_unknown_run_says_so(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await cli(capsys, "watch", "no-such-run", "--backend", url)
    assert code == 2, (out, err)  # as the other "unknown run" errors of the CLI
    assert "no run 'no-such-run'" in err and "hint" in err and "bug" not in err, err


async def test_watch_says_when_the_coordinator_seems_gone(
    url: str, prefix: str, client: aioredis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    # The last snapshot of a coordinator that died mid-run (it promised one every
    # 0.05 s): nothing follows it.
    run_id = secrets.token_hex(8)
    document = {
        "v": 1,
        "run_id": run_id,
        "workflow": "orphan",
        "status": "running",
        "total": 3,
        "counts": {"queued": 1, "running": 1, "succeeded": 1},
        "retries": 0,
        "running": ["b"],
        "started_at": 1.0,
        "at": 2.0,
        "keepalive": 0.05,
    }
    await client.xadd(progress_key(prefix, run_id), {"d": json.dumps(document)})
    with anyio.fail_after(10):
        code, out, err = await cli(capsys, "watch", run_id, "--backend", url, "--json")
    assert code == 1, (out, err)
    assert json.loads(out)["workflow"] == "orphan"  # the last snapshot was shown
    assert "coordinator seems gone" in err, err
    assert "aioflow resume redis://127.0.0.1:" in err and f"--run-id {run_id}" in err, err


# --- the publisher ---------------------------------------------------------------------------


async def test_the_last_snapshot_is_written_before_run_returns_and_expires(
    url: str, prefix: str, workers: WorkerProcesses, client: aioredis.Redis
) -> None:
    run_id = secrets.token_hex(8)
    wf = tasks.fan_out("fan", tasks.quick, 5)
    with anyio.fail_after(30):
        result = await aioflow.run(wf, backend=f"{url}&result_ttl=120", run_id=run_id)
    assert result.status is RunStatus.SUCCEEDED
    document = await latest(client, prefix, run_id)  # read at once: it is there
    assert document["status"] == "succeeded"
    assert document["total"] == 5 and document["counts"]["succeeded"] == 5
    assert document["keepalive"] > 0
    ttl = await client.pttl(progress_key(prefix, run_id))
    assert 0 < ttl <= 120_000  # the backend's result_ttl


async def test_a_run_whose_progress_cannot_be_published_still_succeeds(
    url: str,
    prefix: str,
    workers: WorkerProcesses,
    client: aioredis.Redis,
    warnings_log: io.StringIO,
) -> None:
    run_id = secrets.token_hex(8)
    key = progress_key(prefix, run_id)
    await client.set(key, b"not a stream")  # every XADD there fails (WRONGTYPE)
    with anyio.fail_after(30):
        result = await aioflow.run(tasks.fan_out("fan", tasks.quick, 5), backend=url, run_id=run_id)
    assert result.status is RunStatus.SUCCEEDED
    assert await client.get(key) == b"not a stream"
    lines = json_lines(warnings_log)
    failures = [line for line in lines if "publishing the run's progress failed" in line["event"]]
    assert len(failures) == 1, lines  # said once
    assert failures[0]["run_id"] == run_id and "WRONGTYPE" in failures[0]["error"]


# --- the snapshot and its display ---------------------------------------------------------


def test_a_snapshot_renders_as_the_run_display_does() -> None:
    snapshot = ProgressSnapshot(
        run_id="r1",
        workflow="held",
        status="running",
        total=6,
        counts={"queued": 0, "running": 2, "succeeded": 3, "failed": 1},
        retries=0,
        running=("g0", "g1"),
        started_at=1000.0,
        at=1010.0,
        keepalive=2.0,
    )
    assert ProgressSnapshot.from_json(snapshot.to_json()) == snapshot
    assert snapshot.done == 4 and snapshot.elapsed == 10.0 and snapshot.eta == 5.0
    console = Console(file=io.StringIO(), force_terminal=True, width=150)
    with ProgressDisplay(console, enabled=True, description="held r1") as display:
        display.update(snapshot)
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert "4/6" in screen and "2 running" in screen and "1 failed" in screen, screen
    assert "0:00:10" in screen and "g0, g1" in screen, screen  # the run's own elapsed time
    with pytest.raises(ValueError, match="malformed"):
        ProgressSnapshot.from_document({**snapshot.to_document(), "counts": None})
    with pytest.raises(ValueError, match="schema"):
        ProgressSnapshot.from_document({**snapshot.to_document(), "v": 2})
