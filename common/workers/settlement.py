"""Settlement: what happens to a delivery once its handler is done.

``Ack`` goes to the outbox (replies and callbacks, then XACK, flushed in one round trip per
batch); ``Fail`` stays pending and is scheduled for its retry (claimed again when due, so that
Redis counts the delivery), or is dead-lettered once ``max_retries`` deliveries are spent;
``DeadLetter`` goes to the dead-letter stream and is ACKed in one transaction.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import TYPE_CHECKING

from common.clients.redis_manager import CONNECTION_ERRORS
from common.models.actions import ErrorDetail
from common.workers.outcome import Ack, DeadLetter, DeadLetterReason, Delivery, Outcome, Write

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from common.workers.leases import LeaseKeeper
    from common.workers.outbox import Outbox
    from common.workers.retry import RetryPolicy
    from common.workers.stats import WorkerStats

__all__ = ["Settlement"]


class Settlement:
    """Mixin of :class:`~common.workers.engine.StreamConsumer`: settles outcomes."""

    redis: aioredis.Redis
    outbox: Outbox
    stats: WorkerStats
    retry_policy: RetryPolicy
    leases: LeaseKeeper
    held: dict[bytes, Delivery]
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    _retries: list[tuple[float, bytes]]
    _stopping: asyncio.Event
    _flush_wanted: asyncio.Event

    def _describe(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def _failure_writes(self, delivery: Delivery, error: ErrorDetail) -> tuple[Write, ...]:
        raise NotImplementedError

    def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        if isinstance(outcome, Ack):
            self.outbox.add_ack(delivery.entry_id, outcome.writes)
            self.stats.handled += 1
            delivery.payload = None  # done with: freed now, not at the flush (fewer GC survivors)
        elif isinstance(outcome, DeadLetter):
            self._dead_letter(delivery, outcome)
        elif self.retry_policy.should_retry(delivery.attempt):
            delay = outcome.delay
            if delay is None:
                delay = self.retry_policy.get_delay(delivery.attempt)
            delivery.retry_at = time.monotonic() + delay
            heapq.heappush(self._retries, (delivery.retry_at, delivery.entry_id))
            self.stats.failed += 1
            self.log.warning(
                "%s failed (attempt %d/%d, retry in %.2fs): %s: %s",
                self._describe(delivery),
                delivery.attempt,
                self.retry_policy.max_retries,
                delay,
                outcome.error.error_type,
                outcome.error.message,
            )
        else:
            self.stats.failed += 1
            self._dead_letter(delivery, self._exhausted(delivery, outcome.error))

    def _exhausted(self, delivery: Delivery, error: ErrorDetail) -> DeadLetter:
        return DeadLetter(
            DeadLetterReason.MAX_RETRIES, error, self._failure_writes(delivery, error)
        )

    def _dead_letter(self, delivery: Delivery, dead: DeadLetter) -> None:
        self.outbox.add_dead(delivery, dead)
        self.stats.count_dead_letter(dead.reason)
        self.log.warning(
            "%s dead-lettered (%s after %d deliveries): %s",
            self._describe(delivery),
            dead.reason.value,
            delivery.attempt,
            dead.error.message,
        )

    async def _flush(self) -> None:
        """Write the outbox; on connection loss keep it and retry until written or stopped."""
        backoff = 0.05
        while len(self.outbox) or self.outbox.writes:
            try:
                settled = await self.outbox.flush(self.redis)
            except CONNECTION_ERRORS as exc:
                if self._stopping.is_set() and backoff > 1.0:
                    self.log.error(
                        "giving up flushing %d settled entries (%s); they stay "
                        "pending and will be delivered again",
                        len(self.outbox),
                        exc,
                    )
                    return
                self.log.warning("flush failed (%s); retrying in %.2fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            held = self.held
            for entry_id in settled:
                held.pop(entry_id, None)
            self.stats.acked += len(settled)

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await self._flush()

    async def _claim_due_retries(self) -> list[Delivery]:
        now = time.monotonic()
        due: list[Delivery] = []
        while self._retries and self._retries[0][0] <= now:
            _, entry_id = heapq.heappop(self._retries)
            delivery = self.held.get(entry_id)
            if delivery is not None and delivery.retry_at is not None:
                due.append(delivery)
        if not due:
            return []
        # Claim them again (not JUSTID): Redis counts the new delivery, which survives a crash.
        # The lease keeper counts those trimmed or taken over meanwhile.
        fresh = await self.leases.claim(due, justid=False)
        batch = []
        for delivery in due:
            delivery.retry_at = None
            if delivery.entry_id not in fresh:
                self.held.pop(delivery.entry_id, None)
                continue
            delivery.attempt += 1
            batch.append(delivery)
        self.stats.retried += len(batch)
        return batch
