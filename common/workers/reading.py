"""Reading: one XREADGROUP over every stream a consumer reads, in its one group.

A consumer reads one or several streams (an action stream; the topics of a subscriber) in one
consumer group. Each read asks for new entries (``>``) of all of them at once and blocks until
any has some; each :class:`Delivery` remembers its stream, so that its ACK, lease, retry
schedule and dead letter go to the right keys. (On a Redis Cluster the keys of one read must
share a hash slot: streams of different slots are read by separate consumers.)

The embedded server (``memory://``) is not asked to block: the consumer reads without BLOCK
and, if nothing was there, waits in-process for a write to one of its streams (watched before
the read, so none is missed) or for :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common.clients.embedded import change_signal
from common.workers.outcome import Delivery
from common.workers.stats import WorkerStats

__all__ = ["StreamReading", "is_nogroup"]


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


class StreamReading:
    """Mixin of :class:`~common.workers.engine.StreamConsumer`: group creation and reads."""

    redis: aioredis.Redis
    streams: dict[str, str]  # every stream read -> its dead-letter stream
    group: str
    consumer: str
    held: dict[bytes, Delivery]
    stats: WorkerStats
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    _embedded: bool
    _reading: bool
    _stopping: asyncio.Event

    async def _ensure_group(self) -> None:
        """Create the group on each stream (from id 0, with MKSTREAM) unless it exists."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
                self.log.info("created group %s on %s", self.group, stream)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _read(self, count: int, block_ms: int) -> list[Delivery]:
        self._reading = True
        try:
            if self._embedded:
                reply: Any = await self._read_embedded(count, block_ms)
            else:
                reply = await self.redis.xreadgroup(
                    self.group, self.consumer, self._new_entries(), count=count, block=block_ms
                )
        finally:
            self._reading = False
        if not reply:
            return []
        now = time.monotonic()
        batch = []
        held = self.held
        for raw_stream, entries in reply:
            stream = raw_stream.decode() if isinstance(raw_stream, bytes) else raw_stream
            for entry_id, fields in entries:
                if fields is None:  # deleted between delivery and read; nothing to run
                    continue
                delivery = Delivery(entry_id, fields, 1, now, stream=stream)
                held[entry_id] = delivery
                batch.append(delivery)
        self.stats.read += len(batch)
        return batch

    def _new_entries(self) -> dict[Any, Any]:
        return {stream: ">" for stream in self.streams}

    async def _read_embedded(self, count: int, block_ms: int) -> Any:
        with change_signal(self.redis).watch(*self.streams, exclusive=True) as change:
            reply = await self.redis.xreadgroup(
                self.group, self.consumer, self._new_entries(), count=count
            )
            if reply or not await change.wait(block_ms / 1000, interrupt=self._stopping):
                return reply
        return await self.redis.xreadgroup(
            self.group, self.consumer, self._new_entries(), count=count
        )
