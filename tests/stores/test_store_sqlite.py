"""SQLiteStore beyond the contract: the file, its settings, damage, and sharing it."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from pathlib import Path

import anyio
import pytest
from store_helpers import finished, record, run_info

from aioflow.errors import CheckpointError, ConfigurationError
from aioflow.stores import RecordKind, blob_digest, open_run_store
from aioflow.stores._sqlite_schema import APPLICATION_ID, SCHEMA_VERSION, record_crc
from aioflow.stores.sqlite import SQLiteStore


async def _filled(path: Path, runs: int = 3, records: int = 400) -> None:
    """A database with a few runs of small records (many pages), closed cleanly."""
    async with SQLiteStore(path) as store:
        for r in range(runs):
            await store.begin_run(run_info(f"r{r}"))
            await store.append(
                f"r{r}", [finished(f"t{i}", data=os.urandom(40)) for i in range(records)]
            )
    assert not Path(f"{path}-wal").exists()  # the last close checkpointed the WAL


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("synchronous", "level"), [("normal", 1), ("full", 2)])
async def test_wal_mode_and_synchronous_level(tmp_path: Path, synchronous: str, level: int) -> None:
    async with SQLiteStore(tmp_path / "runs.db", synchronous=synchronous) as store:  # type: ignore[arg-type]
        conn = store._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


@pytest.mark.parametrize(
    "options",
    [{"synchronous": "off"}, {"busy_timeout": -1}, {"check": "paranoid"}, {"retention": -5}],
)
def test_bad_options_are_a_configuration_error(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteStore(tmp_path / "runs.db", **options)  # type: ignore[arg-type]


async def test_open_run_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_run_store(f"sqlite://{tmp_path}/abs/runs.db?synchronous=full&retention=7d")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "abs" / "runs.db"
    assert (absolute.synchronous, absolute.retention) == ("full", 7 * 86400.0)
    monkeypatch.chdir(tmp_path)
    relative = open_run_store("sqlite://rel/dir/runs.db?busy_timeout=500ms&check=off")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == tmp_path / "rel" / "dir" / "runs.db"
    assert (relative.busy_timeout, relative.check) == (0.5, "off")
    async with relative:  # the directory is created
        await relative.begin_run(run_info("r"))
    assert (tmp_path / "rel" / "dir" / "runs.db").is_file()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = open_run_store("sqlite://~/.aioflow/runs.db")
    assert isinstance(home, SQLiteStore)
    assert home.path == tmp_path / "home" / ".aioflow" / "runs.db"


async def test_journal_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r", tasks_total=2), [record(RecordKind.RUN_STARTED)])
        await store.append("r", [finished("a")], blobs={blob_digest(b"v"): b"v"})
        written = await store.read("r")
    async with SQLiteStore(path) as store:
        assert await store.read("r") == written
        assert await store.get_blob(blob_digest(b"v")) == b"v"
        assert await store.append("r", [finished("b")]) == 3
        assert (await store.get_run("r")).tasks_succeeded == 2


async def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.touch()
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r"))
    async with SQLiteStore(path) as store:
        assert (await store.get_run("r")).run_id == "r"


# --- O(1) appends, indexes ---------------------------------------------------------------------


async def test_append_cost_does_not_grow_with_the_run(tmp_path: Path) -> None:
    """SQLite's own instruction counter: appending at record 20,000 costs what it costs at 20."""
    async with SQLiteStore(tmp_path / "runs.db") as store:
        await store.begin_run(run_info("small"), [finished(f"t{i}") for i in range(20)])
        await store.begin_run(run_info("large"), [finished(f"t{i}") for i in range(20_000)])
        conn = store._conn
        assert conn is not None
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        async def cost(run_id: str) -> int:
            steps[0] = 0
            conn.set_progress_handler(count, 1)
            try:
                await store.append(run_id, [finished("x"), finished("y", "failed")])
            finally:
                conn.set_progress_handler(None, 1)
            return steps[0]

        small, large = await cost("small"), await cost("large")
        assert small > 0
        assert large <= small * 1.1 + 10, (small, large)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("SELECT * FROM runs ORDER BY started_at DESC, id DESC", "runs_by_start"),
        (
            "SELECT * FROM runs WHERE status = 'failed' ORDER BY started_at DESC, id DESC",
            "runs_by_status",
        ),
        (
            "SELECT * FROM runs WHERE workflow = 'etl' ORDER BY started_at DESC, id DESC",
            "runs_by_workflow",
        ),
        ("SELECT id FROM runs WHERE finished_at < 5 AND status != 'running'", "runs_by_finish"),
        ("SELECT id FROM runs WHERE run_id = 'r'", "sqlite_autoindex_runs_1"),
    ],
)
async def test_queries_use_an_index(tmp_path: Path, query: str, index: str) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path):
        pass
    with _raw(path) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    text = " ".join(str(row[-1]) for row in plan)
    assert index in text and "TEMP B-TREE" not in text, text


