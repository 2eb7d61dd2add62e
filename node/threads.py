"""Blocking work off the event loop, in threads that a stop never waits for.

``asyncio.to_thread`` runs work on the loop's default executor, whose threads the
loop's shutdown and the interpreter's exit join. Reads that may be abandoned (the
match index loading, a sync round cancelled at SIGTERM) run here instead, so that
``hashfed serve`` stops at once whatever they are doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """in_daemon_thread runs fn in a new daemon thread and returns its result. Unlike
    ``asyncio.to_thread``, neither the event loop's shutdown nor the interpreter's exit
    waits for the thread: use it only for work that may be abandoned (reads)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future


__all__ = ["in_daemon_thread"]
