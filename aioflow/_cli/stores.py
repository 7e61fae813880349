"""Which run store a command uses: ``--checkpoint`` / ``--store`` / ``resume STORE``,
and the CLI's run history, ``$AIOFLOW_HOME/runs.db``.

Every command takes the same forms as ``aioflow.run(wf, checkpoint=...)``: a store
URL (``sqlite:///abs/path/runs.db``, ``sqlite://relative.db``, ``memory://``) or a
plain path (a SQLite database file). The history is an ordinary SQLite run store:
the runs ``aioflow run`` starts are journaled there (unless ``--no-history`` or
``--checkpoint``), so ``aioflow runs`` / ``inspect`` read it and ``aioflow resume``
continues its runs. It keeps runs for ``$AIOFLOW_HISTORY_RETENTION`` (default 30
days) after they finish.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..errors import AioflowError, CheckpointError, ConfigurationError
from ..serialization.keyfile import HOME_ENV, aioflow_home
from ..stores import RunStore, StoreURL, create_run_store, parse_duration, parse_store_url

__all__ = [
    "DEFAULT_RETENTION",
    "HISTORY_FILE",
    "RETENTION_ENV",
    "StoreTarget",
    "history_path",
    "history_retention",
    "history_target",
    "make_history_home",
    "run_exists",
    "store_target",
]

#: The history database's name, in ``$AIOFLOW_HOME``.
HISTORY_FILE: Final = "runs.db"
#: How long the history keeps a finished run: a duration, or ``none``.
RETENTION_ENV: Final = "AIOFLOW_HISTORY_RETENTION"
DEFAULT_RETENTION: Final = "30d"
_PATH_SAFE: Final = "/~:@!$&'()*+,;="  # everything but ? # % (and spaces) stays as is


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """A run store named on the command line (or the history), not opened yet.

    Attributes:
        text: how commands name it: what the user wrote, or the history file's path.
        url: the parsed store URL.
        history: True for the CLI's run history.
    """

    text: str
    url: StoreURL
    history: bool = False

    @property
    def path(self) -> Path | None:
        """The SQLite database file (absolute), or None for ``memory://``."""
        if self.url.path is None:
            return None
        return Path(os.path.expanduser(self.url.path)).absolute()

    @property
    def durable(self) -> bool:
        """True when another process can read the store (not ``memory://``)."""
        return self.url.scheme != "memory"

    def open(self, *, check: bool = True) -> RunStore:
        """A new store object for it (``async with`` it); ``check=False`` skips the
        integrity check on open (for a quick look after a run)."""
        url = self.url if check else dataclasses.replace(self.url, check="off")
        return create_run_store(url)

    def describe(self) -> str:
        """``sqlite:///abs/path/runs.db``, ``redis://host:port/db`` (no password) or
        ``memory://``, for messages."""
        if self.url.scheme in ("redis", "rediss"):
            return str(self.url)  # the password is never shown
        path = self.path
        return "memory://" if path is None else f"sqlite://{path}"

    def missing(self) -> bool:
        """True for a SQLite store whose file does not exist (yet)."""
        path = self.path
        return path is not None and not path.exists()

    def require_existing(self) -> None:
        """Refuse a SQLite store whose file does not exist (opening it would create it).

        Raises:
            CheckpointError: the file does not exist.
        """
        if self.missing():
            raise CheckpointError(
                f"there is no run store at {self.path}",
                hint="Give the URL or path the run was started with "
                "(`aioflow run --checkpoint URL_OR_PATH`); without --store, commands "
                f"read the run history in ${HOME_ENV}/{HISTORY_FILE}.",
            )


def store_target(text: str) -> StoreTarget:
    """The store ``text`` names: a store URL, or a plain path (a SQLite file).

    Raises:
        ConfigurationError: an unknown scheme, a bad option, an unusable path.
    """
    if "://" in text:
        return StoreTarget(text, parse_store_url(text))
    if not text.strip():
        raise ConfigurationError(
            "the run store is empty", hint="Give a path, or a URL like sqlite:///path/runs.db."
        )
    absolute = os.path.abspath(text)
    url = "sqlite:///" + urllib.parse.quote(absolute, safe=_PATH_SAFE).lstrip("/")
    return StoreTarget(text, parse_store_url(url))


def history_path() -> Path:
    """``$AIOFLOW_HOME/runs.db`` (default ``~/.aioflow/runs.db``)."""
    return aioflow_home() / HISTORY_FILE


def history_retention() -> float | None:
    """Seconds the history keeps a finished run (``$AIOFLOW_HISTORY_RETENTION``), or None.

    Raises:
        ConfigurationError: the variable is not a duration nor ``none``.
    """
    text = os.environ.get(RETENTION_ENV, "").strip() or DEFAULT_RETENTION
    if text.lower() == "none":
        return None
    try:
        return parse_duration(text)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"{RETENTION_ENV}={text!r} is not a duration: {exc.message}",
            hint=f'Set {RETENTION_ENV} to a duration like "30d" or "12h", or "none" to '
            "keep every run.",
        ) from None


def history_target(*, retention: bool = True) -> StoreTarget:
    """The CLI's run history; with its retention (for runs that write it) or without.

    Raises:
        ConfigurationError: a bad ``$AIOFLOW_HISTORY_RETENTION`` (with ``retention``).
    """
    path = history_path()
    url = StoreURL("sqlite", str(path), retention=history_retention() if retention else None)
    return StoreTarget(str(path), url, history=True)


def make_history_home() -> None:
    """Create ``$AIOFLOW_HOME`` (mode 0700) if it does not exist.

    Raises:
        ConfigurationError: it cannot be created.
    """
    home = aioflow_home()
    if home.is_dir():
        return
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(home, 0o700)  # whatever the umask
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create aioflow's directory {home}: {exc.strerror or exc}",
            hint=f"Set {HOME_ENV} to a writable directory, or run with --no-history.",
        ) from exc


async def run_exists(target: StoreTarget, run_id: str) -> bool:
    """True when ``target`` holds the run ``run_id`` (nothing is created to find out)."""
    if not target.durable or target.missing():
        return False
    try:
        async with target.open(check=False) as store:
            await store.get_run(run_id)
    except AioflowError:
        return False
    return True
