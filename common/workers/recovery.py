"""Recovery: take over what dead or stuck consumers left pending, and keep streams tidy.

One :class:`Reclaimer` runs per worker pool (not per worker). Every ``claim_interval_s`` it
lists the entries idle longer than ``visibility_timeout_s`` (XPENDING with IDLE, which also
gives each entry's delivery count), claims them (XCLAIM: Redis counts the new delivery) and
hands them to the pool's workers. Live consumers renew their leases, so only entries of dead
or frozen consumers, and entries released at shutdown, are ever this old. Entries deleted or
trimmed while pending are cleared from the pending list and counted.

A second loop keeps the stream within a small multiple of ``stream_maxlen``: it checks the
length (XLEN) at an interval that follows the stream's growth, about every sixteenth of
``stream_maxlen`` of new entries (between 20 ms and one second, or ``claim_interval_s`` if
shorter), and as soon as the stream is over the cap trims what every group is done with (see
:func:`trim_stream`: LIMITed rounds of 100,000 entries, never below an entry some group has
not ACKed or not read). At a sustained rate of R entries/s, the consumed entries left in the
stream stay below ``stream_maxlen + R x (interval + L)`` plus one node (100 entries), where L
is how late a busy event loop runs the check and its four round trips: under 3 x
``stream_maxlen`` in tests/fault/test_trim.py (300,000 entries at 20,000/s, cap 10,000, the
pool draining in the same process on a shared 2-core machine; measured about 1.2-2.6 x, and
up to 3.2 x with the machine's cores also busy with other work).
When R jumps from idle, the first check, at most a second later, may find up to R x 1 s more.
A lagging group's backlog (unread or un-ACKed entries) comes on top: it is never trimmed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from common.clients.scheduled import move_due, next_due_ms
from common.workers.cancel import cancel_and_wait, cancel_requested, wait_event
from common.workers.delays import Claimed, claim_due, claim_idle, due_ids
from common.workers.engine import StreamConsumer
from common.workers.hygiene import tidy_stream, trim_stream
from common.workers.leases import after_last
from common.workers.logs import RepeatedFailures
from common.workers.outcome import Delivery

__all__ = ["Reclaimer"]

logger = logging.getLogger(__name__)

_PAGE = 100
_SCHEDULE_POLL_S = 0.25  # how often the scheduled set is looked at (delayed sends' precision)
_STOP_TIMEOUT_S = 2.0
_TRIM_MIN_WAIT_S = 0.02
_TRIM_MAX_WAIT_S = 1.0


def _accepts_work(worker: StreamConsumer) -> bool:
    """A worker may be handed claimed entries only while it runs and is not stopping."""
    return worker.is_running and not worker._stopping.is_set()


class Reclaimer:
    """Claims abandoned entries of one stream and group for a set of local consumers (of
    ``stream``: by default their first stream; a pool runs one reclaimer per stream)."""

    def __init__(
        self,
        workers: Sequence[StreamConsumer],
        *,
        stream: str | None = None,
        tidy_every: int = 12,
    ) -> None:
        if not workers:
            raise ValueError("a Reclaimer needs at least one worker")
        first = workers[0]
        self.workers = list(workers)
        self.redis = first.redis
        self.stream = stream or first.stream
        self.group = first.group
        self.settings = first.settings
        self.visibility_ms = int(self.settings.visibility_timeout_s * 1000)
        self.tidy_every = tidy_every
        self.reclaimed = 0
        self.deleted_while_pending = 0
        self.trimmed = 0
        self._turn = itertools.cycle(range(len(self.workers)))
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._tasks:
            return
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._loop(), name=f"reclaim:{self.stream}")]
        if self.settings.stream_maxlen:
            self._tasks.append(asyncio.create_task(self._trim_loop(), name=f"trim:{self.stream}"))
        self._tasks.append(
            asyncio.create_task(self._schedule_loop(), name=f"scheduled:{self.stream}")
        )

    async def stop(self, timeout: float = _STOP_TIMEOUT_S) -> None:
        """Stop the loops at once (a pass in flight is cut short: whatever it claimed stays
        pending under its target consumer, whose hand-back releases it); waits at most
        ``timeout`` seconds."""
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            if not await cancel_and_wait(task, timeout):
                logger.error("%s did not stop within %.1fs", task.get_name(), timeout)

    async def _trim_loop(self) -> None:
        maxlen = self.settings.stream_maxlen
        longest_wait = min(self.settings.claim_interval_s, _TRIM_MAX_WAIT_S)
        loop = asyncio.get_running_loop()
        last_length: int | None = None
        last_at = loop.time()
        failures = RepeatedFailures(logger, f"trimming {self.stream}")
        while not self._stop.is_set():
            wait = longest_wait
            try:
                length = int(await self.redis.xlen(self.stream))
                now = loop.time()
                if last_length is not None and length > last_length and now > last_at:
                    rate = (length - last_length) / (now - last_at)  # new entries per second
                    wait = min(longest_wait, max(_TRIM_MIN_WAIT_S, maxlen / 16 / rate))
                if length > maxlen:
                    trimmed = await trim_stream(
                        self.redis, self.settings, self.stream, length=length
                    )
                    self.trimmed += trimmed
                    length -= trimmed
                last_length, last_at = length, loop.time()
                failures.ok()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures.failed(exc)
            if cancel_requested():
                raise asyncio.CancelledError
            await wait_event(self._stop, wait)

    async def _schedule_loop(self) -> None:
        """Move delayed sends onto the stream when they are due (see
        :mod:`common.clients.scheduled`): one cheap look per poll period, a script only when
        something is due."""
        poll = min(_SCHEDULE_POLL_S, self.settings.claim_interval_s)
        failures = RepeatedFailures(logger, f"moving due scheduled actions on {self.stream}")
        while not self._stop.is_set():
            wait = poll
            try:
                due = await next_due_ms(self.redis, self.stream)
                failures.ok()
                now = int(time.time() * 1000)
                if due is not None and due <= now:
                    moved = await move_due(self.redis, self.stream, now)
                    logger.debug("%s: %d scheduled actions are due: appended", self.stream, moved)
                    continue
                if due is not None:
                    wait = min(poll, (due - now) / 1000)
            except Exception as exc:
                failures.failed(exc)
            if cancel_requested():
                raise asyncio.CancelledError
            await wait_event(self._stop, wait)

    async def _loop(self) -> None:
        passes = 0
        failures = RepeatedFailures(logger, f"reclaim pass on {self.stream}")
        while not self._stop.is_set():
            try:
                await self.reclaim_once()
                failures.ok()
                passes += 1
                if passes % self.tidy_every == 1:
                    await tidy_stream(
                        self.redis, self.settings, self.stream, {w.consumer for w in self.workers}
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures.failed(exc)
            if cancel_requested():  # a callee swallowed our cancellation: honour it here
                raise asyncio.CancelledError
            await wait_event(self._stop, self.settings.claim_interval_s)

    def _target(self) -> StreamConsumer | None:
        for _ in range(len(self.workers)):
            worker = self.workers[next(self._turn)]
            if self._accepts(worker):
                return worker
        return None

    def _accepts(self, worker: StreamConsumer) -> bool:
        return _accepts_work(worker)

    async def reclaim_once(self) -> int:
        """One pass over the whole pending list; returns how many entries were claimed."""
        claimed_total = await self.claim_due_retries()
        start = "-"
        while True:
            page = await self.redis.xpending_range(
                self.stream, self.group, min=start, max="+", count=_PAGE, idle=self.visibility_ms
            )
            if not page:
                break
            target = self._target()
            if target is None:
                break
            claimed_total += await self._claim_page(target, page)
            if len(page) < _PAGE:
                break
            start = after_last(page)
        return claimed_total

    async def _claim_page(self, target: StreamConsumer, page: Sequence[Mapping[str, Any]]) -> int:
        """Claim the abandoned entries of ``page`` (not those waiting in the delay set)."""
        ids = [item["message_id"] for item in page]
        claimed = await claim_idle(
            self.redis, self.stream, self.group, target.consumer, ids, self.visibility_ms
        )
        return await self._hand_over(
            target, claimed, "idle over %.1fs" % (self.visibility_ms / 1000)
        )

    async def claim_due_retries(self) -> int:
        """Claim the retries overdue in the delay set: due for longer than the visibility
        timeout, so their consumer is gone or stuck (a live one takes its own retries when
        they are due, and its blocked read wakes for them; a claim from here would wait in
        the intake of a consumer whose read is blocked)."""
        total = 0
        while True:
            target = self._target()
            if target is None:
                return total
            overdue = int(time.time() * 1000) - self.visibility_ms
            ids = await due_ids(self.redis, self.stream, self.group, overdue)
            if not ids:
                return total
            claimed = await claim_due(
                self.redis, self.stream, self.group, target.consumer, ids, overdue
            )
            total += await self._hand_over(target, claimed, "due retries")
            if len(ids) < 100:
                return total

    async def _hand_over(self, target: StreamConsumer, claimed: Claimed, why: str) -> int:
        # The target may have begun to stop while the claims were on their way (its hand-back
        # may even be over): then it gets nothing, and what was claimed for it is handed back.
        handing_over = self._accepts(target)
        now = time.monotonic()
        deliveries: list[Delivery] = []
        refused: list[tuple[bytes, int]] = []
        gone = 0
        for entry_id, got in claimed.items():
            if got is None:
                gone += 1
                continue
            count, fields = got
            if not handing_over:
                refused.append((entry_id, count))
                continue
            delivery = Delivery(entry_id, fields, count, now, stream=self.stream)
            target.held[delivery.key] = delivery
            deliveries.append(delivery)
        if gone:
            target.stats.deleted_while_pending += gone
            self.deleted_while_pending += gone
            logger.warning("%s: %d pending entries were deleted from the stream", self.stream, gone)
        if deliveries:
            target.intake.extend(deliveries)
            target.stats.reclaimed += len(deliveries)
            self.reclaimed += len(deliveries)
            logger.info("%s: claimed %d entries (%s)", target.consumer, len(deliveries), why)
        if refused:
            await self._hand_back(target, refused)
        return len(deliveries)

    async def _hand_back(self, target: StreamConsumer, claimed: list[tuple[bytes, int]]) -> None:
        """Entries just claimed for a consumer that is stopping: make them idle past the
        visibility timeout again, with the delivery this claim counted taken back (RETRYCOUNT),
        so that the next pass, here or in another process, takes them at once, at no cost to
        their retry budget. They stay pending meanwhile: never lost."""
        pipe = self.redis.pipeline(transaction=False)
        for entry_id, count in claimed:
            pipe.xclaim(
                self.stream,
                self.group,
                target.consumer,
                0,
                [entry_id],
                idle=self.visibility_ms,
                retrycount=max(0, count - 1),
                justid=True,
            )
        await pipe.execute(raise_on_error=False)
        logger.info(
            "%s: stopping; handed back %d entries claimed for it", target.consumer, len(claimed)
        )
