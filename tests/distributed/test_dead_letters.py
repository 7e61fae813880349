"""Stream entries that do not verify (garbage, a flipped byte, another key's
signature, pickles meant to run code) are dead-lettered: nothing of them is
unpickled, the worker keeps serving; ``aioflow dlq list|retry|purge`` work on them.
"""

from __future__ import annotations

import json
import pickle
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from worker_processes import WorkerProcesses

import aioflow
from aioflow.backends.redis import DeadLetter
from aioflow.serialization import Keyring, TaskCall, encode_call
from aioflow.serialization.refs import TaskRef

from . import tasks
from .conftest import worker_logs
from .helpers import cli, opened, wait_for

StartWorkers = Callable[..., WorkerProcesses]


class Trap:
    """Unpickling it creates ``path`` (so a test sees whether anything was unpickled)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _call(run_id: str, keyring: Keyring, **args: object) -> bytes:
    call = TaskCall(
        run_id=run_id,
        task_name="quick",
        ref=TaskRef("distributed.tasks:quick"),
        args=dict(args) or {"index": 1},
        call_id=f"{run_id}-{secrets.token_hex(2)}",
    )
    return encode_call(call, keyring, allow_pickle=True)


def forged_entries(keyring: Keyring, traps: Path) -> dict[str, bytes]:
    """Field d of each entry, by what is wrong with it."""
    other = Keyring(secrets.token_hex(32))
    good = bytearray(_call("forged", keyring))
    good[len(good) // 2] ^= 0x01  # one bit of the signed body
    return {
        "garbage": b"\x00\xffnot a payload at all",
        "flipped": bytes(good),
        "other-key": _call("forged", other),
        "raw-pickle": pickle.dumps(Trap(traps / "raw-pickle")),
        "other-key-pickle": _call("forged", other, index=Trap(traps / "other-key-pickle")),
    }


async def test_forged_entries_are_dead_lettered_never_unpickled_and_the_worker_serves_on(
    url: str,
    prefix: str,
    keyring: Keyring,
    start_workers: StartWorkers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workers = start_workers(url, count=1, concurrency=4)  # it creates the stream's group
    traps = tmp_path / "traps"
    traps.mkdir()
    forged = forged_entries(keyring, traps)
    stream = f"{prefix}:queue:{{default}}:p0"
    client = aioredis.Redis.from_url(url.split("?")[0])
    try:
        for what, data in forged.items():
            await client.xadd(stream, {"r": f"forged-{what}", "c": f"c-{what}", "d": data})
            await client.incr(f"{prefix}:queue:{{default}}:len")
        async with opened(url) as backend:

            async def all_dead() -> list[DeadLetter]:
                letters = await backend.dead_letters()
                return letters if len(letters) == len(forged) else []

            letters = await wait_for(all_dead, within=15)
            assert {d.run_id for d in letters} == {f"forged-{w}" for w in forged}
            assert all(d.queue == "default" and d.error for d in letters), letters
            assert not list(traps.iterdir())  # nothing was unpickled

            # The worker is alive and serving: a normal run succeeds.
            assert workers.processes[0].poll() is None, worker_logs(tmp_path)
            result = await aioflow.run(tasks.fan_out("after", tasks.quick, 5), backend=url)
            assert [result[f"t{i:03d}"] for i in range(5)] == [0, 2, 4, 6, 8]

            code, out, err = await cli(capsys, "dlq", "list", "--backend", url, "--json")
            assert code == 0, err
            listed = json.loads(out)
            assert sorted(d["run_id"] for d in listed) == sorted(d.run_id for d in letters)
            by_run = {d["run_id"]: d for d in listed}
            assert "signature" in by_run["forged-flipped"]["error"].lower(), by_run
            for d in listed:
                assert d["queue"] == "default" and d["worker"] == workers.worker_id(0)

            # retry: back on the queue, and dead-lettered again (they still do not verify).
            before = {d.id for d in letters}
            code, out, err = await cli(capsys, "dlq", "retry", "--backend", url, "--all")
            assert code == 0, err

            async def again() -> list[DeadLetter]:
                letters = await backend.dead_letters()
                ids = {d.id for d in letters}
                return letters if len(ids) == len(forged) and not ids & before else []

            await wait_for(again, within=15)
            assert not list(traps.iterdir())

            code, out, err = await cli(capsys, "dlq", "purge", "--backend", url, "--all")
            assert code == 0, err
            assert await backend.dead_letters() == []
            code, out, err = await cli(capsys, "dlq", "list", "--backend", url, "--json")
            assert (code, json.loads(out)) == (0, [])
            assert await client.xlen(stream) == 0
            assert int(await client.get(f"{prefix}:queue:{{default}}:len") or 0) == 0
    finally:
        await client.aclose()
    assert workers.processes[0].poll() is None
