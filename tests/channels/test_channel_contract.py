"""The channel contract, on every channel (MemoryChannel and RedisChannel)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from channel_helpers import Advance, Box, Point

from aioflow import ChannelError
from aioflow.channels import Channel


async def test_get_set_delete(channel: Channel) -> None:
    assert await channel.get("k") is None
    assert await channel.get("k", "dflt") == "dflt"
    await channel.set("k", {"a": [1, 2]})
    assert await channel.get("k") == {"a": [1, 2]}
    await channel.set("k", "replaced")
    assert await channel.get("k") == "replaced"
    assert await channel.delete("k") is True
    assert await channel.delete("k") is False
    assert await channel.get("k", "gone") == "gone"


ODD = "odd key: with * and [brackets]? and \\ and é"


async def test_keys_exists_and_snapshot(channel: Channel) -> None:
    assert await channel.keys() == []
    assert await channel.snapshot() == {}
    assert not await channel.exists("n")
    await channel.set("a", 1)
    await channel.incr("n", 3)
    await channel.append("l", "x")
    await channel.set(ODD, ("t",))
    assert await channel.exists("n")
    assert sorted(await channel.keys()) == sorted(["a", "n", "l", ODD])
    assert await channel.snapshot() == {"a": 1, "n": 3, "l": ["x"], ODD: ("t",)}
    await channel.delete("a")
    assert sorted(await channel.keys()) == sorted(["n", "l", ODD])


ROUND_TRIP = {
    "tuple": (1, "two", (3.0,)),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "datetime": datetime(2026, 12, 1, 22, 20, 5, 123456, tzinfo=UTC),
    "timedelta": timedelta(seconds=90),
    "decimal": Decimal("3.1415926535897932384626"),
    "dataclass": Point(1, 2.5, "p"),
    "nested": {"a": {"b": [1, {"c": (2, 3)}], "d": None}, "e": [Point(0, 0.0)]},
    "bytes": b"\x00AF\xff",
    "str": "AF looks like the envelope magic",
    "int": -42,
    "big int": 2**80,
    "bool": True,
    "float": 0.1,
    "list": [1, (2,), {3}],
    "empty list": [],
    "empty dict": {},
    "none": None,
}


@pytest.mark.parametrize("name", ROUND_TRIP)
async def test_values_keep_their_types(channel: Channel, name: str) -> None:
    value = ROUND_TRIP[name]
    await channel.set("v", value)
    read = await channel.get("v")
    assert read == value
    assert type(read) is type(value)
    if isinstance(value, dict) and "e" in value:
        assert type(read["a"]["b"][1]["c"]) is tuple
        assert type(read["e"][0]) is Point


async def test_none_is_not_absent(channel: Channel) -> None:
    await channel.set("none", None)
    assert await channel.exists("none")
    assert await channel.get("none", "dflt") is None
    assert await channel.keys() == ["none"]
    assert await channel.snapshot() == {"none": None}


async def test_values_are_copied_in_and_out(channel: Channel) -> None:
    original = {"rows": [1]}
    await channel.set("k", original)
    original["rows"].append(2)
    read = await channel.get("k")
    read["rows"].append(3)
    assert await channel.get("k") == {"rows": [1]}

    box = Box([1])
    await channel.append("l", box)
    box.items.append(2)
    listed = await channel.get("l")
    listed[0].items.append(3)
    listed.append("extra")
    assert await channel.get("l") == [Box([1])]
    snap = await channel.snapshot()
    snap["k"]["rows"].clear()
    assert await channel.get("k") == {"rows": [1]}


async def test_ttl_expiry(channel: Channel, advance: Advance) -> None:
    await channel.set("short", 1, ttl=0.1)
    await channel.set("forever", 2)
    assert await channel.get("short") == 1
    await advance(0.12)
    assert await channel.get("short") is None
    assert not await channel.exists("short")
    assert await channel.keys() == ["forever"]
    assert await channel.snapshot() == {"forever": 2}
    await channel.set("short", 3, ttl=0.03)
    await channel.set("short", 4)  # a plain set clears the TTL
    await advance(0.05)
    assert await channel.get("short") == 4


async def test_ttl_on_lists_and_encoded_values(channel: Channel, advance: Advance) -> None:
    await channel.set("l", [1, 2], ttl=0.1)
    await channel.set("p", Point(1, 1.0), ttl=0.1)
    await channel.set("zero", "x", ttl=0)
    assert await channel.get("zero", "expired") == "expired"
    assert await channel.get("l") == [1, 2]
    await advance(0.12)
    assert await channel.get("l") is None
    assert await channel.get("p") is None
    assert await channel.append("l", 3) == 1  # a fresh list


async def test_incr_semantics(channel: Channel) -> None:
    assert await channel.incr("n") == 1
    assert await channel.incr("n", 5) == 6
    assert await channel.incr("n", -10) == -4
    assert await channel.get("n") == -4
    assert type(await channel.get("n")) is int
    await channel.set("m", 41)
    assert await channel.incr("m") == 42
    assert await channel.get("m") == 42


async def test_incr_keeps_a_ttl(channel: Channel, advance: Advance) -> None:
    await channel.set("n", 1, ttl=0.1)
    assert await channel.incr("n") == 2
    await advance(0.12)
    assert await channel.get("n") is None


@pytest.mark.parametrize("value", ["text", "7", 1.5, True, [1], (1,), Point(1, 1.0)])
async def test_incr_refuses_a_non_int(channel: Channel, value: object) -> None:
    await channel.set("s", value)
    with pytest.raises(ChannelError, match="not an int") as info:
        await channel.incr("s")
    assert "integers" in info.value.hint
    assert await channel.get("s") == value


async def test_append_semantics(channel: Channel) -> None:
    assert await channel.append("l", "x") == 1
    assert await channel.append("l", ("y", 1)) == 2
    assert await channel.append("l", None) == 3
    assert await channel.get("l") == ["x", ("y", 1), None]
    await channel.set("m", [1, 2])
    assert await channel.append("m", 3) == 3
    assert await channel.get("m") == [1, 2, 3]
    await channel.set("e", [])
    assert await channel.get("e") == []
    assert await channel.exists("e")
    assert await channel.append("e", "first") == 1


@pytest.mark.parametrize("value", ["text", 7, (1, 2), {"a": 1}, None])
async def test_append_refuses_a_non_list(channel: Channel, value: object) -> None:
    await channel.set("s", value)
    with pytest.raises(ChannelError, match="not a list") as info:
        await channel.append("s", 1)
    assert "lists" in info.value.hint
    assert await channel.get("s") == value


async def test_an_uncopyable_value_is_refused(channel: Channel) -> None:
    with pytest.raises(ChannelError, match="lock") as info:
        await channel.set("lock", threading.Lock())
    assert "locks" in info.value.hint
    assert not await channel.exists("lock")
