"""The run store contract, checked on every store (memory and SQLite).

Each test gets an open store of each kind on a fake clock (``conftest.py``).
"""

from __future__ import annotations

import dataclasses
import math

import anyio
import anyio.lowlevel
import pytest
from store_helpers import FakeClock, StoreFactory, finished, record, run_info

from aioflow.errors import AioflowError, CheckpointError, ConfigurationError
from aioflow.stores import (
    JournalRecord,
    MemoryStore,
    RecordKind,
    RunInfo,
    RunStore,
    blob_digest,
    open_run_store,
)
from aioflow.stores.records import ERROR_TEXT_LIMIT

# --- runs and records -------------------------------------------------------------------


async def test_begin_run_and_get_run(store: RunStore, clock: FakeClock) -> None:
    last = await store.begin_run(
        run_info("r1", "etl", started_at=5.0, tasks_total=3),
        [record(RecordKind.RUN_STARTED, data=b"inputs")],
    )
    assert last == 1
    info = await store.get_run("r1")
    assert (info.run_id, info.workflow, info.fingerprint) == ("r1", "etl", "fp")
    assert (info.status, info.started_at, info.finished_at) == ("running", 5.0, None)
    assert (info.tasks_total, info.tasks_succeeded, info.tasks_failed) == (3, 0, 0)
    assert (info.error, info.updated_at, info.last_seq) == (None, clock.now, 1)
    assert not info.finished and info.duration is None


async def test_begin_run_refuses_an_existing_run_id(store: RunStore) -> None:
    await store.begin_run(run_info("r1"), [record(RecordKind.RUN_STARTED, data=b"first")])
    with pytest.raises(CheckpointError, match="already exists") as caught:
        await store.begin_run(run_info("r1"), [record(RecordKind.RUN_STARTED, data=b"second")])
    assert caught.value.run_id == "r1"
    assert [r.data for r in await store.read("r1")] == [b"first"]


async def test_seqs_are_consecutive_and_read_keeps_their_order(store: RunStore) -> None:
    await store.begin_run(run_info("r"), [record(RecordKind.RUN_STARTED)])
    assert await store.append("r", [finished(f"t{i}", data=bytes([i])) for i in range(3)]) == 4
    assert await store.append("r", []) == 4  # an empty batch changes nothing
    assert await store.append("r", [finished("t3", data=b"\x03")]) == 5
    records = await store.read("r")
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.kind for r in records] == [RecordKind.RUN_STARTED] + [RecordKind.TASK_FINISHED] * 4
    assert [r.data for r in records[1:]] == [b"\x00", b"\x01", b"\x02", b"\x03"]
    assert [r.seq for r in await store.read("r", after=3)] == [4, 5]
    assert await store.read("r", after=5) == []


async def test_records_come_back_field_for_field(store: RunStore) -> None:
    given = [
        JournalRecord(RecordKind.RUN_STARTED, at=1.5, data=b"\x00signed\xff"),
        JournalRecord(RecordKind.TASK_STARTED, "extract", 1, None, 2.25),
        JournalRecord(RecordKind.TASK_FINISHED, "extract", 1, "retrying", 3, b"err"),
        JournalRecord(RecordKind.TASK_ADDED, "late", None, None, 4.0, b"ref"),
        JournalRecord(RecordKind.CHANNEL_WRITE, None, None, None, 5.0, b"k=v"),
        JournalRecord(RecordKind.CONTROL, "extract", 2, None, 6.0, b"goto"),
        JournalRecord(RecordKind.RUN_FINISHED, None, None, "succeeded", 7.0),
    ]
    await store.begin_run(run_info("r"), given[:1])
    await store.append("r", given[1:])
    back = await store.read("r")
    assert back == [dataclasses.replace(r, seq=i, at=float(r.at)) for i, r in enumerate(given, 1)]
    assert all(type(r.at) is float for r in back)


