"""Ctrl-C for the commands that run an event loop: it cancels what runs, then
``KeyboardInterrupt`` (the command exits 130).

``asyncio.run()`` turns SIGINT into a cancellation through a plain ``signal.signal``
handler, which runs only when the main thread executes Python code. The kernel may
deliver the signal to any thread (a worker thread writing the journal, say): with the
main thread asleep in the event loop's ``epoll`` and nothing scheduled, as during a
long task, nothing wakes it, and Ctrl-C did nothing at all. Here the signal goes
through anyio's signal receiver, which is registered with the loop (a wakeup file
descriptor): whichever thread receives it, the loop wakes.

A second Ctrl-C, once the first has been received, raises ``KeyboardInterrupt`` at
once (the default handler is back), for a clean-up that hangs.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import anyio

__all__ = ["interruptible"]

T = TypeVar("T")


async def interruptible(main: Coroutine[Any, Any, T]) -> T:
    """Await ``main``; on SIGINT cancel it and raise ``KeyboardInterrupt``."""
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        # No loop signal handlers there (Windows; a thread, where the command line is
        # called from code, and SIGINT is not ours to take).
        return await main
    interrupted = False
    result: T | None = None
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel("interrupted (SIGINT)")
                    return

        tg.start_soon(watch)
        result = await main
        tg.cancel_scope.cancel()  # done: stop watching
    if interrupted:
        raise KeyboardInterrupt
    return result  # type: ignore[return-value]  # main returned it
