"""Stopping background tasks with bounded waits, even when a library loses a cancellation.

A ``task.cancel()`` can be lost: on Python 3.11, ``asyncio.wait_for`` returns the inner result
when the inner awaitable finishes in the same loop iteration as the cancel (CPython gh-86296;
redis-py's timed sends and older fakeredis reads use it). The task then runs on, "cancelling"
for ever, and an unbounded ``await task`` hangs. So nothing here awaits a task without a
bound: :func:`cancel_and_wait` repeats the request until the task ends or the time is up,
and loops that own their task can ask :func:`cancel_requested` to notice a request that some
callee swallowed. Neither ever swallows a cancellation of the *calling* task.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_and_wait", "cancel_requested", "wait_event"]

_RECANCEL_S = 0.05


async def cancel_and_wait(task: asyncio.Future[Any], timeout: float) -> bool:
    """Cancel ``task`` and wait up to ``timeout`` seconds for it to end, cancelling it again
    every few tens of milliseconds in case a callee swallowed the request. Returns whether it
    ended. A cancellation of the caller propagates (``task`` has been asked to stop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.wait({task}, timeout=min(_RECANCEL_S, remaining))
    if not task.cancelled():
        task.exception()  # marked retrieved: the caller logs it if it cares
    return True


def cancel_requested() -> bool:
    """Whether the current task has a pending cancellation request that nobody acted on."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``event``; True if it is set. (``asyncio.timeout``,
    not ``asyncio.wait_for``: it never loses a cancellation of the caller.)"""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
