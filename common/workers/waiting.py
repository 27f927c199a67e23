"""Waiting out Redis: what a consumer does when a read fails, and retrying an operation (group
creation, start-up) until Redis answers.

A read that fails is read again: at once if the blocked read was interrupted because its key
moved (``UNBLOCKED``, a slot migration); after recreating the group if it is gone (``NOGROUP``:
a server restarted without its data, or flushed); after a backoff (0.1 s doubling up to 5 s,
cut short by :meth:`stop`) for a lost connection, redis-py giving up following a migration
(``ClusterError``) or an answer that passes (``CLUSTERDOWN``, ``LOADING``, ``MASTERDOWN``...).
Any other error is a bug and is raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import ClusterError, ResponseError

from common.clients.redis_errors import is_transient
from common.clients.redis_manager import CONNECTION_ERRORS
from common.workers.cancel import wait_event
from common.workers.reading import is_nogroup, is_unblocked

__all__ = ["READ_ERRORS", "RedisWaits"]

# What a failed read may raise that is waited out (the rest decided by :meth:`_read_failed`).
READ_ERRORS: tuple[type[BaseException], ...] = (ResponseError, *CONNECTION_ERRORS, ClusterError)

FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0


class RedisWaits:
    """Mixin of :class:`~common.workers.engine.StreamConsumer`."""

    group: str
    stream: str
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    _stopping: asyncio.Event
    _ensure_group: Callable[[], Awaitable[None]]  # of StreamReading

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self._stopping, seconds)

    async def _read_backoff(self, backoff: float) -> float:
        """Wait ``backoff`` seconds (or until stopped) after a failed read; the next wait."""
        await self._sleep(backoff)
        return min(backoff * 2, MAX_BACKOFF_S)

    async def _read_failed(self, exc: BaseException, backoff: float) -> float:
        """Handle a failed read (see the module); the backoff of the next failure."""
        if isinstance(exc, ResponseError):
            if is_unblocked(exc):  # the key moved (slot migration) or went: read again
                self.log.info("read interrupted (%s); reading again", exc)
                return backoff
            if is_nogroup(exc):
                self.log.warning(
                    "group %s on %s is gone (server restarted or flushed?): recreating it",
                    self.group,
                    self.stream,
                )
                await self._with_reconnect(self._ensure_group)
                return backoff
            if not is_transient(exc):
                raise exc
            # CLUSTERDOWN (a master down or restarting), LOADING, MASTERDOWN...: later.
            self.log.warning("Redis refused the read (%s); retrying in %.1fs", exc, backoff)
        else:
            self.log.warning("lost Redis (%s); retrying in %.1fs", exc, backoff)
        return await self._read_backoff(backoff)

    async def _with_reconnect(
        self, operation: Callable[[], Awaitable[None]], timeout_s: float = 0
    ) -> None:
        """Run ``operation`` until it succeeds, waiting out Redis errors that pass; past
        ``timeout_s`` seconds (0: no limit) the last one is raised."""
        deadline = time.monotonic() + timeout_s if timeout_s else None
        backoff = FIRST_BACKOFF_S
        while True:
            try:
                await operation()
                return
            except Exception as exc:
                # Lost connections, and what may pass (CLUSTERDOWN while a master restarts,
                # LOADING, TRYAGAIN, READONLY during a failover...): later. Others are bugs.
                if self._stopping.is_set() or not is_transient(exc):
                    raise
                if deadline is not None and time.monotonic() + backoff > deadline:
                    raise
                self.log.warning("Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
