"""Journaled runs and resume: finished tasks never run again."""

from __future__ import annotations

import os
import sqlite3
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

import aioflow
from aioflow import CheckpointError, TaskContext, chain, parallel, task, workflow
from aioflow.serialization import Keyring
from aioflow.stores import MemoryStore, RecordKind, open_run_store
from aioflow.stores._sqlite_schema import record_crc

KEY_A = "a" * 32
KEY_B = "b" * 32

CRASHING_WORKFLOW = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import aioflow
    from aioflow import TaskContext, task, workflow

    LOG = Path(os.environ["AIOFLOW_TEST_LOG"])
    CRASH = Path(os.environ["AIOFLOW_TEST_CRASH"])

    def note(name: str) -> None:
        with LOG.open("a") as f:
            f.write(name + "\\n")

    @task
    async def first(ctx: TaskContext) -> int:
        note("first")
        await ctx.channel.set("seen", ["first"])
        return 1

    @task
    async def second(first: int, ctx: TaskContext) -> int:
        note("second")
        await ctx.channel.append("seen", "second")
        return first + 1

    @task(max_cycles=10)
    async def loop(second: int, ctx: TaskContext, data: int = 0) -> int:
        note(f"loop{data}")
        if data == 2 and CRASH.exists():
            os._exit(17)  # the process dies mid-run: no cleanup, no except, no finally
        if data < 4:
            ctx.next_iteration(data + 1)
        return second * 100 + data

    @task
    async def last(loop: int, ctx: TaskContext) -> tuple[int, list[str]]:
        note("last")
        return loop, await ctx.channel.get("seen")

    with workflow("crashy") as wf:
        first >> second >> loop >> last

    if __name__ == "__main__":
        aioflow.run_sync(wf, checkpoint=sys.argv[1])
    """
)


def load_module(path: Path) -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"crashy_{path.parent.name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_resume_after_a_crash_runs_only_what_was_not_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "crashy.py"
    script.write_text(CRASHING_WORKFLOW)
    log = tmp_path / "log.txt"
    crash = tmp_path / "crash-please"
    crash.touch()
    ckpt = tmp_path / "run.ckpt"
    env = {**os.environ, "AIOFLOW_TEST_LOG": str(log), "AIOFLOW_TEST_CRASH": str(crash)}
    env.pop("AIOFLOW_SECRET_KEY", None)
    proc = await anyio.run_process([sys.executable, str(script), str(ckpt)], env=env, check=False)
    assert proc.returncode == 17, proc.stderr.decode()
    assert log.read_text().split() == ["first", "second", "loop0", "loop1", "loop2"]
    assert ckpt.exists()

    crash.unlink()
    monkeypatch.setenv("AIOFLOW_TEST_LOG", str(log))
    monkeypatch.setenv("AIOFLOW_TEST_CRASH", str(crash))
    monkeypatch.delenv("AIOFLOW_SECRET_KEY", raising=False)
    module = load_module(script)
    result = await aioflow.resume(ckpt, module.wf)  # type: ignore[attr-defined]
    # first and second are not run again; the loop picks up at the iteration that died.
    assert log.read_text().split() == [
        "first", "second", "loop0", "loop1", "loop2", "loop2", "loop3", "loop4", "last",
    ]  # fmt: skip
    assert result["last"] == (204, ["first", "second"])
    assert result.tasks["first"].executions == 1
    assert result.tasks["loop"].executions == 5


@task
async def step_a() -> int:
    return 1


@task
async def step_b(step_a: int) -> int:
    return step_a + 1


def two_steps() -> aioflow.Workflow:
    with workflow("two") as wf:
        step_a >> step_b
    return wf


async def test_a_run_that_succeeded_has_nothing_to_resume(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = await aioflow.run(two_steps(), checkpoint=url)
    with pytest.raises(CheckpointError, match="nothing left to resume"):
        await aioflow.resume(url, two_steps(), run_id=first.run_id)
    with pytest.raises(CheckpointError, match="no unfinished run"):
        await aioflow.resume(url, two_steps())


async def test_failed_run_resumes_and_reruns_only_the_failed_task(tmp_path: Path) -> None:
    calls: list[str] = []
    fail = {"on": True}

    @task
    async def ok() -> int:
        calls.append("ok")
        return 2

    @task
    async def fragile(ok: int) -> int:
        calls.append("fragile")
        if fail["on"]:
            raise ConnectionError("down")
        return ok * 21

    with workflow("fragile") as wf:
        ok >> fragile
    ckpt = tmp_path / "f.ckpt"
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(wf, checkpoint=ckpt)
    fail["on"] = False
    result = await aioflow.resume(ckpt, wf)
    assert result["fragile"] == 42
    assert calls == ["ok", "fragile", "fragile"]


async def _failed_run(path: Path, **options: Any) -> str:
    @task
    async def boom(step_b: int) -> None:
        raise ConnectionError("down")

    with workflow("two") as wf:
        step_a >> step_b >> boom
    with pytest.raises(aioflow.WorkflowFailedError) as info:
        await aioflow.run(wf, checkpoint=path, **options)
    assert info.value.result is not None
    return info.value.result.run_id


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "record"])
async def test_a_damaged_journal_is_refused_and_left_untouched(tmp_path: Path, damage: str) -> None:
    db = tmp_path / "runs.db"
    run_id = await _failed_run(db)
    if damage == "record":  # a record's signed data altered, its checksum made right again
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT run, seq, kind, task_name, attempt, status, at, data FROM records"
            ).fetchall()
            run, seq, kind, task_name, attempt, status, at, data = next(
                row for row in rows if row[7] and len(row[7]) > 60
            )
            changed = bytearray(data)
            changed[-1] ^= 0x01
            crc = record_crc(seq, kind, task_name, attempt, status, at, bytes(changed))
            conn.execute(
                "UPDATE records SET data = ?, crc = ? WHERE run = ? AND seq = ?",
                (bytes(changed), crc, run, seq),
            )
    else:
        raw = bytearray(db.read_bytes())
        if damage == "flip":
            for offset in range(4096, len(raw), 512):
                raw[offset] ^= 0xFF
        elif damage == "truncate":
            raw = raw[: len(raw) // 3]
        else:
            raw = bytearray(b"not a database at all" * 100)
        db.write_bytes(bytes(raw))
    before = db.read_bytes()
    with pytest.raises(CheckpointError):
        await aioflow.resume(db, two_steps(), run_id=run_id)
    assert db.read_bytes() == before


async def test_keys_and_rotation(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run_id = await _failed_run(db, keyring=Keyring(KEY_A))
    with pytest.raises(CheckpointError, match="signed with another key"):
        await aioflow.resume(db, two_steps(), run_id=run_id, keyring=Keyring(KEY_B))
    rotated = Keyring(KEY_B, [KEY_A])
    # The resumed run re-reads the old records with the old key, writes with the new one.
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.resume(db, _with_boom(), run_id=run_id, keyring=rotated)


def _with_boom() -> aioflow.Workflow:
    @task
    async def boom(step_b: int) -> None:
        raise ConnectionError("down")

    with workflow("two") as wf:
        step_a >> step_b >> boom
    return wf


async def test_a_journal_of_another_workflow_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    run_id = await _failed_run(db)
    with workflow("two") as other:
        step_a >> step_b >> step_a.bind(name="different")
    with pytest.raises(CheckpointError, match="other tasks or edges"):
        await aioflow.resume(db, other, run_id=run_id)


async def test_several_runs_share_one_database_and_resume_needs_the_id(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    first = await _failed_run(db)
    second = await _failed_run(db)
    assert first != second
    with pytest.raises(CheckpointError, match="2 unfinished runs") as info:
        await aioflow.resume(db, _with_boom())
    assert first in str(info.value) and second in str(info.value)
    async with open_run_store(f"sqlite:///{db}") as store:
        runs = {r.run_id: r for r in await store.list_runs()}
    assert {runs[first].status, runs[second].status} == {"failed"}


async def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no unfinished run"):
        await aioflow.resume(tmp_path / "nope.db", two_steps())


async def test_manual_mode_commits_only_on_request(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    seen: list[int] = []

    async def committed(run_id: str) -> int:
        async with open_run_store(f"sqlite:///{db}") as store:
            records = await store.read(run_id)
        return sum(r.kind is RecordKind.TASK_FINISHED for r in records)

    @task
    async def quiet() -> int:
        return 1

    @task
    async def saver(quiet: int, ctx: TaskContext) -> int:
        seen.append(await committed(ctx.run_id))
        await ctx.checkpoint()
        seen.append(await committed(ctx.run_id))
        return quiet

    with workflow("manual") as wf:
        quiet >> saver
    result = await aioflow.run(wf, checkpoint=db, checkpoint_every="manual")
    assert seen == [0, 1]  # quiet's outcome waited until ctx.checkpoint() committed it
    assert await committed(result.run_id) == 2  # and the end of the run the rest


async def test_ctx_checkpoint_without_a_journal_is_an_error() -> None:
    @task
    async def wants(ctx: TaskContext) -> None:
        await ctx.checkpoint()

    with workflow("w") as wf:
        wf.add(wants)
    with pytest.raises(aioflow.WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, aioflow.RunStateError)


class FailingStore(MemoryStore):
    """A store whose appends fail after ``ok`` of them."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok

    async def append(self, run_id: str, records: Any, **kw: Any) -> int:
        if self.ok <= 0:
            raise CheckpointError("the disk is full")
        self.ok -= 1
        return await super().append(run_id, records, **kw)


