"""The worker runtime (``aioflow.Worker``) on its own: calls in, signed results out."""

from __future__ import annotations

import secrets
from typing import ClassVar

import anyio

import aioflow
from aioflow import task
from aioflow.channels.memory import MemoryChannel
from aioflow.serialization import Keyring, TaskRef, decode_result, encode_call
from aioflow.serialization.calls import TaskCall
from aioflow.worker import RunResources

_gate: anyio.Event | None = None
_both_started: anyio.Event | None = None
_started = 0


@task
async def waits_at_the_gate() -> str:
    global _started
    _started += 1
    assert _gate is not None and _both_started is not None
    if _started == 2:
        _both_started.set()
    await _gate.wait()
    return "through"


class _NoView:
    inputs: ClassVar[dict[str, object]] = {}
    results: ClassVar[dict[str, object]] = {}

    def has_node(self, name: str) -> bool:
        return False


async def test_one_call_delivered_twice_runs_twice_at_once_without_harm() -> None:
    """At-least-once delivery: a queue may hand a worker two entries of one call (the
    coordinator's enqueue retried after a lost reply). Both run; before, the second to
    end raised ``KeyError`` in the worker's bookkeeping and the worker process died."""
    global _gate, _both_started, _started
    _gate, _both_started, _started = anyio.Event(), anyio.Event(), 0
    keyring = Keyring(secrets.token_hex(32))
    call = TaskCall(
        run_id="r1", task_name="waits_at_the_gate", ref=TaskRef.from_callable(waits_at_the_gate.fn)
    )
    payload = encode_call(call, keyring)
    resources = RunResources(channel=MemoryChannel(), view=_NoView())  # type: ignore[arg-type]
    results: list[str] = []
    async with aioflow.Worker(concurrency=None, keyring=keyring) as worker:

        async def one() -> None:
            data = await worker.execute(payload, resources)
            results.append(decode_result(data, keyring).value)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
                await _both_started.wait()
                assert worker.running == 2 and worker.running_calls() == [call.call_id]
                _gate.set()
        assert worker.running == 0 and worker.running_calls() == []
    assert results == ["through", "through"]
