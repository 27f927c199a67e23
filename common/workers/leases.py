"""Leases: a consumer keeps the entries it works on, and hands back what it holds at stop.

Redis lets any consumer claim an entry idle longer than the visibility timeout. While this
consumer holds an entry (its handler runs, or its outcome waits to be written) it resets the
entry's idle time every third of the timeout. A failed entry waiting for its retry is *not*
held: the delay set keeps reclaimers off it (see :mod:`common.workers.delays`).

A renewal is one script per stream and batch: for each entry, an existence check, then XCLAIM
to ourselves (JUSTID: no delivery counted) with a ``min-idle-time`` just under the time since
our last reset, so that an entry another consumer took over meanwhile (its idle time is
shorter) is never stolen back. That time is measured from when a renewal's reply *arrived*,
never from when it was sent, and renewals run one at a time. An entry deleted from the stream
(trimmed, XDEL) is left alone and pending, never claimed: on Redis 7 claiming a deleted entry
drops it from the pending list, which would erase the only trace of an action that never ran.
Its handler's outcome settles it; if this consumer dies first, a reclaimer finds and counts it.

At stop, :meth:`LeaseKeeper.release_all` hands back everything still pending for this consumer
(idle past the timeout, so another consumer's reclaim takes it at once; what was read but never
started gets its delivery back, so a graceful hand-back costs no attempt), then removes the
consumer from its group in one step with the check that it holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from common.workers.cancel import cancel_and_wait
from common.workers.hygiene import remove_consumer_if_empty
from common.workers.logs import RepeatedFailures
from common.workers.outcome import Delivery, HeldKey

if TYPE_CHECKING:
    from common.workers.engine import StreamConsumer

__all__ = ["LeaseKeeper", "after_last"]


def after_last(page: Sequence[Mapping[str, Any]]) -> str:
    """Where the next XPENDING page starts: just after the last entry of ``page``."""
    last = page[-1]["message_id"]
    return "(" + (last.decode() if isinstance(last, bytes) else str(last))


_RELEASE_PAGE = 1000
_RENEW_CHUNK = 500  # entries per script call, so that one call never blocks the server long

# KEYS[1] stream; ARGV: group, consumer, then (entry id, min idle ms) pairs. Renews (XCLAIM
# JUSTID) each entry that still exists and leaves a deleted one alone, still pending. Returns
# per entry: 1 renewed, 0 not ours any more, -1 deleted from the stream.
_RENEW = """
local out = {}
for i = 3, #ARGV, 2 do
  if #redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i]) == 0 then
    out[#out + 1] = -1
  else
    local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[i + 1], ARGV[i], 'JUSTID')
    out[#out + 1] = #got
  end
end
return out
"""

# KEYS[1] stream; ARGV: group, consumer, idle ms, then (entry id, retry count or -1) pairs.
# Hands each entry back (idle past the timeout; with its delivery count set back where one is
# given). A deleted entry is ACKed instead (claiming it would drop it silently). Returns per
# entry: 1 handed back, 0 not ours, -1 deleted (ACKed).
_RELEASE = """
local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = -1
  else
    local got
    if tonumber(ARGV[i + 1]) >= 0 then
      got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3],
        'RETRYCOUNT', ARGV[i + 1], 'JUSTID')
    else
      got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3], 'JUSTID')
    end
    out[#out + 1] = #got
  end
end
return out
"""


class LeaseKeeper:
    def __init__(self, consumer: StreamConsumer) -> None:
        self.consumer = consumer
        self.visibility_ms = int(consumer.settings.visibility_timeout_s * 1000)
        self.period_s = max(self.visibility_ms / 3000, 0.01)  # renew every third of the timeout
        # Slack for clock granularity (Redis counts whole milliseconds); far below the timeout,
        # so a claim can never reach an entry another consumer took over.
        self.margin_ms = max(5, min(100, self.visibility_ms // 20))
        self.gone: set[HeldKey] = set()  # held entries found deleted while their handler runs
        self._reset_at: dict[HeldKey, float] = {}  # when our last renewal of an entry replied
        self._lock = asyncio.Lock()
        self._renew_script = consumer.redis.register_script(_RENEW)
        self._release_script = consumer.redis.register_script(_RELEASE)

    def _since_reset(self, d: Delivery, now: float) -> float:
        """Seconds since this consumer last reset ``d``'s idle time (a lower bound)."""
        return now - max(d.touched, self._reset_at.get(d.key, 0.0))

    def _lose(self, d: Delivery) -> None:
        """``d`` was taken over by another consumer: stop holding it, and count it."""
        c = self.consumer
        c.log.warning("lost entry %s to another consumer", d.entry_id.decode())
        c.stats.lost += 1
        c.held.pop(d.key, None)

    async def _renew(self, deliveries: list[Delivery]) -> tuple[set[HeldKey], set[HeldKey]]:
        """Reset the idle time of ``deliveries`` that are still ours; returns the ids taken over
        by another consumer and those deleted from their stream (left pending)."""
        c = self.consumer
        taken: set[HeldKey] = set()
        deleted: set[HeldKey] = set()
        renewed = 0
        by_stream: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            by_stream[c.stream_of(d)].append(d)
        for stream, ours in by_stream.items():
            for start in range(0, len(ours), _RENEW_CHUNK):
                chunk = ours[start : start + _RENEW_CHUNK]
                async with self._lock:
                    sent = time.monotonic()
                    args: list[bytes | str | int] = [c.group, c.consumer]
                    for d in chunk:
                        min_idle = max(0, int(self._since_reset(d, sent) * 1000) - self.margin_ms)
                        args += [d.entry_id, min_idle]
                    results = await self._renew_script(keys=[stream], args=args)
                    now = time.monotonic()  # the idle times were reset before this reply
                for d, result in zip(chunk, results, strict=True):
                    if result == 1:
                        renewed += 1
                        d.touched = now
                        self._reset_at[d.key] = now
                    elif result == -1:
                        deleted.add(d.key)
                    else:
                        taken.add(d.key)
        c.stats.lease_renewals += renewed
        self.gone |= deleted
        for d in deliveries:
            if d.key in taken and c.held.get(d.key) is d:
                self._lose(d)
        return taken, deleted

    async def renew(self) -> None:
        """Reset the idle time of every held entry older than a third of the timeout."""
        held = self.consumer.held
        self.gone &= held.keys()
        if len(self._reset_at) > len(held):
            self._reset_at = {k: v for k, v in self._reset_at.items() if k in held}
        now = time.monotonic()
        stale = [
            d
            for d in held.values()
            if self._since_reset(d, now) >= self.period_s and d.key not in self.gone
        ]
        if stale:
            await self._renew(stale)

    async def extend(self, delivery: Delivery) -> bool:
        """Reset ``delivery``'s idle time now (a handler asking for more time). False if it is
        no longer this consumer's, or was deleted from the stream (then left pending)."""
        taken, deleted = await self._renew([delivery])
        return not taken and not deleted

    async def confirm(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """The deliveries that are still this consumer's: call it just before starting them.

        A delivery no longer held (a renewal found it taken) is dropped. One whose lease may
        have lapsed (not renewed for two periods: the process was frozen, or the event loop
        blocked) is renewed first, and dropped, counted as lost, if another consumer took it
        over meanwhile. Otherwise no round trip is made."""
        c = self.consumer
        deliveries = [d for d in deliveries if c.held.get(d.key) is d]
        now = time.monotonic()
        doubtful = [d for d in deliveries if self._since_reset(d, now) >= 2 * self.period_s]
        if not doubtful:
            return deliveries
        taken, _ = await self._renew(doubtful)
        return [d for d in deliveries if d.key not in taken]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._loop(), name=f"leases:{self.consumer.consumer}")
        try:
            yield
        finally:
            if not await cancel_and_wait(task, 2.0):
                self.consumer.log.error("the lease renewal task would not stop")

    async def _loop(self) -> None:
        failures = RepeatedFailures(self.consumer.log, "lease renewal")
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.renew()
                failures.ok()
            except Exception as exc:
                failures.failed(exc)

    async def release_all(self) -> int:
        """Hand back every entry still pending for this consumer on each of its streams, so
        that another consumer's reclaim takes it at once, including entries a reclaimer
        claimed for it that it never started (its ``intake``); then remove the consumer from
        each group if it holds nothing there (one step with the check: an entry claimed for it
        meanwhile is never destroyed with it). A scheduled retry stays in the delay set, which
        keeps it until due. Entries deleted from the stream meanwhile are ACKed and counted."""
        c = self.consumer
        released = 0
        c.intake.clear()  # pending under this consumer in Redis: released with the rest below
        for stream in c.streams:
            try:
                released += await self._release_stream(stream)
                await remove_consumer_if_empty(c.redis, stream, c.group, c.consumer)
            except Exception as exc:
                c.log.warning("could not release pending entries of %s: %s", stream, exc)
        if released:
            c.stats.released += released
            c.log.info("released %d pending entries for prompt pickup", released)
        c.held.clear()
        self.gone.clear()
        self._reset_at.clear()
        return released

    async def _release_stream(self, stream: str) -> int:
        c = self.consumer
        released = 0
        start = "-"
        while page := await c.redis.xpending_range(
            stream, c.group, min=start, max="+", count=_RELEASE_PAGE, consumername=c.consumer
        ):
            args: list[bytes | str | int] = [c.group, c.consumer, self.visibility_ms]
            for item in page:
                entry_id = item["message_id"]
                assert isinstance(entry_id, bytes)
                held = c.held.get((stream, entry_id))
                # Read but never started: its delivery is given back (the reclaimer's claim
                # counts it again), so the hand-back costs no attempt of its retry budget.
                unstarted = held is not None and not held.started
                args += [entry_id, int(item["times_delivered"]) - 1 if unstarted else -1]
            results = await self._release_script(keys=[stream], args=args)
            deleted = [i["message_id"] for i, r in zip(page, results, strict=True) if r == -1]
            released += sum(1 for r in results if r == 1)
            if deleted:
                c.stats.deleted_while_pending += len(deleted)
                c.log.warning(
                    "%d entries were deleted from %s while pending; they cannot run again",
                    len(deleted),
                    stream,
                )
            if len(page) < _RELEASE_PAGE:
                break
            start = after_last(page)
        return released
