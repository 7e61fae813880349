"""A handler's background work (``Handler.serve``): run while a run uses the handler,
cancelled when it ends, never a cause of failure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from log_capture import json_lines, json_log_capture

import aioflow
from aioflow import TaskContext, task, workflow
from aioflow.handlers import Handler


class Background(Handler):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.started = anyio.Event()
        self.ended = False

    async def execute(
        self, task: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], ctx: TaskContext
    ) -> Any:
        await self.started.wait()  # a call may see the background work running
        return "done"

    async def serve(self) -> None:
        self.started.set()
        try:
            if self.fail:
                raise RuntimeError("background broke")
            await anyio.sleep_forever()
        finally:
            self.ended = True


@task(handler="bg")
async def uses_bg() -> str:
    raise AssertionError("the handler runs it")  # pragma: no cover


def flow() -> aioflow.Workflow:
    with workflow("bg") as wf:
        wf.add(uses_bg)
    return wf


async def test_background_work_runs_with_the_run_and_ends_with_it() -> None:
    handler = Background()
    assert handler.serves and not aioflow.handlers.InlineHandler().serves
    with anyio.fail_after(10):
        result = await aioflow.run(flow(), handlers={"bg": handler})
    assert result["uses_bg"] == "done"
    assert handler.started.is_set() and handler.ended  # cancelled when the run ended


async def test_background_work_that_fails_is_logged_and_the_run_goes_on() -> None:
    handler = Background(fail=True)
    with json_log_capture("ERROR") as stream, anyio.fail_after(10):
        result = await aioflow.run(flow(), handlers={"bg": handler})
    assert result["uses_bg"] == "done"
    (line,) = [line for line in json_lines(stream) if "background" in line["event"]]
    assert line["level"] == "error" and "background broke" in line["exception"]
