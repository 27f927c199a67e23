"""One multiplexed reply listener per client: many pseudo-sync calls, one blocked connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from common.clients.embedded import change_signal
from common.clients.redis_manager import CONNECTION_ERRORS, is_embedded
from common.errors import MessageError
from common.models.actions import DomainActionResponse
from common.models.codec import decode_response

__all__ = ["ReplyListener"]

logger = logging.getLogger(__name__)

_DRAIN_COUNT = 512


class ReplyListener:
    """Pops replies from one list and resolves the future of the call each one answers.

    Workers ``RPUSH`` replies onto the list and set its expiry, so that a list nobody reads any
    more disappears by itself. A reply whose caller already gave up is counted and dropped.
    """

    def __init__(self, redis: aioredis.Redis, key: str, block_s: float = 5.0) -> None:
        self.redis = redis
        self.key = key
        self.block_s = block_s
        self.late_replies = 0
        self._waiters: dict[UUID, asyncio.Future[DomainActionResponse]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # The embedded server is never asked to block (fakeredis does not survive a cancelled
        # BLPOP): the listener pops without blocking and waits for an in-process wake-up.
        self._embedded = is_embedded(redis)
        self._close_requested = asyncio.Event()

    def expect(self, action_id: UUID) -> asyncio.Future[DomainActionResponse]:
        """Register interest in the reply to ``action_id``; starts the listener if needed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DomainActionResponse] = loop.create_future()
        self._waiters[action_id] = future
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._listen(), name=f"reply-listener:{self.key}")
        return future

    def forget(self, action_id: UUID) -> None:
        self._waiters.pop(action_id, None)

    async def close(self) -> None:
        task, self._task = self._task, None
        self._closing = True
        if task is not None:
            if self._embedded:
                self._close_requested.set()
            else:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._closing = False
        self._close_requested.clear()
        for future in self._waiters.values():
            future.cancel()
        self._waiters.clear()

    def _deliver(self, raw: bytes) -> None:
        try:
            response = decode_response(raw)
        except MessageError as exc:
            logger.warning("discarding malformed reply on %s: %s", self.key, exc)
            return
        future = self._waiters.pop(response.action_id, None) if response.action_id else None
        if future is None or future.done():
            self.late_replies += 1
            logger.debug("discarding late reply to action %s", response.action_id)
            return
        future.set_result(response)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                items = await (self._pop_embedded() if self._embedded else self._pop())
                if items is None:
                    return  # idle: the next call starts a new listener
                for raw in items:
                    self._deliver(raw)
                delay = 0.05
            except Exception as exc:  # lost Redis, or e.g. WRONGTYPE: keep listening
                lost = isinstance(exc, CONNECTION_ERRORS)
                logger.log(
                    logging.WARNING if lost else logging.ERROR,
                    "reply listener on %s %s (%s); retrying in %.2fs",
                    self.key,
                    "lost Redis" if lost else "failed",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _idle(self) -> bool:
        return not self._waiters or self._closing

    async def _pop(self) -> list[Any] | None:
        """The replies there are, after blocking up to ``block_s``; None to stop listening."""
        items: Any = []
        if self._waiters:
            # Several calls in flight: drain whatever is there in one round trip.
            items = await self.redis.lpop(self.key, _DRAIN_COUNT) or []
        if not items:
            popped = await self.redis.blpop([self.key], timeout=self.block_s)
            if popped is None:
                return None if self._idle() else []
            items = [popped[1]]
        return items  # type: ignore[no-any-return]

    async def _pop_embedded(self) -> list[Any] | None:
        """As :meth:`_pop` on the embedded server: wait for a push (or close()), then pop.

        The list is watched before it is looked at, so no push is missed. With no call in
        flight there is nothing to look for: what a push brings then is a late reply, popped
        (and counted) once the push wakes the listener.
        """
        with change_signal(self.redis).watch(self.key) as pushed:
            if self._waiters:
                items: Any = await self.redis.lpop(self.key, _DRAIN_COUNT)
                if items:
                    return items  # type: ignore[no-any-return]
            if self._closing:
                return None
            if not await pushed.wait(self.block_s, interrupt=self._close_requested):
                return None if self._idle() else []
        items = await self.redis.lpop(self.key, _DRAIN_COUNT)
        return items or []
