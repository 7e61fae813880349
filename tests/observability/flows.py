"""Tasks the observability tests run in-process and on real worker processes."""

from __future__ import annotations

import asyncio

import aioflow
from aioflow import TaskContext, task, workflow


@task
async def source(ctx: TaskContext) -> int:
    ctx.log.info("source working")
    return 2


@task(retries=aioflow.RetryPolicy(retries=1, backoff=0.0))
async def flaky(source: int, ctx: TaskContext) -> int:
    if ctx.attempt == 1:
        raise ConnectionError("blip")
    ctx.log.info("flaky worked")
    return source * 10


@task
def square(source: int) -> int:
    return source * source


@task
async def sink(flaky: int, square: int) -> int:
    return flaky + square


@task
async def broken(source: int) -> int:
    raise ValueError("broken on purpose")


@task(timeout=0.05)
async def slow(source: int) -> int:
    await asyncio.sleep(5)
    return 0


def good() -> aioflow.Workflow:
    """source >> (flaky | square) >> sink; flaky fails once, then works."""
    with workflow("obs-good") as wf:
        source >> (flaky | square) >> sink
    return wf


def bad() -> aioflow.Workflow:
    """source >> broken: the run fails."""
    with workflow("obs-bad") as wf:
        source >> broken
    return wf


def timing_out() -> aioflow.Workflow:
    with workflow("obs-timeout") as wf:
        source >> slow
    return wf


@task
async def nap(source: int) -> int:
    await asyncio.sleep(0.15)
    return source


@task(retries=aioflow.RetryPolicy(retries=1, backoff=0.0))
async def finish(ctx: TaskContext) -> str:
    if ctx.attempt == 1:
        raise ConnectionError("blip")
    ctx.log.info("finish worked")
    return "done"


def fan_out(width: int = 8) -> aioflow.Workflow:
    """source >> (nap_0 | ...) >> finish: enough at once to need two workers; finish
    fails once, then works."""
    naps = [nap.bind(name=f"nap_{i}") for i in range(width)]
    with workflow("obs-fan") as wf:
        source >> aioflow.parallel(*naps, name="naps") >> finish
    return wf
