"""Tasks of the distributed fault tests: module-level, so workers import them
(``--import distributed.tasks``; worker processes run with ``tests/`` as cwd).

Each task records what it did in the run's channel (on Redis: shared by every
worker and the test process): ``exec:<name>`` counts its executions, ``running``
counts executions in progress, ``starts`` lists ``[name, time]`` in start order.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio

import aioflow
from aioflow import TaskContext, task


@task
async def sleeper(
    ctx: TaskContext, index: int, seconds: float = 0.3, hold_pid: int = 0, hold_after: int = 0
) -> int:
    """Counts its executions and those in progress; returns ``index * 10``.

    Each execution also appends ``[name, pid]`` to ``ran`` as it starts and to ``done``
    as it ends, and counts the starts of its process in ``started:<pid>``. In process
    ``hold_pid``, the executions after its first ``hold_after`` are held: each appends
    its name to ``held``, then sleeps until its worker is killed or stopped. A test
    then knows exactly what is in flight there.
    """
    pid = os.getpid()
    await ctx.channel.incr(f"exec:{ctx.task_name}")
    await ctx.channel.incr("running")
    await ctx.channel.append("ran", [ctx.task_name, pid])
    started = await ctx.channel.incr(f"started:{pid}")
    held = pid == hold_pid and started > hold_after
    try:
        if held:
            await ctx.channel.append("held", ctx.task_name)
            await anyio.sleep_forever()
        await anyio.sleep(seconds)
    finally:
        await ctx.channel.incr("running", -1)
    await ctx.channel.append("done", [ctx.task_name, pid])
    return index * 10


@task
async def quick(index: int) -> int:
    return index * 2


@task
async def long_sleeper(ctx: TaskContext, index: int, seconds: float = 5.0) -> str:
    """Records each start and each finish (``done:<name>``) with the worker's pid."""
    await ctx.channel.incr(f"exec:{ctx.task_name}")
    await ctx.channel.append("starts", [ctx.task_name, os.getpid(), time.time()])
    await anyio.sleep(seconds)
    await ctx.channel.append("finishes", [ctx.task_name, os.getpid(), time.time()])
    return f"slept {index}"


@task
async def recorded(ctx: TaskContext, index: int, state: str, seconds: float = 0.15) -> int:
    """Writes one file per execution under ``state`` (it outlives a killed coordinator)."""
    directory = Path(state)
    count = len(list(directory.glob(f"{ctx.task_name}.*")))
    (directory / f"{ctx.task_name}.{count}.{time.time_ns()}").touch()
    await anyio.sleep(seconds)
    return index + 1000


@task
async def starts_in_order(ctx: TaskContext, level: int) -> int:
    await ctx.channel.append("order", [ctx.task_name, level])
    return level


@task(rate_limit="10/s")
async def limited(ctx: TaskContext, index: int) -> int:
    await ctx.channel.append("starts", time.time())
    return index


@task
async def slow(index: int, seconds: float = 0.05) -> int:
    await anyio.sleep(seconds)
    return index


def _write_now(path: Path) -> None:
    """``time.time()`` into ``path``, whole or not at all (another process polls for it:
    written aside, then renamed)."""
    aside = path.with_suffix(".part")
    aside.write_text(str(time.time()))
    aside.replace(path)


@task
async def until_cancelled(ctx: TaskContext, state: str) -> None:
    """Runs until cancelled; writes ``started`` then ``finally`` (a time.time()) files."""
    directory = Path(state)
    _write_now(directory / "started")
    try:
        await anyio.sleep(60)
    finally:
        _write_now(directory / "finally")


@task
async def gated(ctx: TaskContext, state: str) -> str:
    """Writes a ``started`` file, then reads the FIFO ``go`` (the test made it; the read
    ends when the test writes to it); returns what it read."""
    directory = Path(state)
    _write_now(directory / "started")
    return await anyio.to_thread.run_sync((directory / "go").read_text)


def fan_out(name: str, body: aioflow.Task, count: int, **params: object) -> aioflow.Workflow:
    """``count`` nodes of ``body`` in one parallel group (``<body>-<i>``)."""
    with aioflow.workflow(name) as wf:
        aioflow.parallel(
            *(body.bind(name=f"t{i:03d}", index=i, **params) for i in range(count)), name="all"
        )
    return wf


def checkpointed(state: str, count: int = 10) -> aioflow.Workflow:
    """A chain of 4 short tasks, then a fan-out of ``count`` of growing length (0.2 s,
    0.4 s ...): killed mid-run, some tasks are finished, some running, some not begun."""
    with aioflow.workflow("coordinated") as wf:
        head = aioflow.chain(*(recorded.bind(name=f"c{i}", index=i, state=state) for i in range(4)))
        fan = aioflow.parallel(
            *(
                recorded.bind(name=f"f{i:02d}", index=i, state=state, seconds=0.2 * (i + 1))
                for i in range(count)
            ),
            name="fan",
        )
        head >> fan
    return wf


#: A small fan-out, importable as ``distributed.tasks:small`` (for the CLI).
small = fan_out("small", quick, 3)
