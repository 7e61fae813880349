"""The SQLite run store's database: schema, opening checks, and error mapping.

Everything here runs in the store's worker thread (blocking calls), never on the
event loop.

Layout (schema version 1)::

    aioflow_schema(version, created_at, created_by)         one row
    runs(id INTEGER PRIMARY KEY, run_id UNIQUE, workflow, fingerprint, status,
         started_at, finished_at, tasks_total, tasks_succeeded, tasks_failed,
         error, updated_at, last_seq)                         one row per run
    records(run, seq, kind, task_name, attempt, status, at, data, crc)
         PRIMARY KEY (run, seq), WITHOUT ROWID                 the journals
    blobs(digest PRIMARY KEY, size, data)                     content-addressed
    run_blobs(run, digest) PRIMARY KEY (run, digest)           which run stored which blob

``records.run`` and ``run_blobs.run`` are ``runs.id``. ``crc`` is a CRC-32 of
every field of the record, checked on read: SQLite does not checksum its pages,
so without it a damaged record could be read back as a different one.
The database header's ``application_id`` is set to :data:`APPLICATION_ID`, so a
SQLite file of another program is recognised and left alone.
"""

from __future__ import annotations

import os
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Final

from ..errors import CheckpointError

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "check_file",
    "database_error",
    "ensure_schema",
    "record_crc",
    "run_integrity_check",
]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x61696F66  # "aiof"
_HEADER: Final = b"SQLite format 3\x00"
_HEADER_SIZE: Final = 100

_RESTORE_HINT: Final = (
    "The file is damaged: restore it from a backup, or move it aside to start an empty "
    "store (its runs are then lost; they cannot be resumed)."
)

