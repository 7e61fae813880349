"""MemoryChannel and TypedChannel."""

from __future__ import annotations

import threading
from typing import NotRequired, TypedDict

import pytest

from aioflow import ChannelError, ChannelValidationError, MemoryChannel, TypedChannel


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_basic_operations() -> None:
    ch = MemoryChannel()
    assert await ch.get("k") is None
    assert await ch.get("k", "dflt") == "dflt"
    await ch.set("k", {"a": [1, 2]})
    assert await ch.get("k") == {"a": [1, 2]}
    assert await ch.exists("k")
    assert await ch.keys() == ["k"]
    assert await ch.delete("k") is True
    assert await ch.delete("k") is False
    assert await ch.incr("n") == 1
    assert await ch.incr("n", 5) == 6
    assert await ch.append("l", "x") == 1
    assert await ch.append("l", "y") == 2
    assert await ch.snapshot() == {"n": 6, "l": ["x", "y"]}


async def test_values_are_copied_in_and_out() -> None:
    ch = MemoryChannel()
    original = {"rows": [1]}
    await ch.set("k", original)
    original["rows"].append(2)
    read = await ch.get("k")
    read["rows"].append(3)
    assert await ch.get("k") == {"rows": [1]}


async def test_ttl_expires_with_the_clock() -> None:
    clock = FakeClock()
    ch = MemoryChannel(clock=clock)
    await ch.set("short", 1, ttl=10)
    await ch.set("forever", 2)
    clock.now += 9.9
    assert await ch.get("short") == 1
    clock.now += 0.2
    assert await ch.get("short") is None
    assert await ch.keys() == ["forever"]
    await ch.set("short", 3, ttl=1)
    await ch.set("short", 4)  # a plain set clears the TTL
    clock.now += 100
    assert await ch.get("short") == 4


async def test_incr_and_append_refuse_wrong_types() -> None:
    ch = MemoryChannel()
    await ch.set("s", "text")
    with pytest.raises(ChannelError, match="not an int"):
        await ch.incr("s")
    with pytest.raises(ChannelError, match="not a list"):
        await ch.append("s", 1)


async def test_uncopyable_value_is_refused() -> None:
    ch = MemoryChannel()
    with pytest.raises(ChannelError, match="cannot be copied") as info:
        await ch.set("lock", threading.Lock())
    assert "locks" in info.value.hint


class Progress(TypedDict):
    done: int
    label: str | None
    notes: NotRequired[list[str]]


async def test_typed_channel_validates_on_write_and_read() -> None:
    raw = MemoryChannel()
    tc = TypedChannel(raw, Progress)
    await tc.set("done", 3)
    assert await tc.get("done") == 3
    with pytest.raises(ChannelValidationError, match="done"):
        await tc.set("done", "three")
    with pytest.raises(ChannelValidationError, match="not a field"):
        await tc.set("unknown", 1)
    await raw.set("done", "corrupted by someone else")
    with pytest.raises(ChannelValidationError, match="read"):
        await tc.get("done")


async def test_typed_channel_absent_fields() -> None:
    tc = TypedChannel(MemoryChannel(), Progress)
    assert await tc.get("notes") is None  # NotRequired
    assert await tc.get("label") is None  # Optional
    with pytest.raises(ChannelError, match="required field 'done'"):
        await tc.get("done")
    assert await tc.get("done", 0) == 0
    await tc.update({"done": 1, "label": "x", "notes": ["a"]})
    assert await tc.to_dict() == {"done": 1, "label": "x", "notes": ["a"]}
    assert await tc.delete("label")


async def test_typed_channel_needs_a_typeddict() -> None:
    with pytest.raises(ChannelValidationError, match="TypedDict"):
        TypedChannel(MemoryChannel(), dict)


async def test_typed_channel_prefix_keeps_views_apart() -> None:
    raw = MemoryChannel()
    a = TypedChannel(raw, Progress, prefix="a:")
    b = TypedChannel(raw, Progress, prefix="b:")
    await a.set("done", 1)
    await b.set("done", 2)
    assert (await a.get("done"), await b.get("done")) == (1, 2)
    assert sorted(await raw.keys()) == ["a:done", "b:done"]
