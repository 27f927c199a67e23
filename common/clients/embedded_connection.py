"""A fakeredis connection whose reads never lose a cancellation (the embedded ``memory://``).

fakeredis waits for a reply with ``asyncio.wait_for(event.wait(), timeout)``. On Python 3.11,
``wait_for`` returns the inner result when the inner wait finishes in the same loop iteration
as an outer ``cancel()``: the cancellation is swallowed (CPython gh-86296, fixed in 3.12 by
rebuilding ``wait_for`` on ``asyncio.timeout``). fakeredis answers in-process, so that race is
common: a task cancelled during any command (a pool's reclaim loop at stop) went on as if
nothing had happened, showed "cancelling" for ever, and whoever awaited it hung.

This connection waits with ``asyncio.timeout`` instead, which counts cancellation requests and
never swallows one that is not its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fakeredis.aioredis import FakeAsyncRedisConnection

__all__ = ["CancelSafeFakeConnection"]


class CancelSafeFakeConnection(FakeAsyncRedisConnection):
    async def can_read(self, timeout: float | None = 0) -> bool:
        sock: Any = getattr(self, "_sock", None)
        if timeout == 0 or sock is None or not hasattr(sock, "_response_available"):
            return bool(await super().can_read(timeout))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            sock = self._sock
            if sock is None:
                return False
            if not sock.responses.empty():
                return True
            event: asyncio.Event = sock._response_available
            event.clear()
            if not sock.responses.empty():  # a reply queued between the check and the clear
                return True
            if deadline is not None and loop.time() >= deadline:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await event.wait()
