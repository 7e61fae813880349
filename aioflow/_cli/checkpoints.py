"""Journaled runs of ``aioflow run`` / ``resume``: opening the journal, and the
``aioflow resume`` command that continues a run."""

from __future__ import annotations

import asyncio
import shlex
from contextlib import AsyncExitStack

from rich.console import Console
from rich.text import Text

from ..errors import AioflowError, CheckpointError
from ..serialization import Keyring
from ..stores import RunStore
from .stores import StoreTarget, make_history_home, run_exists

__all__ = ["not_storable_hint", "open_journal", "print_resume_command", "resume_command"]


def resume_command(store: str, target: str, run_id: str | None = None) -> str:
    """The exact command that continues the journaled run ``run_id`` of ``store``."""
    command = f"aioflow resume {shlex.quote(store)} {shlex.quote(target)}"
    return command if run_id is None else f"{command} --run-id {shlex.quote(run_id)}"


async def open_journal(
    journal: StoreTarget, err: Console, stack: AsyncExitStack
) -> tuple[RunStore, Keyring] | None:
    """Open the run's journal store (entered in ``stack``) and the key that signs it.

    ``--checkpoint``: an error stops the command (exit 2, nothing ran). The history
    is best effort: if it cannot be used, None, and a warning on ``err``: the run
    goes on without it.
    """
    try:
        if journal.history:
            make_history_home()
        keyring = Keyring.from_env()
        store = await stack.enter_async_context(journal.open())
    except AioflowError as exc:
        if not journal.history:
            raise
        err.print(
            Text.assemble(
                ("warning ", "bold yellow"),
                f"this run is not recorded in the run history ({journal.text}): {exc.message}",
            ),
            soft_wrap=True,
        )
        hint = exc.hint if "--no-history" in exc.hint else f"{exc.hint} (or run with --no-history)"
        err.print(Text(f"  hint: {hint}", style="cyan"), soft_wrap=True)
        return None
    return store, keyring


def not_storable_hint(journal: StoreTarget | None, error: BaseException) -> Text | None:
    """For a history run that failed because the journal could not store a value:
    the hint to run with ``--no-history``."""
    if journal is None or not journal.history:
        return None
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, CheckpointError):
            return Text(
                f"  hint: `aioflow run` journals every run to the run history "
                f"({journal.text}), so every result must be storable; run with "
                "--no-history to keep results in memory only.",
                style="cyan",
            )
        cause = cause.__cause__
    return None


def print_resume_command(
    console: Console, journal: StoreTarget | None, target: str, run_id: str | None
) -> None:
    """For a journaled run (``run``, ``resume``) that is in its store: how to continue it.

    Nothing for a run that is not journaled, journaled in memory, or stopped before
    it was created in its store. (Opens the store on a new event loop to find out.)
    """
    if journal is None or not journal.durable:
        return
    if run_id is None:
        if journal.missing():
            return
    elif not asyncio.run(run_exists(journal, run_id)):
        return
    command = resume_command(journal.text, target, run_id)
    if journal.history and run_id is not None:
        text = Text.assemble(
            ("history ", "bold cyan"),
            f"run {run_id} is recorded in {journal.text}; see it with ",
            (f"aioflow inspect {run_id}", "bold"),
            "; continue it with: ",
            (command, "bold"),
        )
    else:
        text = Text.assemble(
            ("checkpoint ", "bold cyan"),
            f"the run is saved in {journal.text}; continue it with: ",
            (command, "bold"),
        )
    console.print(text, soft_wrap=True)
