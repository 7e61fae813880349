"""Fault injection: a journaled 10,000-task run killed with SIGKILL, then resumed.

The child process runs the workflow journaled to SQLite and reports its progress
on stdout; the test kills it (``kill -9``) at a point drawn from a seed, reads
which tasks the journal holds as finished, and resumes the run in this process.
Every task runs; a task whose completion was committed before the kill runs
exactly once in all; the results equal those of an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import aioflow
from aioflow.stores import RecordKind, open_run_store

LAYERS, WIDTH = 100, 100  # 10,000 tasks, in layers: a realistic mix of joins and groups

CHILD = textwrap.dedent(
    f"""
    import os, sys
    import aioflow
    from aioflow import task, workflow, parallel, chain

    LOG = os.environ["AIOFLOW_TEST_LOG"]
    _fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def note(name):
        os.write(_fd, (name + "\\n").encode())  # one write per line: never torn

    @task
    async def cell(ctx, layer: int, column: int) -> int:
        note(ctx.task_name)
        return layer * 1000 + column

    @task
    async def total(ctx) -> int:
        note("total")
        return sum(
            value
            for k in range({LAYERS})
            for value in ctx.result(f"layer{{k}}").values()
        )

    def build():
        with workflow("crash10k") as wf:
            layers = [
                parallel(
                    *[cell.bind(name=f"c{{k}}_{{i}}", layer=k, column=i) for i in range({WIDTH})],
                    name=f"layer{{k}}",
                )
                for k in range({LAYERS})
            ]
            chain(*layers, total)
        return wf

    wf = build()

    class Progress:
        done = 0

        def on_task_end(self, event):
            self.done += 1
            if self.done % 250 == 0:
                print(self.done, flush=True)

    if __name__ == "__main__":
        aioflow.run_sync(
            wf, checkpoint=sys.argv[1], run_id="crashed", instruments=[Progress()],
            max_concurrency=50, checkpoint_every=os.environ.get("AIOFLOW_TEST_EVERY", "task"),
        )
        print("done", flush=True)
    """
)


def load(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"crash10k_{path.parent.name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_total() -> int:
    return sum(k * 1000 + i for k in range(LAYERS) for i in range(WIDTH))


async def crash_and_resume(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch, every: str = "task"
) -> None:
    rng = random.Random(seed)
    kill_after = rng.randrange(1000, 9000, 250)  # tasks reported finished by the child
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    log = tmp_path / "log.txt"
    db = tmp_path / "runs.db"
    env = {**os.environ, "AIOFLOW_TEST_LOG": str(log), "AIOFLOW_TEST_EVERY": every}
    async with await anyio.open_process(
        [sys.executable, str(script), f"sqlite:///{db}"], env=env, stderr=None
    ) as process:
        assert process.stdout is not None
        buffer = b""
        with anyio.fail_after(60):
            async for chunk in process.stdout:
                buffer += chunk
                lines = buffer.split(b"\n")
                if any(line.strip().isdigit() and int(line) >= kill_after for line in lines):
                    break
                assert b"done" not in buffer, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL

    async with open_run_store(f"sqlite:///{db}") as store:
        info = await store.get_run("crashed")
        committed = {
            r.task_name
            for r in await store.read("crashed")
            if r.kind is RecordKind.TASK_FINISHED and r.status == "succeeded"
        }
    assert info.status == "running"  # the process died: the run is unfinished
    # "task" commits before what follows starts; "background" lags behind the run.
    assert len(committed) >= kill_after // (3 if every == "task" else 50), (
        len(committed),
        kill_after,
    )

    monkeypatch.setenv("AIOFLOW_TEST_LOG", str(log))
    module = load(script)
    result = await aioflow.resume(f"sqlite:///{db}", module.wf)  # the only unfinished run
    assert result.run_id == "crashed"
    assert result["total"] == expected_total()
    assert len(result.tasks) == LAYERS * WIDTH + 1

    runs = Counter(log.read_text().split())
    assert set(runs) == set(result.tasks)  # every task ran
    again = {name for name in committed if runs[name] != 1}
    assert not again, f"finished before the kill, but run again: {sorted(again)[:5]}"
    async with open_run_store(f"sqlite:///{db}") as store:
        assert (await store.get_run("crashed")).status == "succeeded"


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_killed_10k_task_run_resumes_without_rerunning_finished_tasks(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    await crash_and_resume(tmp_path, seed, monkeypatch)


async def test_with_background_commits_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await crash_and_resume(tmp_path, 7, monkeypatch, every="background")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 11))
async def test_more_kill_points(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    await crash_and_resume(tmp_path, seed, monkeypatch)
