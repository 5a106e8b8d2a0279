"""``asyncio.run`` for the commands' main thread, where Ctrl-C always ends as KeyboardInterrupt
(standard library only: the client's commands use it without the server extra).

``asyncio.run`` turns a SIGINT into a cancellation of its main task, lets the task unwind
(``finally`` blocks, ``async with`` exits) and then raises KeyboardInterrupt. CPython 3.11's
``Runner.run`` (3.12 and 3.13 alike) installs that SIGINT handler *before* it zeroes its
interrupt count: a SIGINT handled in between is counted, then forgotten, and the cancellation
escapes as a bare CancelledError: a traceback and exit status 1 for a plain Ctrl-C, or for a
SIGTERM the demo turns into one. The handler here records the interrupt in the same step as it
cancels the task, so no interrupt is forgotten.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

__all__ = ["run_interruptible"]

T = TypeVar("T")


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on a new event loop, as ``asyncio.run`` does. A SIGINT cancels it and,
    once it has unwound, raises KeyboardInterrupt; a second SIGINT while it unwinds raises
    KeyboardInterrupt at once. A cancellation that did not come from SIGINT stays a
    CancelledError.

    SIGINT is handled here only in the main thread and only while Python's default handler
    is installed (as ``asyncio.run`` decides); otherwise this is ``asyncio.run``.
    """
    with asyncio.Runner() as runner:
        if not _sigint_is_default():
            return runner.run(main)
        loop = runner.get_loop()
        task = loop.create_task(main)
        interrupted = False

        def on_sigint(_signum: int, _frame: FrameType | None) -> None:
            nonlocal interrupted
            if interrupted or task.done():
                raise KeyboardInterrupt
            interrupted = True
            task.cancel()
            # Wakes the loop if it sleeps in select() with nothing due.
            loop.call_soon_threadsafe(_nothing)

        # A SIGINT already pending runs the default handler here (KeyboardInterrupt): the task
        # never starts, and the runner's exit cancels it.
        signal.signal(signal.SIGINT, on_sigint)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupted and task.uncancel() == 0:
                raise KeyboardInterrupt from None
            raise
        finally:
            if signal.getsignal(signal.SIGINT) is on_sigint:
                signal.signal(signal.SIGINT, signal.default_int_handler)


def _sigint_is_default() -> bool:
    return (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )


def _nothing() -> None:
    pass