async def test_a_journal_that_cannot_be_written_fails_the_run(tmp_path: Path) -> None:
    with workflow("w") as wf:
        chain(*[step_a.bind(name=f"s{i}") for i in range(5)])
    with pytest.raises(aioflow.WorkflowFailedError, match="could not be journaled") as info:
        await aioflow.run(wf, checkpoint=FailingStore(ok=2))
    assert isinstance(info.value.__cause__, CheckpointError)


async def test_the_channel_and_retries_are_replayed(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    gate = {"fail": True}

    @task(retries=aioflow.RetryPolicy(retries=1, backoff=0))
    async def counts(ctx: TaskContext) -> int:
        await ctx.channel.incr("n", 5)
        await ctx.channel.append("log", ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return 1

    @task
    async def then(counts: int, ctx: TaskContext) -> tuple[int, list[int]]:
        if gate["fail"]:
            raise ConnectionError("down")
        return await ctx.channel.get("n"), await ctx.channel.get("log")

    with workflow("ch") as wf:
        counts >> then
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(wf, checkpoint=db)
    gate["fail"] = False
    result = await aioflow.resume(db, wf)
    assert result["then"] == (10, [1, 2])  # the channel as the first process left it
    assert result.tasks["counts"].attempts == 2 and result.tasks["counts"].executions == 1


async def test_dynamic_tasks_survive_a_resume(tmp_path: Path) -> None:
    ckpt = tmp_path / "d.ckpt"
    gate = {"crash": True}

    @task
    async def spawner(ctx: TaskContext) -> int:
        ctx.next_task(spawned)
        return 3

    with workflow("dyn") as wf:
        wf.add(spawner)
    global spawned_should_fail
    spawned_should_fail = gate
    with pytest.raises(aioflow.WorkflowFailedError):
        await aioflow.run(wf, checkpoint=ckpt)
    gate["crash"] = False
    result = await aioflow.resume(ckpt, wf)
    assert result["spawned"] == 6
    assert result.tasks["spawner"].executions == 1


spawned_should_fail: dict[str, bool] = {"crash": False}


@task
async def spawned(spawner: int) -> int:
    if spawned_should_fail["crash"]:
        raise RuntimeError("first time fails")
    return spawner * 2


GROUPED_WORKFLOW = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import aioflow
    from aioflow import task, workflow

    FAIL = Path(os.environ["AIOFLOW_TEST_FAIL"])

    @task
    async def left() -> int:
        return 1

    @task
    async def right() -> int:
        return 2

    @task
    async def join(left: int, right: int) -> int:
        if FAIL.exists():
            raise RuntimeError("not yet")
        return left + right

    with workflow("grouped") as wf:
        (left | right) >> join

    if __name__ == "__main__":
        try:
            aioflow.run_sync(wf, checkpoint=sys.argv[1])
        except aioflow.WorkflowFailedError:
            sys.exit(3)
    """
)


async def test_resume_in_another_process_with_unnamed_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "grouped.py"
    script.write_text(GROUPED_WORKFLOW)
    fail = tmp_path / "fail"
    fail.touch()
    ckpt = tmp_path / "g.ckpt"
    env = {**os.environ, "AIOFLOW_TEST_FAIL": str(fail)}
    env.pop("AIOFLOW_SECRET_KEY", None)
    proc = await anyio.run_process([sys.executable, str(script), str(ckpt)], env=env, check=False)
    assert proc.returncode == 3, proc.stderr.decode()
    fail.unlink()
    monkeypatch.setenv("AIOFLOW_TEST_FAIL", str(fail))
    monkeypatch.delenv("AIOFLOW_SECRET_KEY", raising=False)
    with workflow("unrelated"):
        parallel(step_a.bind(name="x1"), step_a.bind(name="x2"))  # other groups exist here
    module = load_module(script)
    result = await aioflow.resume(ckpt, module.wf)  # type: ignore[attr-defined]
    assert result["join"] == 3
    assert result.tasks["left"].executions == 1


async def test_a_failed_group_resumes_the_failed_and_the_cancelled_members(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    ran: list[str] = []
    gate = {"fail": True}
    started = anyio.Event()

    @task
    async def slow() -> str:
        ran.append("slow")
        if gate["fail"]:
            started.set()
            await anyio.sleep_forever()
        return "slow"

    @task
    async def fast() -> str:
        ran.append("fast")
        return "fast"

    @task
    async def breaks() -> str:
        ran.append("breaks")
        if gate["fail"]:
            await started.wait()
            raise ConnectionError("down")
        return "fixed"

    @task
    async def after(g: dict[str, str]) -> list[str]:
        return sorted(g.values())

    with workflow("grp") as wf:
        parallel(slow, fast, breaks, name="g") >> after
    with pytest.raises(aioflow.GroupFailedError):
        await aioflow.run(wf, checkpoint=db)
    gate["fail"] = False
    ran.clear()
    result = await aioflow.resume(db, wf)
    assert result["after"] == ["fast", "fixed", "slow"]
    assert sorted(ran) == ["breaks", "slow"]  # fast had finished: not run again


async def test_a_run_cancelled_by_a_task_goes_on_from_there(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ran: list[str] = []
    gate = {"cancel": True}

    @task
    async def first(ctx: TaskContext) -> int:
        ran.append("first")
        if gate["cancel"]:
            ctx.cancel_workflow("pause here")
        return 1

    @task
    async def second(first: int) -> int:
        ran.append("second")
        return first + 1

    with workflow("pause") as wf:
        first >> second
    with pytest.raises(aioflow.WorkflowCancelledError):
        await aioflow.run(wf, checkpoint=db)
    gate["cancel"] = False
    result = await aioflow.resume(db, wf)
    assert result["second"] == 2
    assert ran == ["first", "second"]


@pytest.mark.timeout(15)
async def test_a_task_waiting_for_a_slot_does_not_spin_the_background_commit() -> None:
    # Regression: with "background" commits, an execution dispatched but not started
    # (waiting for a slot, or on a remote worker not heard from yet) kept the journal
    # "pending" while a commit had nothing to write: the commit loop never yielded
    # and the event loop hung.

    @task
    async def holds() -> int:
        await anyio.sleep(0.05)  # while it holds the only slot, quick waits for it
        return 1

    @task
    async def quick() -> int:
        return 2

    with workflow("slots") as wf:
        parallel(holds.bind(name="h1"), holds.bind(name="h2"), quick.bind(name="q"), name="all")
    with anyio.fail_after(10):
        result = await aioflow.run(
            wf, checkpoint=MemoryStore(), checkpoint_every="background", max_concurrency=1
        )
    assert result["all"] == {"h1": 1, "h2": 1, "q": 2}


async def test_a_run_cancelled_by_its_callers_scope_is_journaled_cancelled(tmp_path: Path) -> None:
    """A timeout around ``run()`` (or Ctrl-C in the CLI) cancels the run from outside:
    its journal still ends with the run's status, not ``running`` as if it had died."""
    url = f"sqlite:///{tmp_path}/runs.db"
    started = anyio.Event()

    @task
    async def waits() -> None:
        started.set()
        await anyio.sleep_forever()

    @task
    async def first() -> int:
        return 1

    with workflow("outside") as wf:
        first >> waits

    async def run_it() -> None:
        await aioflow.run(wf, checkpoint=url, run_id="cut")

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_it)
        await started.wait()
        tg.cancel_scope.cancel()
    async with open_run_store(url) as store:
        (info,) = await store.list_runs()
    assert (info.run_id, info.status) == ("cut", "cancelled")
    resumed = await aioflow.resume(url, _finishing(), run_id="cut")
    assert resumed["first"] == 1 and resumed["waits"] == "done"


def _finishing() -> aioflow.Workflow:
    @task(name="waits")
    async def waits_done() -> str:
        return "done"

    @task(name="first")
    async def first_again() -> int:
        raise AssertionError("finished tasks are not run again")

    with workflow("outside") as wf:
        first_again >> waits_done
    return wf
