"""Leases: a consumer keeps what it holds (long handlers, waiting retries) and hands it back.

Redis lets any consumer claim an entry idle longer than the visibility timeout. While this
consumer works on an entry, or holds it for a retry, it resets the entry's idle time every third
of the timeout (XCLAIM to itself, JUSTID: no delivery is counted). Each claim carries a
``min-idle-time`` just under the time since this consumer last reset the entry, so an entry that
another consumer took over meanwhile (its idle time is shorter) is never stolen back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from common.workers.outcome import Delivery

if TYPE_CHECKING:
    from common.workers.engine import StreamConsumer

__all__ = ["LeaseKeeper"]

logger = logging.getLogger("common.workers")

_MARGIN_MS = 5


class LeaseKeeper:
    def __init__(self, consumer: StreamConsumer) -> None:
        self.consumer = consumer
        self.visibility_ms = int(consumer.settings.visibility_timeout_s * 1000)

    @property
    def period_s(self) -> float:
        return max(self.visibility_ms / 3000, 0.01)

    async def claim(
        self, deliveries: Iterable[Delivery], *, justid: bool
    ) -> dict[bytes, dict[bytes, bytes] | None]:
        """XCLAIM each delivery to this consumer if it still is ours; returns what was claimed
        (fields, or None with ``justid``). Without ``justid`` Redis counts a new delivery."""
        c = self.consumer
        deliveries = list(deliveries)
        if not deliveries:
            return {}
        now = time.monotonic()
        pipe = c.redis.pipeline(transaction=False)
        for d in deliveries:
            min_idle = max(0, int((now - d.touched) * 1000) - _MARGIN_MS)
            pipe.xclaim(c.stream, c.group, c.consumer, min_idle, [d.entry_id], justid=justid)
        results = await pipe.execute(raise_on_error=False)
        claimed: dict[bytes, dict[bytes, bytes] | None] = {}
        for d, result in zip(deliveries, results, strict=True):
            if isinstance(result, Exception) or not result:
                continue
            if justid:
                claimed[d.entry_id] = None
            else:
                entry_id, fields = result[0]
                if fields is not None:
                    claimed[entry_id] = fields
            d.touched = now
        return claimed

    async def renew(self) -> None:
        """Reset the idle time of every held entry older than a third of the timeout."""
        c = self.consumer
        now = time.monotonic()
        stale = [d for d in c.held.values() if now - d.touched >= self.period_s]
        if not stale:
            return
        claimed = await self.claim(stale, justid=True)
        c.stats.lease_renewals += len(claimed)
        for d in stale:
            if d.entry_id not in claimed:
                logger.warning(
                    "%s: lost entry %s (claimed by another consumer or deleted)",
                    c.consumer,
                    d.entry_id,
                )
                c.stats.lost += 1
                c.held.pop(d.entry_id, None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._loop(), name=f"leases:{self.consumer.consumer}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.renew()
            except Exception as exc:
                logger.warning("%s: lease renewal failed: %s", self.consumer.consumer, exc)

    async def release_all(self) -> int:
        """Hand back every entry still pending for this consumer, so that another consumer's
        reclaim takes it at once (a waiting retry keeps what is left of its backoff); remove
        the consumer from the group when it holds nothing."""
        c = self.consumer
        released = 0
        try:
            pending = await c.redis.xpending_range(
                c.stream, c.group, min="-", max="+", count=10_000, consumername=c.consumer
            )
            if pending:
                now = time.monotonic()
                pipe = c.redis.pipeline(transaction=False)
                for item in pending:
                    entry_id = item["message_id"]
                    held = c.held.get(entry_id)
                    idle = self.visibility_ms
                    if held is not None and held.retry_at is not None:
                        idle = max(0, self.visibility_ms - int((held.retry_at - now) * 1000))
                    pipe.xclaim(
                        c.stream, c.group, c.consumer, 0, [entry_id], idle=idle, justid=True
                    )
                await pipe.execute(raise_on_error=False)
                released = len(pending)
                c.stats.released += released
                logger.info(
                    "%s: released %d pending entries for prompt pickup", c.consumer, released
                )
            else:
                await c.redis.xgroup_delconsumer(c.stream, c.group, c.consumer)
        except Exception as exc:
            logger.warning("%s: could not release pending entries: %s", c.consumer, exc)
        c.held.clear()
        return released
