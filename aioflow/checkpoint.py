"""Checkpoints: snapshots of a run's state, signed, written atomically; and resume.

A checkpoint holds what a run needs to continue: finished results, the channel's
contents, which tasks were pending, attempts and cycle counts, the tasks added at
run time. It is encoded with the data codec and signed (``PayloadKind.CHECKPOINT``),
so a tampered or truncated file is refused before anything in it is unpickled.

Files are written to a temporary file in the same directory, flushed, then renamed
over the old checkpoint: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread

from .errors import AioflowError, CheckpointError, ConfigurationError
from .serialization import Keyring, PayloadKind, decode_value, encode_value

if TYPE_CHECKING:
    from .graph import TaskGraph

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointStore",
    "Checkpointer",
    "FileCheckpointStore",
    "fingerprint",
    "open_store",
]

CHECKPOINT_FORMAT = 1
CheckpointMode = Literal["task", "manual"]


class CheckpointStore(ABC):
    """Where checkpoints live. ``save`` must replace the previous one atomically."""

    @abstractmethod
    async def save(self, data: bytes) -> None:
        """Store ``data`` as the current checkpoint, replacing the previous one atomically."""

    @abstractmethod
    async def load(self) -> bytes:
        """The current checkpoint.

        Raises:
            CheckpointError: there is none, or it cannot be read.
        """

    @abstractmethod
    def describe(self) -> str:
        """Where the checkpoint is, for messages."""


class FileCheckpointStore(CheckpointStore):
    """A checkpoint in one file (temp file + fsync + rename for every save)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return str(self.path)

    async def save(self, data: bytes) -> None:
        try:
            await anyio.to_thread.run_sync(self._write, data)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write checkpoint {self.path}: {exc.strerror or exc}",
                hint="Check that the directory exists and is writable.",
            ) from exc

    def _write(self, data: bytes) -> None:
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def load(self) -> bytes:
        try:
            return await anyio.to_thread.run_sync(self.path.read_bytes)
        except FileNotFoundError:
            raise CheckpointError(
                f"no checkpoint at {self.path}",
                hint="Pass the path given as checkpoint= to the run that wrote it.",
            ) from None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"FileCheckpointStore({str(self.path)!r})"


def open_store(target: str | os.PathLike[str] | CheckpointStore) -> CheckpointStore:
    """A store for ``target``: a store as is, or a file path."""
    if isinstance(target, CheckpointStore):
        return target
    if isinstance(target, str | os.PathLike):
        return FileCheckpointStore(target)
    raise ConfigurationError(
        f"checkpoint= takes a file path or a CheckpointStore, got {type(target).__name__}",
        hint="For example aioflow.run(wf, checkpoint='run.ckpt').",
    )


def fingerprint(graph: TaskGraph) -> str:
    """A digest of the graph's shape (names, edges, groups), to match checkpoints."""
    h = hashlib.sha256()
    for name in sorted(graph.successors):
        h.update(name.encode() + b"\0")
        for succ in sorted(graph.successors[name]):
            h.update(b">" + succ.encode() + b"\0")
    for name in sorted(graph.groups):
        h.update(b"|" + name.encode() + b"\0")
        for member in graph.groups[name].member_names:
            h.update(member.encode() + b"\0")
    return h.hexdigest()


@dataclass
class Checkpointer:
    """How a run checkpoints: where, how often, and with which key.

    Args:
        store: where the checkpoint goes.
        every: ``"task"`` (after every batch of finished tasks, and at the end) or
            ``"manual"`` (only on ``await ctx.checkpoint()``).
        keyring: signs and verifies checkpoints (default: from the environment; the
            development key when ``AIOFLOW_SECRET_KEY`` is unset).
    """

    store: CheckpointStore
    every: CheckpointMode = "task"
    keyring: Keyring = field(default_factory=Keyring.from_env)
    _lock: anyio.Lock | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.every not in ("task", "manual"):
            raise ConfigurationError(
                f"checkpoint_every must be 'task' or 'manual', got {self.every!r}"
            )

    async def save(self, snapshot: dict[str, Any]) -> None:
        """Encode, sign and store ``snapshot`` (one save at a time, in call order)."""
        data = encode_value(
            snapshot,
            self.keyring,
            allow_pickle=True,
            kind=PayloadKind.CHECKPOINT,
            root="checkpoint",
        )
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            await self.store.save(data)

    async def load(self) -> dict[str, Any]:
        """Load, verify and decode the checkpoint.

        Raises:
            CheckpointError: missing, unreadable, tampered, signed with an unknown key,
                or not an aioflow checkpoint. The stored checkpoint is left untouched.
        """
        data = await self.store.load()
        try:
            snapshot = decode_value(
                data, self.keyring, allow_pickle=True, kind=PayloadKind.CHECKPOINT
            )
        except AioflowError as exc:
            raise CheckpointError(
                f"checkpoint {self.store.describe()} is corrupt, tampered with, or signed "
                f"with another key: {exc}",
                hint="Resume with the AIOFLOW_SECRET_KEY that wrote it; a damaged "
                "checkpoint cannot be used (it was left as it is).",
            ) from exc
        if not isinstance(snapshot, dict) or snapshot.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{self.store.describe()} is not an aioflow checkpoint of format "
                f"{CHECKPOINT_FORMAT}",
                hint="Resume it with the aioflow version that wrote it.",
            )
        return snapshot
