"""Run stores: where run journals live (the durable state of runs), and their URLs.

``open_run_store(url)`` gives a store for a URL: ``memory://`` (nothing durable)
or ``sqlite:///abs/path/runs.db`` / ``sqlite://relative/path.db`` (durable, many
runs and processes per file) or ``redis://host:6379/0`` / ``rediss://`` (shared by
every process that reaches the server). The contract is :class:`RunStore`; see
``docs/stores.md``.

Importing this package does not import ``sqlite3`` or ``redis``: the SQLite and
Redis stores are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import NO_BLOBS, Batch, RunStore
from .durations import format_duration, parse_duration
from .memory import MemoryStore
from .records import (
    FINAL_RUN_STATUSES,
    RUN_STATUSES,
    TASK_STATUSES,
    JournalRecord,
    RecordKind,
    RunInfo,
    RunStatus,
    StoreStatistics,
    TaskStatus,
    blob_digest,
)
from .urls import SCHEMES, StoreURL, parse_store_url

if TYPE_CHECKING:
    from .redis import RedisStore
    from .sqlite import SQLiteStore

__all__ = [
    "FINAL_RUN_STATUSES",
    "NO_BLOBS",
    "RUN_STATUSES",
    "SCHEMES",
    "TASK_STATUSES",
    "Batch",
    "JournalRecord",
    "MemoryStore",
    "RecordKind",
    "RedisStore",
    "RunInfo",
    "RunStatus",
    "RunStore",
    "SQLiteStore",
    "StoreStatistics",
    "StoreURL",
    "TaskStatus",
    "blob_digest",
    "create_run_store",
    "format_duration",
    "open_run_store",
    "parse_duration",
    "parse_store_url",
]


def __getattr__(name: str) -> Any:
    if name == "SQLiteStore":  # lazily: importing aioflow.stores does not import sqlite3
        from .sqlite import SQLiteStore

        return SQLiteStore
    if name == "RedisStore":  # lazily: importing aioflow.stores does not import redis
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def create_run_store(url: StoreURL) -> RunStore:
    """The store a parsed :class:`StoreURL` describes (not opened yet)."""
    if url.scheme == "memory":
        return MemoryStore(retention=url.retention)
    if url.scheme in ("redis", "rediss"):
        from .redis import RedisStore

        assert url.redis_url is not None
        return RedisStore(
            url.redis_url,
            prefix=url.prefix,
            timeout=url.timeout,
            connect_timeout=url.connect_timeout,
            retention=url.retention,
        )
    from .sqlite import SQLiteStore

    assert url.path is not None
    return SQLiteStore(
        url.path,
        synchronous=url.synchronous,
        busy_timeout=url.busy_timeout,
        check=url.check,
        retention=url.retention,
    )


def open_run_store(url: str | RunStore) -> RunStore:
    """The run store for ``url`` (a store is returned as is).

    The store is not opened yet: use it as ``async with open_run_store(url) as
    store:`` (or let it open on first use, and ``await store.aclose()``).

    URLs: ``memory://`` (a new, empty in-memory store each call);
    ``sqlite:///abs/path/runs.db`` (three slashes: an absolute path);
    ``sqlite://relative/path.db`` (two: relative to the current directory;
    ``sqlite://~/runs.db`` in the home directory);
    ``redis://[user:password@]host:port/db`` or ``rediss://`` (TLS). Options as a
    query: ``?synchronous=normal|full``, ``?retention=7d``, ``?busy_timeout=30s``,
    ``?check=quick|full|off`` (SQLite); ``?prefix=``, ``?retention=``, ``?timeout=``,
    ``?connect_timeout=`` (Redis).

    Raises:
        ConfigurationError: an unknown scheme (the message names the known ones),
            an unusable path, or a bad option.
    """
    if isinstance(url, RunStore):
        return url
    return create_run_store(parse_store_url(url))
