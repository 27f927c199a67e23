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

from common.models.actions import ErrorDetail
from common.workers.cancel import wait_event
from common.workers.delays import Claimed, ScheduleRetry, claim_due, delay_set_key
from common.workers.outcome import (
    Ack,
    DeadLetter,
    DeadLetterReason,
    Delivery,
    Fail,
    HeldKey,
    Outcome,
    Write,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from common.workers.leases import LeaseKeeper
    from common.workers.outbox import FlushResult, Outbox
    from common.workers.retry import RetryPolicy
    from common.workers.stats import WorkerStats

__all__ = ["Settlement"]

_ACK_DELAY_S = 0.005  # longest an XACK waits for the next write to go with (see below)


class Settlement:
    """Mixin of :class:`~common.workers.engine.StreamConsumer`: settles outcomes."""

    redis: aioredis.Redis
    outbox: Outbox
    stats: WorkerStats
    retry_policy: RetryPolicy
    leases: LeaseKeeper
    held: dict[HeldKey, Delivery]
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    _retries: list[tuple[float, HeldKey]]
    _waiting: dict[HeldKey, Delivery]  # scheduled retries this consumer waits for
    streams: dict[str, str]
    stream: str
    group: str
    consumer: str
    _stopping: asyncio.Event
    _flush_wanted: asyncio.Event
    _flush_closing: asyncio.Event
    _flush_lock: asyncio.Lock
    _outbox_progress: asyncio.Event
    _ack_timer: asyncio.TimerHandle | None

    def _describe(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def stream_of(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def _failure_writes(self, delivery: Delivery, error: ErrorDetail) -> tuple[Write, ...]:
        raise NotImplementedError

    def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        if isinstance(outcome, Ack):
            self.outbox.add_ack(delivery, outcome.writes)
            self.stats.handled += 1
            delivery.payload = None  # done with: freed now, not at the flush (fewer GC survivors)
            self._flush_wanted.set()
        elif isinstance(outcome, DeadLetter):
            self._dead_letter(delivery, outcome)
        elif (delivery.policy or self.retry_policy).should_retry(delivery.attempt) and (
            (delay := self._retry_delay(delivery, outcome)) is not None
        ):
            due_ms = _now_ms() + int(delay * 1000)
            self.outbox.add_retry(
                delivery,
                ScheduleRetry(
                    delay_set_key(self.stream_of(delivery), self.group), delivery.entry_id, due_ms
                ),
            )
            self._flush_wanted.set()
            # Wait for it here too (the read loop's block time counts it from now on); the
            # delay set is the truth, and the claim needs it written first.
            heapq.heappush(self._retries, (time.monotonic() + delay, delivery.key))
            self.stats.failed += 1
            self.log.warning(
                "%s failed (attempt %d/%d, retry in %.2fs): %s: %s",
                self._describe(delivery),
                delivery.attempt,
                (delivery.policy or self.retry_policy).max_retries,
                delay,
                outcome.error.error_type,
                outcome.error.message,
                # The traceback of the first failure; the last one's goes with the dead letter.
                exc_info=outcome.exc if delivery.attempt == 1 else None,
            )
        else:
            self.stats.failed += 1
            if outcome.exc is not None:
                self.log.error(
                    "%s failed on its last attempt (%d)",
                    self._describe(delivery),
                    delivery.attempt,
                    exc_info=outcome.exc,
                )
            self._dead_letter(delivery, self._exhausted(delivery, outcome.error))

    def _retry_delay(self, delivery: Delivery, outcome: Fail) -> float | None:
        """The delay before the next attempt, or None when that attempt could not finish
        before the action's deadline (its caller has given up by then: fail it now, with the
        real error, rather than retry into a timeout)."""
        delay: float = (
            (delivery.policy or self.retry_policy).get_delay(delivery.attempt)
            if outcome.delay is None
            else outcome.delay
        )
        if outcome.deadline is not None and time.time() + delay >= outcome.deadline:
            return None
        return delay

    def _exhausted(self, delivery: Delivery, error: ErrorDetail) -> DeadLetter:
        return DeadLetter(
            DeadLetterReason.MAX_RETRIES, error, self._failure_writes(delivery, error)
        )

    def _dead_letter(self, delivery: Delivery, dead: DeadLetter) -> None:
        self.outbox.add_dead(delivery, dead)
        self._flush_wanted.set()
        self.stats.count_dead_letter(dead.reason)
        self.log.warning(
            "%s dead-lettered (%s after %d deliveries): %s",
            self._describe(delivery),
            dead.reason.value,
            delivery.attempt,
            dead.error.message,
        )

    async def _flush(self) -> bool:
        """Write the outbox until it is empty (True), or until Redis refuses (False: what is
        left stays in the outbox, pending in Redis, for the next attempt after a backoff)."""
        async with self._flush_lock:
            while self.outbox.items:
                result = await self.outbox.flush(self.redis)
                self._account(result)
                if result.error is not None:
                    self._flush_failed(result.error)
                    return False
            if self.stats.flush_error is not None:
                self.log.info("the outbox is written again; reading resumes")
                self.stats.flush_error = None
            self._outbox_progress.set()
            return True

    async def _write_replies_now(self) -> None:
        """Round trip 1 of a flush, in the calling task: the replies and callbacks of what is
        settled leave at once (with the XACKs of earlier entries whose replies are confirmed).
        The XACKs of these follow with the next such write, or from the flusher within
        ``_ACK_DELAY_S`` if none comes: one round trip per action instead of two when actions
        follow each other, as pseudo-sync calls in sequence do. (Skipped while the flusher is
        busy: it takes what is settled next.)"""
        if self._flush_lock.locked() or not self.outbox.has_writes():
            return  # nothing to answer (fire-and-forget): the flusher ACKs them
        async with self._flush_lock:
            result = await self.outbox.flush(self.redis, writes_only=True)
            self._account(result)
            if result.error is not None:
                self._flush_failed(result.error)
                self._flush_wanted.set()
                return
        if self.outbox.items and self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(_ACK_DELAY_S, self._ack_due)

    def _ack_due(self) -> None:
        self._ack_timer = None
        if self.outbox.items:
            self._flush_wanted.set()

    def _account(self, result: FlushResult) -> None:
        held = self.held
        for item in result.done:
            held.pop(item.delivery.key, None)
            if not item.ack:  # scheduled in the delay set: no lease any more
                self._waiting[item.delivery.key] = item.delivery
        self.stats.acked += len(result.done)
        for item in result.refused:
            assert item.dead is not None
            self.stats.handled -= 1
            self.stats.count_dead_letter(item.dead.reason)
        trimmed = self.outbox.dead_letters_trimmed
        if trimmed:
            self.outbox.dead_letters_trimmed = 0
            self.stats.dead_letters_trimmed += trimmed

    def _flush_failed(self, error: BaseException) -> None:
        self.stats.flush_errors += 1
        first = self.stats.flush_error is None
        self.stats.flush_error = f"{type(error).__name__}: {error}"
        log = self.log.warning if first else self.log.debug
        log(
            "could not write %d settled entries (%s: %s); they stay pending, reading pauses "
            "until the outbox is written",
            len(self.outbox),
            type(error).__name__,
            error,
        )
        self._outbox_progress.set()

    async def _flush_loop(self) -> None:
        """The flusher: writes the outbox as soon as anything is settled (coalescing what
        settles meanwhile), and retries with backoff while Redis refuses. It never dies on an
        error; at stop it writes what is left, within ``_FINAL_FLUSH_S``."""
        backoff = 0.0
        while True:
            if backoff:
                await wait_event(self._flush_closing, backoff)
            else:
                await self._flush_wanted.wait()
            self._flush_wanted.clear()
            try:
                ok = await self._flush()
            except Exception:  # a bug, not Redis (flush returns Redis errors): keep going
                self.log.exception("flush crashed; retrying")
                ok = False
            backoff = 0.0 if ok else min(max(backoff * 2, 0.05), 2.0)
            if self._flush_closing.is_set() and not self.outbox.items:
                return

    async def _claim_due_retries(self) -> list[Delivery]:
        """Take this consumer's due retries off the delay set and claim them (a counted
        delivery: the attempt number is Redis's delivery count). One that a reclaimer took
        first is simply not ours any more; one deleted meanwhile is counted."""
        now = time.monotonic()
        due: list[Delivery] = []
        later: list[HeldKey] = []
        while self._retries and self._retries[0][0] <= now:
            _, key = heapq.heappop(self._retries)
            delivery = self._waiting.pop(key, None)
            if delivery is not None:
                due.append(delivery)
            elif key in self.held:  # its schedule is still on its way to Redis
                later.append(key)
        for key in later:
            heapq.heappush(self._retries, (now + 0.01, key))
        if not due:
            return []
        claimed: dict[str, Claimed] = {}  # per stream: entry ids are unique per stream only
        by_stream: dict[str, list[bytes]] = {}
        for d in due:
            by_stream.setdefault(self.stream_of(d), []).append(d.entry_id)
        for stream, ids in by_stream.items():
            try:
                claimed[stream] = await claim_due(
                    self.redis, stream, self.group, self.consumer, ids, _now_ms() + 5
                )
            except Exception as exc:  # they stay in the delay set: a reclaimer takes them
                self.log.warning("could not claim %d due retries (%s)", len(ids), exc)
        batch = []
        now = time.monotonic()
        for delivery in due:
            of_stream = claimed.get(self.stream_of(delivery), {})
            if delivery.entry_id not in of_stream:
                continue  # a reclaimer took it first
            got = of_stream[delivery.entry_id]
            if got is None:
                self.stats.deleted_while_pending += 1
                self.log.warning(
                    "%s was deleted from the stream while waiting for its retry",
                    self._describe(delivery),
                )
            else:
                delivery.attempt, delivery.fields = got
                delivery.touched = now
                self.held[delivery.key] = delivery
                batch.append(delivery)
        self.stats.retried += len(batch)
        return batch


def _now_ms() -> int:
    return int(time.time() * 1000)
