"""Tasks of the backend contract suite: module-level, so they travel by reference.

What the tests check of running tasks (which run, the gate a thread waits for) lives
in files under :data:`STATE`, so that worker processes (the Redis backend) share it
with the test process: ``$AIOFLOW_TEST_STATE`` names the directory.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio

import aioflow
from aioflow import TaskContext, task

STATE_ENV = "AIOFLOW_TEST_STATE"
if os.environ.get(STATE_ENV):
    STATE = Path(os.environ[STATE_ENV])
else:
    STATE = Path(tempfile.mkdtemp(prefix="aioflow-contract-"))
    atexit.register(shutil.rmtree, STATE, ignore_errors=True)


class _Running:
    """The names of the tasks running now, in any process (one file each)."""

    def add(self, name: str) -> None:
        (STATE / f"running-{name}").touch()

    def discard(self, name: str) -> None:
        (STATE / f"running-{name}").unlink(missing_ok=True)

    def names(self) -> set[str]:
        return {p.name.removeprefix("running-") for p in STATE.glob("running-*")}

    def __bool__(self) -> bool:
        return bool(self.names())

    def clear(self) -> None:
        for p in STATE.glob("running-*"):
            p.unlink(missing_ok=True)


class _Gate:
    """A threading.Event across processes (a file): a blocked thread waits for it."""

    path = STATE / "gate"

    def set(self) -> None:
        self.path.touch()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.path.exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)  # a thread that cannot be woken: it looks again
        return True


RUNNING = _Running()
GATE = _Gate()


def reset() -> None:
    RUNNING.clear()
    GATE.clear()
    for p in STATE.glob("napping-*"):
        p.unlink(missing_ok=True)


@task
async def one() -> int:
    return 1


@task
async def add(value: int, more: int = 1) -> int:
    return value + more


@task
def sync_double(value: int) -> int:  # runs in a worker thread
    return value * 2


@task
async def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task
async def flaky(ctx: TaskContext, failures: int = 2) -> int:
    if ctx.attempt <= failures:
        raise RuntimeError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@task(timeout=0.05)
async def too_slow() -> str:
    await anyio.sleep(5)
    return "late"


@task
async def counter(ctx: TaskContext, data: int = 0) -> int:
    if data < 4:
        ctx.next_iteration(data + 1)
    return data


@task
async def bump(ctx: TaskContext, times: int = 20) -> int:
    total = 0
    for _ in range(times):
        total = await ctx.channel.incr("count")
        await anyio.lowlevel.checkpoint()
    await ctx.channel.append("names", ctx.task_name)
    return total


@task
async def read_channel(ctx: TaskContext) -> dict[str, Any]:
    return {"count": await ctx.channel.get("count"), "names": await ctx.channel.get("names")}


@task
async def reads_result(ctx: TaskContext) -> Any:
    return ctx.result("one", "missing")


@task
async def reads_group(ctx: TaskContext) -> Any:
    """The result of the group before it (``g``), read through the context."""
    return ctx.result("g", "missing")


@task
async def spawn(ctx: TaskContext) -> str:
    ctx.next_task(child)
    return "spawned"


@task
async def child(spawn: str) -> str:
    return f"child of {spawn}"


@task
async def jump(ctx: TaskContext) -> str:
    ctx.next_task(child_jump, goto=True)
    return "jumped"


@task
async def child_jump() -> str:
    return "landed"


@task
async def never() -> None:
    raise AssertionError("must not run")


@task
async def terminate(ctx: TaskContext) -> str:
    ctx.terminate_workflow("enough")
    return "stopping"


@task
async def cancel_run(ctx: TaskContext) -> None:
    ctx.cancel_workflow("no more")


@task
async def waits(ctx: TaskContext) -> None:
    RUNNING.add(ctx.task_name)
    try:
        await anyio.sleep_forever()
    finally:
        RUNNING.discard(ctx.task_name)


@task
def blocks(ctx: TaskContext) -> str:
    RUNNING.add(ctx.task_name)
    try:
        GATE.wait(5)
        time.sleep(0.01)
        return "done"
    finally:
        RUNNING.discard(ctx.task_name)


@task
async def returns_lock() -> Any:
    return threading.Lock()


@task
async def takes(value: Any) -> Any:
    return value


@task
async def stores_lock(ctx: TaskContext) -> None:
    await ctx.channel.set("lock", threading.Lock())


class Custom(Exception):
    pass


@task
async def raises_custom() -> None:
    raise Custom("custom failure")


@task
async def picks_context(ctx: TaskContext) -> str:
    return f"{ctx.run_id}:{ctx.task_name}:{ctx.attempt}:{ctx.iteration}"


def mixed() -> aioflow.Workflow:
    """A workflow with the channel, ctx.result, a loop, a dynamic task and a retry."""
    with aioflow.workflow("mixed") as wf:
        start = one.bind(name="start")
        retried = flaky.bind(name="retried", failures=1).with_options(
            retries=aioflow.RetryPolicy(retries=2, backoff=0)
        )
        loop = counter.bind(name="loop")
        bumps = aioflow.parallel(
            bump.bind(name="b1"), bump.bind(name="b2"), bump.bind(name="b3"), name="bumps"
        )
        start >> retried >> loop >> bumps >> read_channel >> spawn
        wf.add(one, reads_result)
        one >> reads_result
    return wf


@task
async def nap(ctx: TaskContext, seconds: float = 0.6) -> str:
    """A slow task with no side effect but a marker naming the process it runs in."""
    (STATE / f"napping-{ctx.task_name}-{os.getpid()}").touch()
    await anyio.sleep(seconds)
    return "rested"


def napping_pids() -> set[int]:
    return {int(p.name.rsplit("-", 1)[1]) for p in STATE.glob("napping-*")}


def mixed_with_naps() -> aioflow.Workflow:
    """:func:`mixed` with a fan-out of slow naps before the channel increments: a
    worker can be killed while it naps (a nap run twice changes no result)."""
    with aioflow.workflow("mixed-naps") as wf:
        start = one.bind(name="start")
        retried = flaky.bind(name="retried", failures=1).with_options(
            retries=aioflow.RetryPolicy(retries=2, backoff=0)
        )
        loop = counter.bind(name="loop")
        naps = aioflow.parallel(*(nap.bind(name=f"nap{i}") for i in range(8)), name="naps")
        bumps = aioflow.parallel(
            bump.bind(name="b1"), bump.bind(name="b2"), bump.bind(name="b3"), name="bumps"
        )
        start >> retried >> loop >> naps >> bumps >> read_channel >> spawn
        wf.add(one, reads_result)
        one >> reads_result
    return wf


def assert_same_results(result: aioflow.RunResult, expected: Any) -> None:
    """The results of :func:`mixed` (or :func:`mixed_with_naps`) match, but for how
    the three bumps interleaved their increments (which differs across processes):
    each ends with a distinct count, the last one with all 60."""
    bumps = result["bumps"]
    assert max(bumps.values()) == 60 and len(set(bumps.values())) == 3
    assert sorted(result["read_channel"]["names"]) == ["b1", "b2", "b3"]
    assert result["read_channel"]["count"] == 60
    interleaved = {"b1", "b2", "b3", "bumps", "read_channel"}
    assert {k: v for k, v in result.results.items() if k not in interleaved} == {
        k: v for k, v in expected.items() if k not in interleaved
    }


@task
async def probes(ctx: TaskContext) -> dict[str, Any]:
    """What ctx.result says of a name the run lacks, and of a task not finished yet."""
    try:
        ctx.result("no_such_task")
        unknown = "no error"
    except aioflow.UnknownTaskError:
        unknown = "UnknownTaskError"
    return {"unknown": unknown, "later": ctx.result("later", "not yet"), "inputs": dict(ctx.inputs)}


@task
async def later(probes: dict[str, Any]) -> str:
    return "done"


@task(handler="nowhere")
async def needs_a_handler() -> str:
    return "ran"


@task
async def counts_peak(ctx: TaskContext) -> int:
    """How many of its kind run at once (the channel counts, in every process)."""
    now = await ctx.channel.incr("running")
    await anyio.sleep(0.02)
    peak = await ctx.channel.incr("running", -1) + 1
    return max(now, peak)