async def test_iter_records_pages_through_a_run(store: RunStore) -> None:
    await store.begin_run(run_info("r"), [finished(f"t{i}") for i in range(25)])
    seqs = [r.seq async for r in store.iter_records("r", page_size=7)]
    assert seqs == list(range(1, 26))
    assert [r.seq async for r in store.iter_records("r", after=20, page_size=5)] == [
        21,
        22,
        23,
        24,
        25,
    ]
    assert [r async for r in store.iter_records("r", page_size=1000)] == await store.read("r")


async def test_tasks_finished_update_the_counters(store: RunStore) -> None:
    await store.begin_run(run_info("r", tasks_total=4))
    await store.append(
        "r",
        [
            record(RecordKind.TASK_STARTED, "a"),
            finished("a", "retrying"),  # an attempt, not the task: not counted
            finished("a", "succeeded"),
            finished("b", "failed"),
            finished("c", "cancelled"),
            finished("d", "skipped"),
            finished("e", "iterating"),
        ],
        tasks_total=6,
    )
    await store.append("r", [finished("e", "succeeded")])
    info = await store.get_run("r")
    assert (info.tasks_total, info.tasks_succeeded, info.tasks_failed) == (6, 2, 1)
    await store.append("r", [], tasks_total=7)  # tasks added at run time
    assert (await store.get_run("r")).tasks_total == 7


async def test_updated_at_follows_the_store_clock(store: RunStore, clock: FakeClock) -> None:
    await store.begin_run(run_info("r"))
    clock.now += 30
    await store.append("r", [finished("a")])
    assert (await store.get_run("r")).updated_at == clock.now


# --- group commit: a batch is all or nothing ---------------------------------------------

INVALID_RECORDS = {
    "kind not a RecordKind": JournalRecord("bogus", "t", 1, "succeeded", 1.0, b""),  # type: ignore[arg-type]
    "task_finished without status": JournalRecord(RecordKind.TASK_FINISHED, "t", 1, None, 1.0),
    "unknown task status": JournalRecord(RecordKind.TASK_FINISHED, "t", 1, "done", 1.0),
    "task record without task": JournalRecord(RecordKind.TASK_STARTED, None, 1, None, 1.0),
    "status on a task_started": JournalRecord(RecordKind.TASK_STARTED, "t", 1, "failed", 1.0),
    "negative attempt": JournalRecord(RecordKind.TASK_STARTED, "t", -1, None, 1.0),
    "attempt too large for SQLite": JournalRecord(RecordKind.TASK_STARTED, "t", 2**63, None, 1.0),
    "bool attempt": JournalRecord(RecordKind.TASK_STARTED, "t", True, None, 1.0),
    "at is NaN": JournalRecord(RecordKind.TASK_STARTED, "t", 1, None, math.nan),
    "at is a str": JournalRecord(RecordKind.TASK_STARTED, "t", 1, None, "now"),  # type: ignore[arg-type]
    "data is a str": JournalRecord(RecordKind.TASK_STARTED, "t", 1, None, 1.0, "x"),  # type: ignore[arg-type]
    "seq already set": JournalRecord(RecordKind.TASK_STARTED, "t", 1, None, 1.0, b"", 7),
    "empty task name": JournalRecord(RecordKind.TASK_ADDED, "", None, None, 1.0),
    "not a record": ("task_finished", "t"),
}


@pytest.mark.parametrize("bad", INVALID_RECORDS.values(), ids=INVALID_RECORDS.keys())
async def test_a_batch_failing_half_way_leaves_nothing(store: RunStore, bad: JournalRecord) -> None:
    await store.begin_run(run_info("r", tasks_total=2), [finished("before")])
    before = await store.get_run("r")
    blob = b"blob of the failed batch"
    batch = [finished("a"), finished("b", "failed"), bad, finished("c")]
    with pytest.raises(CheckpointError, match="record 2 of the batch is invalid") as caught:
        await store.append("r", batch, blobs={blob_digest(blob): blob}, tasks_total=9)
    assert caught.value.run_id == "r"
    assert [r.task_name for r in await store.read("r")] == ["before"]
    assert await store.get_run("r") == before  # counters, tasks_total, last_seq untouched
    with pytest.raises(CheckpointError, match="no blob"):
        await store.get_blob(blob_digest(blob))
    # The journal goes on from where it was.
    assert await store.append("r", [finished("a")]) == 2
    assert [r.seq for r in await store.read("r")] == [1, 2]


