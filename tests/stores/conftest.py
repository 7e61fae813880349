"""Fixtures of the run store tests: every contract test runs on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from store_helpers import FakeClock, StoreFactory

from aioflow.stores import MemoryStore, RunStore
from aioflow.stores.sqlite import SQLiteStore

STORE_KINDS = ("memory", "sqlite")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def make_store(
    store_kind: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    """Make stores of the parametrized kind on the fake clock; all closed at the end.

    SQLite stores get a new database file each, unless ``path=`` is given.
    """
    made: list[RunStore] = []

    def make(**options: Any) -> RunStore:
        options.setdefault("clock", clock)
        store: RunStore
        if store_kind == "memory":
            store = MemoryStore(**options)
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
    """An open store of each kind (memory, sqlite), on the fake clock."""
    async with make_store() as opened:
        yield opened