_DDL: Final = (
    """
    CREATE TABLE aioflow_schema (
        version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        workflow TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
        started_at REAL NOT NULL,
        finished_at REAL,
        tasks_total INTEGER NOT NULL,
        tasks_succeeded INTEGER NOT NULL,
        tasks_failed INTEGER NOT NULL,
        error TEXT,
        updated_at REAL NOT NULL,
        last_seq INTEGER NOT NULL
    )
    """,
    "CREATE INDEX runs_by_start ON runs (started_at)",
    "CREATE INDEX runs_by_status ON runs (status, started_at)",
    "CREATE INDEX runs_by_workflow ON runs (workflow, started_at)",
    "CREATE INDEX runs_by_finish ON runs (finished_at) WHERE finished_at IS NOT NULL",
    """
    CREATE TABLE records (
        run INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        task_name TEXT,
        attempt INTEGER,
        status TEXT,
        at REAL NOT NULL,
        data BLOB NOT NULL,
        crc INTEGER NOT NULL,
        PRIMARY KEY (run, seq)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )
    """,
    """
    CREATE TABLE run_blobs (
        run INTEGER NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (run, digest)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX run_blobs_by_digest ON run_blobs (digest)",
)


def record_crc(
    seq: int,
    kind: str,
    task_name: str | None,
    attempt: int | None,
    status: str | None,
    at: float,
    data: bytes,
) -> int:
    """CRC-32 of a record's fields (``at`` must be a float)."""
    head = f"{seq}\x1f{kind}\x1f{task_name}\x1f{attempt}\x1f{status}\x1f{at!r}\x1f"
    return zlib.crc32(data, zlib.crc32(head.encode()))


def check_file(path: Path, where: str) -> None:
    """Refuse a path that is a directory, or a non-empty file that is not SQLite.

    An absent or empty file is fine: it becomes a new store.
    """
    try:
        if path.is_dir():
            raise CheckpointError(
                f"{where}: {path} is a directory, not a database file",
                hint="Give the path of a database file, e.g. sqlite:///var/lib/app/runs.db.",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            return
        with path.open("rb") as f:
            header = f.read(_HEADER_SIZE)
    except OSError as exc:
        raise CheckpointError(
            f"{where}: cannot open {path}: {exc.strerror or exc}",
            hint="Check that the directory exists and that this user may read and write it.",
        ) from exc
    if header and (len(header) < _HEADER_SIZE or not header.startswith(_HEADER)):
        raise CheckpointError(
            f"{where}: {path} is not a SQLite database "
            f"({'truncated header' if header.startswith(_HEADER[:4]) else 'wrong header'})",
            hint="Point the store at its own database file; " + _RESTORE_HINT,
        )


def run_integrity_check(conn: sqlite3.Connection, level: str, where: str) -> None:
    """``PRAGMA quick_check`` (``"quick"``) or ``integrity_check`` (``"full"``)."""
    if level == "off":
        return
    pragma = "quick_check" if level == "quick" else "integrity_check"
    rows = conn.execute(f"PRAGMA {pragma}(20)").fetchall()
    if rows != [("ok",)]:
        problems = "; ".join(str(row[0]) for row in rows[:5])
        raise CheckpointError(
            f"{where} is corrupt ({pragma} found: {problems})", hint=_RESTORE_HINT
        )


def ensure_schema(conn: sqlite3.Connection, where: str) -> None:
    """Create the schema in an empty database, or check the version of an existing one.

    Safe when several processes open a new file at once: creation happens in one
    ``BEGIN IMMEDIATE`` transaction that re-checks what is there.

    Raises:
        CheckpointError: the database belongs to another program, or its schema is
            newer than this aioflow (or not a version it knows).
    """
    if not _has_schema(conn):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _has_schema(conn):
                _check_foreign(conn, where)
                for statement in _DDL:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO aioflow_schema (version, created_at, created_by) VALUES (?, ?, ?)",
                    (SCHEMA_VERSION, time.time(), f"aioflow pid {os.getpid()}"),
                )
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    _check_version(conn, where)


def _has_schema(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'aioflow_schema'"
    ).fetchone()
    return row is not None


def _check_foreign(conn: sqlite3.Connection, where: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or tables:
        raise CheckpointError(
            f"{where} is a SQLite database of another program (it has {tables} objects "
            "and no aioflow schema); aioflow leaves it alone",
            hint="Give the run store a database file of its own.",
        )


def _check_version(conn: sqlite3.Connection, where: str) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    row = conn.execute("SELECT max(version) FROM aioflow_schema").fetchone()
    version = row[0] if row else None
    if app_id != APPLICATION_ID or type(version) is not int or version < 1:
        raise CheckpointError(
            f"{where} has a damaged aioflow schema (application id {app_id:#x}, "
            f"version {version!r})",
            hint=_RESTORE_HINT,
        )
    if version > SCHEMA_VERSION:
        raise CheckpointError(
            f"{where} has schema version {version}, newer than this aioflow supports "
            f"({SCHEMA_VERSION}); it was written by a newer aioflow",
            hint="Upgrade aioflow to read this store (`pip install -U aioflow`); "
            "the database was not modified.",
        )
    # Versions below SCHEMA_VERSION would be migrated here, in one transaction.


def database_error(exc: sqlite3.Error, where: str) -> CheckpointError:
    """A :class:`CheckpointError` for a sqlite3 error, with the remedy that fits it."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return CheckpointError(
            f"{where} is busy: another connection held its write lock too long ({text})",
            hint="Raise busy_timeout (e.g. ?busy_timeout=30s), or use fewer writers at once.",
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text:
        return CheckpointError(f"{where} is corrupt or not a database ({text})", hint=_RESTORE_HINT)
    if name.startswith("SQLITE_FULL"):
        return CheckpointError(
            f"{where}: the disk is full ({text})",
            hint="Free disk space, or purge old runs (`aioflow purge --older-than 7d`).",
        )
    if name.startswith("SQLITE_READONLY"):
        return CheckpointError(
            f"{where} is read-only ({text})",
            hint="The store needs write access to the database file and its directory "
            "(for the -wal and -shm files).",
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return CheckpointError(
            f"{where} cannot be opened ({text})",
            hint="Check that the directory exists and that this user may read and write it.",
        )
    if name.startswith("SQLITE_IOERR"):
        return CheckpointError(
            f"{where}: I/O error ({text})", hint="Check the disk and the file system."
        )
    return CheckpointError(f"{where}: database error ({name or type(exc).__name__}: {text})")
