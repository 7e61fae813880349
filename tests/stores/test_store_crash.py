"""SQLite under fire: processes killed with SIGKILL mid-write, and processes sharing a file.

The children are ``store_child.py`` run with ``sys.executable``; each test
recomputes what its child wrote and checks the database against it.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from store_child import cycle_run, plan, share_record
from store_helpers import finished, run_info

from aioflow.stores import blob_digest
from aioflow.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

CHILD = Path(__file__).with_name("store_child.py")


class Child:
    """A running ``store_child.py``: its stdout read line by line."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        assert process.stdout is not None
        self._out = BufferedByteReceiveStream(process.stdout)

    async def line(self) -> str:
        try:
            with anyio.fail_after(30):
                return (await self._out.receive_until(b"\n", 1 << 20)).decode()
        except anyio.IncompleteRead:
            raise AssertionError(f"the child ended early:\n{await self.stderr()}") from None

    async def lines_until_end(self) -> list[str]:
        rest = bytearray()
        while True:
            try:
                rest += await self._out.receive()
            except anyio.EndOfStream:
                break
        return rest.decode().splitlines()

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        text = bytearray()
        while True:
            try:
                text += await self.process.stderr.receive()
            except anyio.EndOfStream:
                return text.decode(errors="replace")


def _command(*args: object) -> list[str]:
    return [sys.executable, str(CHILD), *map(str, args)]


