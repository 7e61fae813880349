"""Fixtures of the run store tests: every contract test runs on every store.

The Redis store runs on a real ``redis-server`` started for the session on a free
port of 127.0.0.1 (``tests/redis_server.py``); each Redis store gets its own key
prefix, so every store starts empty. Without ``redis-server`` the Redis tests
fail (with how to install it); they are never skipped.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer
from store_helpers import FakeClock, StoreFactory

from aioflow.stores import MemoryStore, RunStore
from aioflow.stores.redis import RedisStore
from aioflow.stores.sqlite import SQLiteStore

STORE_KINDS = ("memory", "sqlite", "redis")
_prefixes = itertools.count()


def unique_prefix() -> str:
    """A key prefix no other store of the session uses."""
    return f"test{next(_prefixes)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def make_store(
    store_kind: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[StoreFactory]:
    """Make stores of the parametrized kind on the fake clock; all closed at the end.

    SQLite stores get a new database file each, unless ``path=`` is given; Redis
    stores a new key prefix each, unless ``prefix=`` is given.
    """
    made: list[RunStore] = []
    server: RedisServer | None = None
    if store_kind == "redis":
        server = request.getfixturevalue("redis_server")

    def make(**options: Any) -> RunStore:
        options.setdefault("clock", clock)
        store: RunStore
        if store_kind == "memory":
            store = MemoryStore(**options)
        elif store_kind == "redis":
            assert server is not None
            options.setdefault("prefix", unique_prefix())
            store = RedisStore(options.pop("url", server.url), **options)
        else:
            path = options.pop("path", tmp_path / f"runs-{len(made)}.db")
            store = SQLiteStore(path, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[RunStore]:
    """An open store of each kind (memory, sqlite, redis), on the fake clock."""
    async with make_store() as opened:
        yield opened
