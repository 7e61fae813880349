"""Importable helpers of the channel tests (the codec sends dataclasses by import path)."""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Awaitable, Callable

from aioflow.serialization import Keyring

KEY = "channel-test-key-0123456789-abcdefghijklmnopqrstuvwxyz"
OTHER_KEY = "other-channel-key-0123456789-abcdefghijklmnopqrstuvwxyz"

#: Lets time pass for a channel's TTLs: the fake clock of a MemoryChannel moves, a
#: RedisChannel (whose TTLs run on the server's clock) sleeps.
Advance = Callable[[float], Awaitable[None]]

_runs = itertools.count()


def keyring() -> Keyring:
    return Keyring(KEY)


def unique_run_id() -> str:
    """A run id no other channel of the session uses."""
    return f"run{next(_runs)}-{uuid.uuid4().hex[:8]}"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float
    label: str = ""


@dataclasses.dataclass
class Box:
    items: list[int]