# --- damage: refused with a CheckpointError, never a raw sqlite3 error ---------------------


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"this is a text file, not a database\n" * 100)
    with pytest.raises(CheckpointError, match="not a SQLite database") as caught:
        await SQLiteStore(path).open()
    assert "backup" in caught.value.hint
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 20)
    with pytest.raises(CheckpointError, match="truncated header"):
        await SQLiteStore(path).open()


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory"):
        await SQLiteStore(tmp_path).open()


@pytest.mark.parametrize("keep", [0.2, 0.5, 0.9])
async def test_a_truncated_database(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "runs.db"
    await _filled(path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(int(size * keep) // 4096 * 4096 + 1000)
    with pytest.raises(CheckpointError, match=r"corrupt|malformed") as caught:
        async with SQLiteStore(path) as store:
            for r in range(3):
                await store.read(f"r{r}")
    assert isinstance(caught.value.__cause__, sqlite3.Error | None)


@pytest.mark.parametrize("seed", range(4))
async def test_garbage_over_pages(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "runs.db"
    await _filled(path)
    rng = random.Random(seed)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:
        for page in rng.sample(range(1, pages), k=2):  # never page 0: the header
            f.seek(page * 4096)
            f.write(rng.randbytes(4096))
    with pytest.raises(CheckpointError, match="corrupt"):
        await SQLiteStore(path).open()


async def test_garbage_is_refused_on_read_when_the_open_check_is_off(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await _filled(path, runs=1, records=2000)
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2 // 4096 * 4096)
        f.write(random.Random(7).randbytes(4096 * 3))
    with pytest.raises(CheckpointError, match="corrupt") as caught:
        async with SQLiteStore(path, check="off") as store:
            await store.read("r0")
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


async def test_a_tampered_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r"), [finished(f"t{i}", data=b"ok") for i in range(5)])
    with _raw(path) as conn:
        conn.execute("UPDATE records SET data = x'6f6b21' WHERE seq = 3")
    async with SQLiteStore(path) as store:
        with pytest.raises(CheckpointError, match="corrupt at seq 3") as caught:
            await store.read("r")
        assert caught.value.run_id == "r"
        assert [r.seq for r in await store.read("r", after=3)] == [4, 5]


async def test_a_missing_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r"), [finished(f"t{i}") for i in range(5)])
    with _raw(path) as conn:
        conn.execute("DELETE FROM records WHERE seq = 2")
    async with SQLiteStore(path) as store:
        with pytest.raises(CheckpointError, match="record 2 is missing"):
            await store.read("r")


async def test_a_record_kind_from_a_newer_aioflow_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r"), [record(RecordKind.CHANNEL_WRITE, data=b"d")])
    with _raw(path) as conn:
        crc = record_crc(1, "hologram", None, 1, None, 1.0, b"d")
        conn.execute("UPDATE records SET kind = 'hologram', crc = ?", (crc,))
    async with SQLiteStore(path) as store:
        with pytest.raises(CheckpointError, match=r"kind .hologram.*newer"):
            await store.read("r")


async def test_a_tampered_blob_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r"))
        digest = await store.put_blob("r", b"the real value")
    with _raw(path) as conn:
        conn.execute("UPDATE blobs SET data = x'00'")
    async with SQLiteStore(path) as store:
        with pytest.raises(CheckpointError, match="does not match its digest"):
            await store.get_blob(digest)


async def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path) as store:
        await store.begin_run(run_info("r"))
    with _raw(path) as conn:
        assert conn.execute("SELECT version FROM aioflow_schema").fetchone()[0] == SCHEMA_VERSION
        conn.execute("UPDATE aioflow_schema SET version = ?", (SCHEMA_VERSION + 1,))
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="newer than this aioflow") as caught:
        await SQLiteStore(path).open()
    assert "Upgrade aioflow" in caught.value.hint
    assert path.read_bytes() == before


async def test_another_programs_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with _raw(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(CheckpointError, match="another program"):
        await SQLiteStore(path).open()
    with _raw(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert tables == {"users"}


# --- sharing one database -------------------------------------------------------------------------


async def test_several_stores_on_one_file_interleaved(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    stores = [SQLiteStore(path) for _ in range(3)]

    async def drive(index: int) -> None:
        store = stores[index]
        for run in range(2):
            run_id = f"s{index}-r{run}"
            await store.begin_run(run_info(run_id))
        for step in range(30):
            for run in range(2):
                await store.append(f"s{index}-r{run}", [finished(f"{index}/{run}/{step}")])
            # Everyone also writes to one shared run: no record lost, seqs consecutive.
            await store.append("shared", [finished(f"{index}/{step}")])

    async with stores[0]:
        await stores[0].begin_run(run_info("shared"))
        async with stores[1], stores[2], anyio.create_task_group() as tg:
            for index in range(3):
                tg.start_soon(drive, index)
        for index in range(3):
            for run in range(2):
                records = await stores[0].read(f"s{index}-r{run}")
                assert [r.task_name for r in records] == [
                    f"{index}/{run}/{step}" for step in range(30)
                ]
        shared = await stores[0].read("shared")
        assert [r.seq for r in shared] == list(range(1, 91))
        for index in range(3):
            mine = [r.task_name for r in shared if r.task_name.startswith(f"{index}/")]  # type: ignore[union-attr]
            assert mine == [f"{index}/{step}" for step in range(30)]
        assert (await stores[0].get_run("shared")).tasks_succeeded == 90


async def test_a_held_write_lock_times_out_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with SQLiteStore(path, busy_timeout=0.3) as store:
        await store.begin_run(run_info("r"))
        blocker = _raw(path)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(tick)
                began = time.monotonic()
                with pytest.raises(CheckpointError, match="busy") as caught:
                    await store.append("r", [finished("a")])
                waited = time.monotonic() - began
                tg.cancel_scope.cancel()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert "busy_timeout" in caught.value.hint
        assert waited >= 0.25
        assert ticks >= 10  # the loop kept running while the store waited
        assert await store.append("r", [finished("a")]) == 1  # and it works again


async def test_opening_waits_for_a_writer_that_holds_the_new_file(tmp_path: Path) -> None:
    """Switching a new file to WAL while another connection holds its write lock:
    SQLite answers "locked" at once there (its busy handler is not called where waiting
    could deadlock), so several processes creating one database at once could fail.
    The store waits (up to ``busy_timeout``) as for any other lock."""
    path = tmp_path / "runs.db"
    blocker = _raw(path)
    blocker.execute("BEGIN IMMEDIATE")  # another process creating it, in the middle
    opened = anyio.Event()

    async def open_it() -> None:
        async with SQLiteStore(path, busy_timeout=10) as store:
            opened.set()
            await store.begin_run(run_info("r"))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(open_it)
            with anyio.move_on_after(0.3):  # it waits while the lock is held...
                await opened.wait()
            assert not opened.is_set()
            blocker.execute("ROLLBACK")  # ...and opens once it is released
            with anyio.fail_after(10):
                await opened.wait()
    finally:
        blocker.close()
    async with SQLiteStore(path) as store:
        assert [r.run_id for r in await store.list_runs()] == ["r"]


async def test_opening_gives_up_after_busy_timeout_when_the_file_stays_locked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    blocker = _raw(path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        began = time.monotonic()
        with pytest.raises(CheckpointError, match="busy"):
            async with SQLiteStore(path, busy_timeout=0.3):
                pass
        assert time.monotonic() - began >= 0.25
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
