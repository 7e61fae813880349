"""Checkpoint and resume: atomic, signed snapshots; finished tasks never run again."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import aioflow
from aioflow import CheckpointError, TaskContext, parallel, task, workflow
from aioflow.serialization import Keyring

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


async def test_completed_run_resumes_to_the_same_result(tmp_path: Path) -> None:
    ckpt = tmp_path / "done.ckpt"
    first = await aioflow.run(two_steps(), checkpoint=ckpt)
    again = await aioflow.resume(ckpt, two_steps())
    assert again.results == first.results
    assert again.run_id == first.run_id
    assert again.tasks["step_a"].executions == 1


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


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
async def test_damaged_checkpoint_is_refused_and_left_untouched(
    tmp_path: Path, damage: str
) -> None:
    ckpt = tmp_path / "c.ckpt"
    await aioflow.run(two_steps(), checkpoint=ckpt)
    data = bytearray(ckpt.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) - 5]
    else:
        data = bytearray(b"not a checkpoint at all")
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        await aioflow.resume(ckpt, two_steps())
    assert isinstance(info.value.__cause__, aioflow.SerializationError)
    assert ckpt.read_bytes() == bytes(data)


async def test_keys_and_rotation(tmp_path: Path) -> None:
    ckpt = tmp_path / "k.ckpt"
    await aioflow.run(two_steps(), checkpoint=ckpt, keyring=Keyring(KEY_A))
    with pytest.raises(CheckpointError) as info:
        await aioflow.resume(ckpt, two_steps(), keyring=Keyring(KEY_B))
    assert isinstance(info.value.__cause__, aioflow.PayloadSignatureError)
    rotated = Keyring(KEY_B, previous=[KEY_A])
    result = await aioflow.resume(ckpt, two_steps(), keyring=rotated)
    assert result["step_b"] == 2
    # The resumed run re-signed the checkpoint with the new key.
    result = await aioflow.resume(ckpt, two_steps(), keyring=Keyring(KEY_B))
    assert result["step_b"] == 2


async def test_checkpoint_of_another_workflow_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.ckpt"
    await aioflow.run(two_steps(), checkpoint=ckpt)
    with workflow("two") as other:
        step_a >> step_b.bind(name="different")
    with pytest.raises(CheckpointError, match="other tasks"):
        await aioflow.resume(ckpt, other)


async def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        await aioflow.resume(tmp_path / "nope.ckpt", two_steps())


async def test_manual_mode_writes_only_on_request(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.ckpt"
    existed: list[bool] = []

    @task
    async def quiet() -> int:
        return 1

    @task
    async def saver(quiet: int, ctx: TaskContext) -> int:
        existed.append(ckpt.exists())
        await ctx.checkpoint()
        assert ckpt.exists()
        return quiet

    with workflow("manual") as wf:
        quiet >> saver
    await aioflow.run(wf, checkpoint=ckpt, checkpoint_every="manual")
    assert existed == [False]
    resumed = await aioflow.resume(ckpt, wf, checkpoint_every="manual")
    assert resumed["saver"] == 1
    assert resumed.tasks["quiet"].executions == 1  # done before the snapshot
    assert resumed.tasks["saver"].executions == 2  # it was running: it ran again


async def test_ctx_checkpoint_without_a_checkpoint_is_an_error() -> None:
    @task
    async def wants(ctx: TaskContext) -> None:
        await ctx.checkpoint()

    with workflow("w") as wf:
        wf.add(wants)
    with pytest.raises(aioflow.WorkflowFailedError) as info:
        await aioflow.run(wf)
    assert isinstance(info.value.__cause__, aioflow.RunStateError)


async def test_failed_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "p.ckpt"
    await aioflow.run(two_steps(), checkpoint=ckpt)
    before = ckpt.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(aioflow.WorkflowFailedError) as info:
        await aioflow.run(two_steps(), checkpoint=ckpt)
    assert isinstance(info.value.__cause__, CheckpointError)
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.ckpt"]


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
