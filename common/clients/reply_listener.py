"""One multiplexed reply listener per client: many pseudo-sync calls, one blocked connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

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
        # fakeredis does not survive a cancelled BLPOP: block briefly and stop by a flag.
        self._embedded = is_embedded(redis)
        if self._embedded:
            self.block_s = min(block_s, 0.25)

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
            if not self._embedded:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._closing = False
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
                items: Any = []
                if self._waiters:
                    # Several calls in flight: drain whatever is there in one round trip.
                    items = await self.redis.lpop(self.key, _DRAIN_COUNT) or []
                if not items:
                    popped = await self.redis.blpop([self.key], timeout=self.block_s)
                    if popped is None:
                        if not self._waiters or self._closing:
                            return  # idle: the next call starts a new listener
                        continue
                    items = [popped[1]]
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
