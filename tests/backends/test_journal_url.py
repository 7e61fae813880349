"""The journal of a Redis backend URL: its Redis, its prefix, its result_ttl."""

from __future__ import annotations

from aioflow.backends import journal_url, open_backend
from aioflow.stores import open_run_store


def test_the_journal_of_a_redis_url_keeps_finished_runs_for_its_result_ttl() -> None:
    assert journal_url("redis://h:6379/0") == "redis://h:6379/0?retention=86400"
    url = "redis://h:6379/0?prefix=app&result_ttl=60&timeout=3"
    assert journal_url(url) == "redis://h:6379/0?retention=60&prefix=app"
    assert journal_url("sqlite:///tmp/runs.db") == "sqlite:///tmp/runs.db"


async def test_a_run_journaled_through_the_url_is_kept_as_long_as_by_the_backend() -> None:
    url = "redis://127.0.0.1:6379/0?prefix=app&result_ttl=120"
    backend = open_backend(url)
    by_backend = backend.run_store()  # what run(wf, backend=url) journals to
    by_url = open_run_store(journal_url(url))  # what the CLI and resume() open
    assert by_backend is not None
    assert by_url.retention == by_backend.retention == 120.0
    assert by_url.describe() == by_backend.describe()