async def test_a_generator_of_records_failing_half_way_leaves_nothing(store: RunStore) -> None:
    await store.begin_run(run_info("r"))

    def records() -> object:
        yield finished("a")
        yield finished("b")
        raise RuntimeError("the producer broke")

    with pytest.raises(RuntimeError, match="producer broke"):
        await store.append("r", records())  # type: ignore[arg-type]
    assert await store.read("r") == []
    assert (await store.get_run("r")).tasks_succeeded == 0


async def test_begin_run_with_an_invalid_record_creates_no_run(store: RunStore) -> None:
    with pytest.raises(CheckpointError, match="record 1 of the batch"):
        await store.begin_run(run_info("r"), [record(RecordKind.RUN_STARTED), record(at=math.nan)])
    with pytest.raises(CheckpointError, match="no run 'r'"):
        await store.get_run("r")
    await store.begin_run(run_info("r"))  # the id is free


async def test_finish_run_with_an_invalid_record_does_not_finish(store: RunStore) -> None:
    await store.begin_run(run_info("r"))
    with pytest.raises(CheckpointError, match="invalid"):
        await store.finish_run("r", "succeeded", records=[finished("a"), finished("b", "done")])
    info = await store.get_run("r")
    assert (info.status, info.last_seq, info.tasks_succeeded) == ("running", 0, 0)


@pytest.mark.parametrize(
    "info",
    [
        run_info("r", status="succeeded"),
        run_info("r", finished_at=3.0),
        run_info("r", error="boom"),
        run_info("r", started_at=math.inf),
        run_info("r", tasks_total=-1),
        run_info(""),
        run_info("x" * 201),
    ],
)
async def test_begin_run_refuses_what_is_not_a_new_run(store: RunStore, info: object) -> None:
    with pytest.raises(CheckpointError):
        await store.begin_run(info)  # type: ignore[arg-type]
    assert await store.list_runs() == []


async def test_invalid_blobs_are_refused_with_the_batch(store: RunStore) -> None:
    await store.begin_run(run_info("r"))
    with pytest.raises(CheckpointError, match="not the digest"):
        await store.append("r", [finished("a")], blobs={blob_digest(b"x"): b"y"})
    with pytest.raises(CheckpointError, match="must be bytes"):
        await store.append("r", [finished("a")], blobs={blob_digest(b"x"): "x"})  # type: ignore[dict-item]
    with pytest.raises(CheckpointError, match="tasks_total"):
        await store.append("r", [finished("a")], tasks_total=-3)
    assert await store.read("r") == []


# --- finishing -------------------------------------------------------------------------------


async def test_finish_run_sets_the_final_state_in_one_go(store: RunStore, clock: FakeClock) -> None:
    await store.begin_run(run_info("r", started_at=100.0, tasks_total=2), [finished("a")])
    info = await store.finish_run(
        "r",
        "failed",
        finished_at=160.0,
        error="ValueError: bad row",
        records=[finished("b", "failed"), record(RecordKind.RUN_FINISHED, status="failed")],
    )
    assert info == await store.get_run("r")
    assert (info.status, info.finished_at, info.duration) == ("failed", 160.0, 60.0)
    assert (info.error, info.tasks_succeeded, info.tasks_failed, info.last_seq) == (
        "ValueError: bad row",
        1,
        1,
        3,
    )
    assert info.finished and info.updated_at == clock.now


async def test_finish_run_defaults_to_the_store_clock_and_cuts_long_errors(
    store: RunStore, clock: FakeClock
) -> None:
    await store.begin_run(run_info("r"))
    info = await store.finish_run("r", "cancelled", error="x" * 5000)
    assert info.finished_at == clock.now
    assert info.error is not None and len(info.error) == ERROR_TEXT_LIMIT
    assert info.error.endswith("…")