async def _kill_at_random(command: list[str], rng: random.Random) -> list[str]:
    """Start the child, SIGKILL it at a random time after ``ready``; what it printed."""
    async with await anyio.open_process(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        child = Child(process)
        assert await child.line() == "ready"
        await anyio.sleep(rng.uniform(0.01, 0.2))
        process.kill()
        printed = await child.lines_until_end()
        await process.wait()
    assert process.returncode == -signal.SIGKILL
    return printed


async def _crash_case(directory: Path, seed: int) -> None:
    """Kill a child appending plan(seed) at a random point; check what survived."""
    directory.mkdir(parents=True)
    path = directory / "runs.db"
    synchronous = "full" if seed % 4 == 3 else "normal"
    printed = await _kill_at_random(_command("crash", path, seed, synchronous), random.Random(seed))
    # Killed before its first commit, the child reported nothing: the journal is then
    # empty or holds the first batch, as always one batch at most beyond the reports.
    reported = [int(line) for line in printed if line.strip().isdigit()]

    async with SQLiteStore(path) as store:
        run_id = f"crash-{seed}"
        journal = await store.read(run_id)
        info = await store.get_run(run_id)
        # What the child wrote, batch by batch, up to one batch past what it reported
        # (it may die between a commit and its print).
        expected, boundaries, blobs = [], [0], []
        for records, batch_blobs in itertools.islice(plan(seed), len(reported) + 1):
            expected += records
            boundaries.append(len(expected))
            blobs.append(batch_blobs)
        assert reported == boundaries[1 : len(reported) + 1]
        # A prefix of what was written, ending on a batch boundary: nothing torn.
        assert len(journal) in boundaries[len(reported) :]
        assert [r.seq for r in journal] == list(range(1, len(journal) + 1))
        assert [(r.task_name, r.status, r.data) for r in journal] == [
            (r.task_name, r.status, r.data) for r in expected[: len(journal)]
        ]
        # The counters are those of exactly the committed records.
        assert info.last_seq == len(journal)
        assert info.tasks_succeeded == sum(r.status == "succeeded" for r in journal)
        assert info.tasks_failed == sum(r.status == "failed" for r in journal)
        committed = boundaries.index(len(journal))
        for batch_blobs in blobs[:committed]:
            for digest, data in batch_blobs.items():
                assert await store.get_blob(digest) == data
        # The database is healthy: the journal goes on.
        assert await store.append(run_id, [finished("after")]) == len(journal) + 1


async def _cycle_case(directory: Path, seed: int) -> None:
    """Kill a child that begins, fills and finishes runs (each finish purging the others)."""
    directory.mkdir(parents=True)
    path = directory / "runs.db"
    printed = await _kill_at_random(_command("cycle", path, seed), random.Random(100 + seed))
    done = [int(line.split()[1]) for line in printed if line.startswith("finished ")]

    async with SQLiteStore(path) as store:
        runs = await store.list_runs(limit=None)
        finished_runs = [r for r in runs if r.status == "succeeded"]
        running = [r for r in runs if r.status == "running"]
        # retention=0: each finish purged the runs finished before; one at most is left.
        assert len(finished_runs) <= 1 and len(running) <= 1
        if done:
            assert finished_runs, "a reported finish was lost"
            assert finished_runs[0].run_id in (f"run{seed}-{done[-1]}", f"run{seed}-{done[-1] + 1}")
        expected_blobs: set[str] = set()
        for info in runs:
            index = int(info.run_id.rsplit("-", 1)[1])
            batches = cycle_run(index)
            journal = await store.read(info.run_id)
            sizes = list(itertools.accumulate(len(records) for records, _ in batches))
            if info.status == "succeeded":
                assert len(journal) == sizes[-1]
            else:
                assert len(journal) in (0, *sizes)
            assert info.tasks_succeeded == len(journal)
            if journal:
                expected_blobs |= set(batches[0][1])
        stats = await store.statistics()
        assert stats.records == sum(r.last_seq for r in runs)
        assert stats.blobs == len(expected_blobs)  # no blob left without a run
        for digest in expected_blobs:
            await store.get_blob(digest)


async def _run_seeds(
    case: Callable[[Path, int], Awaitable[None]], root: Path, seeds: range
) -> None:
    """Run ``case`` for every seed, the children at the same time (a few per CPU)."""
    failures: list[str] = []
    limit = anyio.CapacityLimiter(max(2, 2 * (os.cpu_count() or 1)))

    async def one(seed: int) -> None:
        async with limit:
            try:
                await case(root / f"seed-{seed}", seed)
            except AssertionError as exc:
                failures.append(f"seed {seed}: {exc}")

    async with anyio.create_task_group() as tg:
        for seed in seeds:
            tg.start_soon(one, seed)
    assert not failures, "\n".join(sorted(failures))


async def test_kill_9_mid_append_keeps_every_committed_batch_and_no_torn_one(
    tmp_path: Path,
) -> None:
    await _run_seeds(_crash_case, tmp_path, range(4))


async def test_kill_9_mid_finish_and_purge_leaves_no_half_purge(tmp_path: Path) -> None:
    await _run_seeds(_cycle_case, tmp_path, range(3))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_kill_9_at_many_more_random_points(tmp_path: Path) -> None:
    await _run_seeds(_crash_case, tmp_path / "append", range(4, 44))
    await _run_seeds(_cycle_case, tmp_path / "cycle", range(3, 15))


async def test_two_processes_appending_to_one_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    count = 300
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("shared"))
        await store.begin_run(run_info("parent"))
        async with await anyio.open_process(
            _command("share", path, "child", count),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as process:
            child = Child(process)
            assert await child.line() == "ready"
            assert process.stdin is not None
            await process.stdin.send(b"go\n")
            for step in range(count):
                await store.append("parent", [share_record("parent", step)])
                await store.append("shared", [share_record("parent", step)])
            assert await child.line() == "done"
            assert await process.wait() == 0

        for name in ("parent", "child"):
            own = await store.read(name)
            assert [r.task_name for r in own] == [f"{name}/{step}" for step in range(count)]
            assert [r.seq for r in own] == list(range(1, count + 1))
        shared = await store.read("shared")
        assert [r.seq for r in shared] == list(range(1, 2 * count + 1))
        names = [r.task_name or "" for r in shared]
        for name in ("parent", "child"):
            assert [n for n in names if n.startswith(f"{name}/")] == [
                f"{name}/{step}" for step in range(count)
            ]
        info = await store.get_run("shared")
        assert (info.last_seq, info.tasks_succeeded) == (2 * count, 2 * count)
        switches = sum(a.split("/")[0] != b.split("/")[0] for a, b in itertools.pairwise(names))
        assert switches > 1, "the two processes did not write at the same time"


async def test_processes_creating_one_new_database_at_once(tmp_path: Path) -> None:
    path = tmp_path / "new" / "runs.db"
    names = [f"p{i}" for i in range(3)]

    async def child(name: str) -> None:
        result = await anyio.run_process(_command("begin", path, name), check=False)
        assert result.returncode == 0, result.stderr.decode()

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(child, name)
    async with SQLiteStore(path) as store:
        assert sorted(r.run_id for r in await store.list_runs()) == names
        for name in names:
            assert [r.task_name for r in await store.read(name)] == [f"{name}/0"]


def test_the_child_plan_is_deterministic() -> None:
    first = list(itertools.islice(plan(3), 50))
    assert first == list(itertools.islice(plan(3), 50))
    assert all(digest == blob_digest(data) for _, blobs in first for digest, data in blobs.items())
