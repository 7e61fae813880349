"""A child process of the SQLite crash and sharing tests (run with ``sys.executable``).

Modes::

    store_child.py crash DB SEED SYNCHRONOUS   append plan(SEED) forever; print each
                                               committed last seq, flushed
    store_child.py cycle DB SEED               runs begun, appended, finished with
                                               retention=0 (purging) forever; print
                                               "finished N" after each finish
    store_child.py share DB NAME COUNT         wait for "go" on stdin, then append COUNT
                                               one-record batches to run NAME and to
                                               run "shared", alternately
    store_child.py begin DB NAME               open the store (creating the database if
                                               need be) and begin run NAME

Each prints ``ready`` once its store is open. The parent (the test) recomputes
what was written with :func:`plan`, :func:`cycle_run` and :func:`share_record`.
"""

from __future__ import annotations

import itertools
import random
import sys
from collections.abc import Iterator

import anyio

from aioflow.stores import JournalRecord, RecordKind, RunInfo, blob_digest
from aioflow.stores.sqlite import SQLiteStore

Batch = tuple[list[JournalRecord], dict[str, bytes]]
STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "retrying")


def plan(seed: int) -> Iterator[Batch]:
    """The batches the crash child appends, forever; the same for the same seed."""
    rng = random.Random(seed)
    seq = 0
    for _ in itertools.count():
        records = []
        for _ in range(rng.choice((1, 1, 1, 2, 3, 5, 8, 21))):
            seq += 1
            data = f"{seed}:{seq}:".encode() + rng.randbytes(rng.randrange(0, 400))
            status = rng.choice(STATUSES)
            records.append(
                JournalRecord(RecordKind.TASK_FINISHED, f"t{seq}", 1, status, float(seq), data)
            )
        blobs: dict[str, bytes] = {}
        if rng.random() < 0.15:
            blob = rng.randbytes(rng.randrange(1000, 30000))
            blobs[blob_digest(blob)] = blob
        yield records, blobs


def cycle_run(index: int) -> list[Batch]:
    """The batches of run ``index`` of the cycle child (the first stores two blobs)."""
    common, own = b"common blob" * 50, f"blob of run {index}".encode() * 50
    batches: list[Batch] = []
    for step in range(3):
        records = [
            JournalRecord(RecordKind.TASK_FINISHED, f"t{step}.{i}", 1, "succeeded", 1.0)
            for i in range(4)
        ]
        blobs = {blob_digest(common): common, blob_digest(own): own} if step == 0 else {}
        batches.append((records, blobs))
    return batches


def share_record(name: str, step: int) -> JournalRecord:
    return JournalRecord(RecordKind.TASK_FINISHED, f"{name}/{step}", 1, "succeeded", 1.0)


def _say(text: object) -> None:
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


async def crash(path: str, seed: int, synchronous: str) -> None:
    async with SQLiteStore(path, synchronous="full" if synchronous == "full" else "normal") as s:
        run_id = f"crash-{seed}"
        await s.begin_run(RunInfo(run_id, "crash", started_at=1.0))
        _say("ready")
        for records, blobs in plan(seed):
            _say(await s.append(run_id, records, blobs=blobs))


async def cycle(path: str, seed: int) -> None:
    async with SQLiteStore(path, retention=0) as store:
        _say("ready")
        for index in itertools.count():
            run_id = f"run{seed}-{index}"
            await store.begin_run(RunInfo(run_id, "cycle", started_at=float(index)))
            for records, blobs in cycle_run(index):
                await store.append(run_id, records, blobs=blobs)
            await store.finish_run(run_id, "succeeded", finished_at=float(index))
            _say(f"finished {index}")


async def share(path: str, name: str, count: int) -> None:
    async with SQLiteStore(path) as store:
        await store.begin_run(RunInfo(name, "share", started_at=1.0))
        _say("ready")
        await anyio.to_thread.run_sync(sys.stdin.readline)  # "go"
        for step in range(count):
            await store.append(name, [share_record(name, step)])
            await store.append("shared", [share_record(name, step)])
        _say("done")


async def begin(path: str, name: str) -> None:
    async with SQLiteStore(path) as store:
        _say("ready")
        await store.begin_run(RunInfo(name, "begin", started_at=1.0), [share_record(name, 0)])


def main(argv: list[str]) -> None:
    mode, path, *rest = argv
    if mode == "crash":
        anyio.run(crash, path, int(rest[0]), rest[1])
    elif mode == "cycle":
        anyio.run(cycle, path, int(rest[0]))
    elif mode == "share":
        anyio.run(share, path, rest[0], int(rest[1]))
    elif mode == "begin":
        anyio.run(begin, path, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