async def test_a_finished_run_is_closed_for_writing(store: RunStore) -> None:
    await store.begin_run(run_info("r"))
    await store.finish_run("r", "succeeded")
    with pytest.raises(CheckpointError, match="already finished"):
        await store.append("r", [finished("late")])
    with pytest.raises(CheckpointError, match="already finished"):
        await store.finish_run("r", "failed")
    with pytest.raises(CheckpointError, match="already finished"):
        await store.put_blob("r", b"late")
    info = await store.get_run("r")
    assert (info.status, info.last_seq) == ("succeeded", 0)


@pytest.mark.parametrize("status", ["running", "done", None])
async def test_finish_run_needs_a_final_status(store: RunStore, status: object) -> None:
    await store.begin_run(run_info("r"))
    with pytest.raises(CheckpointError, match="final status"):
        await store.finish_run("r", status)  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="finished_at"):
        await store.finish_run("r", "succeeded", finished_at=math.nan)
    assert (await store.get_run("r")).status == "running"


# --- unknown runs --------------------------------------------------------------------------


async def test_unknown_runs_are_a_checkpoint_error_with_a_hint(store: RunStore) -> None:
    calls = [
        store.get_run("nope"),
        store.read("nope"),
        store.append("nope", [finished("a")]),
        store.finish_run("nope", "succeeded"),
        store.put_blob("nope", b"x"),
    ]
    for call in calls:
        with pytest.raises(CheckpointError, match="no run 'nope'") as caught:
            await call
        assert caught.value.run_id == "nope"
        assert "aioflow runs" in caught.value.hint
    with pytest.raises(CheckpointError, match="no run 'nope'"):
        async for _ in store.iter_records("nope"):
            pass
    with pytest.raises(CheckpointError, match="invalid run id"):
        await store.get_run(42)  # type: ignore[arg-type]


# --- listing -------------------------------------------------------------------------------


