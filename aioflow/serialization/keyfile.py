"""The per-user local key: random, created on first use, kept in a 0600 file.

Without ``AIOFLOW_SECRET_KEY``, local state (checkpoints, in-process payloads) is
signed with a key that only this user can read: ``$AIOFLOW_HOME/local.key``
(default ``~/.aioflow/local.key``), :data:`LOCAL_KEY_BYTES` random bytes, as
Jupyter keeps its cookie secret. It is never published, so a file written by
someone else cannot carry a valid signature.

Creation is race-free between processes: the key is written and flushed to a
private temporary file (``O_CREAT | O_EXCL``, mode 0600) in the same directory,
then hard-linked to its final name, which fails if another process got there
first. Either way every process then reads the one file that won, so processes
that start at the same time share one key. A file whose permissions let other
users read or write it, of the wrong size, or that is not a regular file is
refused, never repaired silently.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigurationError

__all__ = [
    "HOME_ENV",
    "LOCAL_KEY_BYTES",
    "LOCAL_KEY_FILE",
    "aioflow_home",
    "load_or_create_local_key",
]

HOME_ENV = "AIOFLOW_HOME"
#: Name of the key file inside ``AIOFLOW_HOME``.
LOCAL_KEY_FILE = "local.key"
#: Size of the local key, in bytes (random, from :func:`secrets.token_bytes`).
LOCAL_KEY_BYTES = 32

_POSIX = os.name == "posix"
# Another process may have created the file with O_EXCL (no hard links on this file
# system) and not written it yet: an empty file is read again for this long.
_SHORT_FILE_GRACE = 1.0


def aioflow_home(environ: Mapping[str, str] | None = None) -> Path:
    """The directory of aioflow's per-user state: ``$AIOFLOW_HOME``, else ``~/.aioflow``."""
    env = os.environ if environ is None else environ
    configured = env.get(HOME_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".aioflow"


def _refuse(path: Path, problem: str, hint: str) -> ConfigurationError:
    return ConfigurationError(f"the local key file {path} {problem}", hint=hint)


def _delete_hint(path: Path) -> str:
    return (
        f"Delete {path} to have a new key created on next use (checkpoints signed with "
        "the old key can then no longer be resumed), or set AIOFLOW_SECRET_KEY."
    )


def _read(path: Path) -> bytes | None:
    """The key in ``path``, or None when there is no such file (yet)."""
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)
    deadline = time.monotonic() + _SHORT_FILE_GRACE
    while True:
        try:
            fd = os.open(path, flags)
        except (FileNotFoundError, NotADirectoryError):
            return None  # not created yet (or its directory cannot be: reported on create)
        except OSError as exc:
            raise _refuse(
                path, f"cannot be read: {exc.strerror or exc}", _delete_hint(path)
            ) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _refuse(path, "is not a regular file", _delete_hint(path))
            if _POSIX:
                mode = stat.S_IMODE(info.st_mode)
                if mode & 0o077:
                    raise _refuse(
                        path,
                        f"is accessible to other users (mode {mode:04o}); it must be 0600",
                        f"Run: chmod 600 {path} (if someone else may have read it, delete "
                        "it instead: a new key is created on next use).",
                    )
                if info.st_uid != os.getuid():
                    raise _refuse(
                        path,
                        f"belongs to user id {info.st_uid}, not to you ({os.getuid()})",
                        _delete_hint(path),
                    )
            data = os.read(fd, LOCAL_KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) == LOCAL_KEY_BYTES:
            return data
        if not data and time.monotonic() < deadline:
            time.sleep(0.01)  # just created by a process that could not hard-link
            continue
        size = f"{len(data)}" if len(data) <= LOCAL_KEY_BYTES else f"more than {LOCAL_KEY_BYTES}"
        raise _refuse(
            path,
            f"holds {size} bytes; a local key is exactly {LOCAL_KEY_BYTES} bytes",
            _delete_hint(path),
        )


def _make_home(home: Path) -> None:
    if home.is_dir():
        return
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _POSIX:
            os.chmod(home, 0o700)  # whatever the umask
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create aioflow's directory {home}: {exc.strerror or exc}",
            hint=f"Set {HOME_ENV} to a writable directory, or set AIOFLOW_SECRET_KEY.",
        ) from exc


def _create(path: Path) -> None:
    """Write a new key to ``path`` unless another process does so first."""
    key = secrets.token_bytes(LOCAL_KEY_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and fails if the file exists: first one wins
        except FileExistsError:
            return
        except OSError:  # no hard links here: create the final name exclusively
            try:
                fd = os.open(path, flags, 0o600)
            except FileExistsError:
                return
            try:
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_local_key(home: Path) -> tuple[bytes, Path]:
    """The local key in ``home``, created (race-free) if there is none; and its path.

    Raises:
        ConfigurationError: the directory cannot be created or written, or the key
            file is accessible to other users, of the wrong size, or not a file.
    """
    path = home / LOCAL_KEY_FILE
    key = _read(path)
    if key is None:
        _make_home(home)
        try:
            _create(path)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the local key file {path}: {exc.strerror or exc}",
                hint=f"Make {home} writable, set {HOME_ENV} to another directory, or set "
                "AIOFLOW_SECRET_KEY.",
            ) from exc
        key = _read(path)  # the file that won, whoever wrote it
        if key is None:
            raise ConfigurationError(
                f"the local key file {path} vanished while it was being created",
                hint="Check that nothing else deletes files in that directory.",
            )
    return key, path
