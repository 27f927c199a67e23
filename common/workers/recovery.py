"""Recovery: take over what dead or stuck consumers left pending, and keep streams tidy.

One :class:`Reclaimer` runs per worker pool (not per worker). Every ``claim_interval_s`` it
lists the entries idle longer than ``visibility_timeout_s`` (XPENDING with IDLE, which also
gives each entry's delivery count), claims them (XCLAIM: Redis counts the new delivery) and
hands them to the pool's workers. Live consumers renew their leases, so only entries of dead
or frozen consumers, and entries released at shutdown, are ever this old. Entries deleted or
trimmed while pending are cleared from the pending list and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from common.workers.delays import Claimed, claim_due, claim_idle, due_ids
from common.workers.engine import StreamConsumer
from common.workers.hygiene import tidy_stream
from common.workers.leases import after_last
from common.workers.outcome import Delivery

__all__ = ["Reclaimer"]

logger = logging.getLogger("common.workers")

_PAGE = 100


class Reclaimer:
    """Claims abandoned entries of one stream and group for a set of local consumers."""

    def __init__(self, workers: Sequence[StreamConsumer], *, tidy_every: int = 12) -> None:
        if not workers:
            raise ValueError("a Reclaimer needs at least one worker")
        first = workers[0]
        self.workers = list(workers)
        self.redis = first.redis
        self.stream = first.stream
        self.group = first.group
        self.settings = first.settings
        self.visibility_ms = int(self.settings.visibility_timeout_s * 1000)
        self.tidy_every = tidy_every
        self.reclaimed = 0
        self.deleted_while_pending = 0
        self._turn = itertools.cycle(range(len(self.workers)))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"reclaim:{self.stream}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        passes = 0
        while True:
            try:
                await self.reclaim_once()
                passes += 1
                if passes % self.tidy_every == 1:
                    await tidy_stream(
                        self.redis, self.settings, self.stream, {w.consumer for w in self.workers}
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("reclaim pass on %s failed: %s", self.stream, exc)
            await asyncio.sleep(self.settings.claim_interval_s)

    def _target(self) -> StreamConsumer | None:
        for _ in range(len(self.workers)):
            worker = self.workers[next(self._turn)]
            if worker.is_running and not worker._stopping.is_set():
                return worker
        return None

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
        return self._hand_over(target, claimed, "idle over %.1fs" % (self.visibility_ms / 1000))

    async def claim_due_retries(self) -> int:
        """Claim the retries that are due in the delay set (their consumer may be gone)."""
        total = 0
        while True:
            target = self._target()
            if target is None:
                return total
            ids = await due_ids(self.redis, self.stream, self.group, int(time.time() * 1000))
            if not ids:
                return total
            claimed = await claim_due(
                self.redis, self.stream, self.group, target.consumer, ids, int(time.time() * 1000)
            )
            total += self._hand_over(target, claimed, "due retries")
            if len(ids) < 100:
                return total

    def _hand_over(self, target: StreamConsumer, claimed: Claimed, why: str) -> int:
        now = time.monotonic()
        deliveries: list[Delivery] = []
        gone = 0
        for entry_id, got in claimed.items():
            if got is None:
                gone += 1
                continue
            count, fields = got
            delivery = Delivery(entry_id, fields, count, now)
            target.held[entry_id] = delivery
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
        return len(deliveries)