async def test_list_runs_newest_first_with_filters_and_limit(store: RunStore) -> None:
    for i, (workflow, started) in enumerate(
        [("etl", 10.0), ("etl", 30.0), ("ml", 20.0), ("etl", 30.0), ("ml", 40.0)]
    ):
        await store.begin_run(run_info(f"r{i}", workflow, started_at=started))
    await store.finish_run("r1", "failed")
    await store.finish_run("r4", "succeeded")

    def ids(runs: list[RunInfo]) -> list[str]:
        return [r.run_id for r in runs]

    # Newest start first; equal starts: the later created first.
    assert ids(await store.list_runs()) == ["r4", "r3", "r1", "r2", "r0"]
    assert ids(await store.list_runs(limit=2)) == ["r4", "r3"]
    assert ids(await store.list_runs(limit=None)) == ["r4", "r3", "r1", "r2", "r0"]
    assert ids(await store.list_runs(workflow="etl")) == ["r3", "r1", "r0"]
    assert ids(await store.list_runs(status="running")) == ["r3", "r2", "r0"]
    assert ids(await store.list_runs(workflow="etl", status="running", limit=1)) == ["r3"]
    assert ids(await store.list_runs(status="failed")) == ["r1"]
    assert await store.list_runs(workflow="none") == []
    assert (await store.list_runs(status="succeeded"))[0] == await store.get_run("r4")


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"limit": -1}, {"limit": 1.5}, {"status": "done"}]
)
async def test_list_runs_refuses_bad_arguments(store: RunStore, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        await store.list_runs(**kwargs)  # type: ignore[arg-type]


async def test_list_runs_default_limit_is_50(store: RunStore) -> None:
    await store.begin_run(run_info("big"), [])
    for i in range(60):
        await store.begin_run(run_info(f"r{i:02d}", started_at=float(i)))
    runs = await store.list_runs()
    assert len(runs) == 50 and runs[0].run_id == "r59"


# --- purge and retention -----------------------------------------------------------------------


async def _finished_run(
    store: RunStore, run_id: str, finished_at: float, status: str = "succeeded", **blobs: bytes
) -> None:
    await store.begin_run(run_info(run_id, started_at=finished_at - 1))
    await store.append(run_id, [finished("a")], blobs={blob_digest(b): b for b in blobs.values()})
    await store.finish_run(run_id, status, finished_at=finished_at)  # type: ignore[arg-type]


async def test_purge_removes_old_finished_runs_never_running_ones(
    store: RunStore, clock: FakeClock
) -> None:
    now = clock.now
    await store.begin_run(run_info("ancient-but-running", started_at=0.0), [finished("a")])
    await _finished_run(store, "old-ok", now - 1000)
    await _finished_run(store, "old-failed", now - 900, "failed")
    await _finished_run(store, "recent", now - 10)
    assert await store.purge(older_than=100, status="failed") == 1
    assert {r.run_id for r in await store.list_runs()} == {
        "ancient-but-running",
        "old-ok",
        "recent",
    }
    assert await store.purge(older_than=100) == 1
    assert {r.run_id for r in await store.list_runs()} == {"ancient-but-running", "recent"}
    with pytest.raises(CheckpointError, match="no run 'old-ok'"):
        await store.read("old-ok")
    assert await store.purge(older_than=100) == 0
    assert await store.purge(older_than=0) == 1  # every finished run
    assert [r.run_id for r in await store.list_runs()] == ["ancient-but-running"]
    assert len(await store.read("ancient-but-running")) == 1
    stats = await store.statistics()
    assert (stats.runs, stats.running, stats.records) == (1, 1, 1)


async def test_purge_removes_the_blobs_no_run_references(store: RunStore, clock: FakeClock) -> None:
    now = clock.now
    shared, own_old, own_new = b"shared" * 100, b"old" * 100, b"new" * 100
    await _finished_run(store, "old", now - 1000, s=shared, o=own_old)
    await _finished_run(store, "new", now - 10, s=shared, n=own_new)
    await store.begin_run(run_info("running"))
    await store.put_blob("running", own_old)  # a running run still needs this one
    assert (await store.statistics()).blobs == 3

    assert await store.purge(older_than=100) == 1
    assert await store.get_blob(blob_digest(shared)) == shared
    assert await store.get_blob(blob_digest(own_old)) == own_old
    assert await store.get_blob(blob_digest(own_new)) == own_new

    assert await store.purge(older_than=0) == 1
    with pytest.raises(CheckpointError, match="no blob"):
        await store.get_blob(blob_digest(shared))
    with pytest.raises(CheckpointError, match="no blob"):
        await store.get_blob(blob_digest(own_new))
    assert await store.get_blob(blob_digest(own_old)) == own_old
    stats = await store.statistics()
    assert (stats.blobs, stats.blob_bytes) == (1, len(own_old))


@pytest.mark.parametrize(
    "kwargs",
    [{"older_than": -1}, {"older_than": math.nan}, {"older_than": 1, "status": "running"}],
)
async def test_purge_refuses_bad_arguments(store: RunStore, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        await store.purge(**kwargs)  # type: ignore[arg-type]


async def test_retention_purges_older_runs_at_every_finish(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    async with make_store(retention=3600) as store:
        await store.begin_run(run_info("stale-running", started_at=0.0))
        await _finished_run(store, "a", clock.now)
        clock.now += 1800
        await _finished_run(store, "b", clock.now)
        assert {r.run_id for r in await store.list_runs()} == {"stale-running", "a", "b"}
        clock.now += 1801  # "a" finished 3601 s ago, "b" 1801 s ago
        await _finished_run(store, "c", clock.now)
        assert {r.run_id for r in await store.list_runs()} == {"stale-running", "b", "c"}
        # The run being finished is kept even if its finished_at is already old.
        await store.begin_run(run_info("late-report"))
        await store.finish_run("late-report", "succeeded", finished_at=0.0)
        assert (await store.get_run("late-report")).status == "succeeded"


async def test_retention_must_be_a_duration(make_store: StoreFactory) -> None:
    for bad in (-1, math.inf, "7d"):
        with pytest.raises(ConfigurationError, match="retention"):
            make_store(retention=bad)


# --- blobs ----------------------------------------------------------------------------------------


async def test_blobs_are_stored_once_by_digest(store: RunStore) -> None:
    big = bytes(range(256)) * 400
    digest = blob_digest(big)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    await store.begin_run(
        run_info("r1"), [finished("a", data=digest.encode())], blobs={digest: big}
    )
    await store.begin_run(run_info("r2"))
    await store.append("r2", [finished("a")], blobs={digest: big})
    assert await store.put_blob("r2", big) == digest
    assert await store.get_blob(digest) == big
    stats = await store.statistics()
    assert (stats.blobs, stats.blob_bytes) == (1, len(big))


async def test_unknown_blob(store: RunStore) -> None:
    with pytest.raises(CheckpointError, match="no blob") as caught:
        await store.get_blob(blob_digest(b"never stored"))
    assert "purged" in caught.value.hint


# --- concurrency, lifecycle ---------------------------------------------------------------------


async def test_concurrent_runs_in_one_store_keep_their_records_apart(store: RunStore) -> None:
    runs = [f"run{i}" for i in range(5)]

    async def drive(run_id: str) -> None:
        await store.begin_run(run_info(run_id), [record(RecordKind.RUN_STARTED, data=b"s")])
        for step in range(20):
            await store.append(run_id, [finished(f"{run_id}/{step}", data=run_id.encode())])
            await anyio.lowlevel.checkpoint()
        await store.finish_run(run_id, "succeeded")

    async with anyio.create_task_group() as tg:
        for run_id in runs:
            tg.start_soon(drive, run_id)
    for run_id in runs:
        records = await store.read(run_id)
        assert [r.seq for r in records] == list(range(1, 22))
        assert [r.task_name for r in records[1:]] == [f"{run_id}/{step}" for step in range(20)]
        info = await store.get_run(run_id)
        assert (info.tasks_succeeded, info.status) == (20, "succeeded")


async def test_a_cancelled_append_is_all_or_nothing(store: RunStore) -> None:
    await store.begin_run(run_info("r"))
    for _ in range(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.append, "r", [finished("a"), finished("b")])
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        records = await store.read("r")
        assert len(records) % 2 == 0
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert (await store.get_run("r")).tasks_succeeded == len(records)


async def test_async_with_and_closing(make_store: StoreFactory) -> None:
    store = make_store()
    async with store as entered:
        assert entered is store and not store.closed
        await store.begin_run(run_info("r"))
    assert store.closed
    await store.aclose()  # idempotent
    with pytest.raises(CheckpointError, match="closed"):
        await store.get_run("r")
    with pytest.raises(CheckpointError, match="closed"):
        await store.open()


async def test_a_store_opens_on_first_use(make_store: StoreFactory) -> None:
    store = make_store()
    await store.begin_run(run_info("r"))
    assert (await store.get_run("r")).run_id == "r"
    await store.aclose()


async def test_every_error_is_an_aioflow_error(store: RunStore) -> None:
    with pytest.raises(AioflowError) as caught:
        await store.get_run("nope")
    assert caught.value.code == "aioflow.checkpoint"
    assert "[aioflow.checkpoint]" in caught.value.describe()


def test_open_run_store_returns_a_store_as_is_and_new_memory_stores() -> None:
    store = MemoryStore()
    assert open_run_store(store) is store
    first, second = open_run_store("memory://"), open_run_store("memory://")
    assert isinstance(first, MemoryStore) and first is not second
    assert open_run_store("memory://?retention=1h").retention == 3600.0


async def test_a_failed_run_is_reopened_to_be_resumed(store: RunStore) -> None:
    await store.begin_run(run_info("r"), [record(RecordKind.RUN_STARTED)])
    await store.finish_run("r", "failed", error="boom")
    info = await store.reopen_run("r")
    assert (info.status, info.finished_at, info.error) == ("running", None, None)
    assert await store.append("r", [finished("t", data=b"x")]) == 2  # records go on
    assert (await store.reopen_run("r")).status == "running"  # running: as it is
    await store.finish_run("r", "succeeded")
    with pytest.raises(CheckpointError, match="nothing left to resume"):
        await store.reopen_run("r")
    with pytest.raises(CheckpointError):
        await store.reopen_run("nope")
