"""Leases: a consumer keeps what it holds (long handlers, waiting retries) and hands it back.

Redis lets any consumer claim an entry idle longer than the visibility timeout. While this
consumer works on an entry, or holds it for a retry, it resets the entry's idle time every third
of the timeout (XCLAIM to itself, JUSTID: no delivery is counted). Each claim carries a
``min-idle-time`` just under the time since this consumer last reset the entry, so an entry that
another consumer took over meanwhile (its idle time is shorter) is never stolen back.

That time is measured from when a claim's reply *arrived*, never from when it was sent: a claim
that waited for a pooled connection reset the idle time late, and measuring from the send made
the next renewal ask for more idle time than the entry had, so the consumer lost its own lease.
The keeper remembers those reply times itself (a caller may stamp a delivery earlier), and runs
one claim at a time: a renewal and a retry claim of the same entry, sent together, each computed
a min-idle that the other's reset then made too large.

An entry that is gone from the stream (trimmed, XDEL) while held is told apart from one that
another consumer took. A waiting retry of it can never run, so it is counted as
``deleted_while_pending`` (and ACKed). An entry whose handler runs, or is about to, is left
pending and not renewed: the handler's outcome settles it, and if this consumer dies first,
a reclaimer finds and counts it. Renewals therefore check existence and claim in one script:
on Redis 7, claiming a deleted entry drops it from the pending list, which would erase the
only trace of an action that was never handled. (A handler that outlives the visibility
timeout on a deleted entry may thus be counted by a reclaimer and still succeed: counted
twice, never lost.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from common.clients.redis_manager import CONNECTION_ERRORS, is_embedded
from common.workers.cancel import cancel_and_wait
from common.workers.hygiene import remove_consumer_if_empty
from common.workers.outcome import Delivery

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


class LeaseKeeper:
    def __init__(self, consumer: StreamConsumer) -> None:
        self.consumer = consumer
        self.visibility_ms = int(consumer.settings.visibility_timeout_s * 1000)
        self.period_s = max(self.visibility_ms / 3000, 0.01)  # renew every third of the timeout
        # Slack for clock granularity (Redis counts whole milliseconds); far below the timeout,
        # so a claim can never reach an entry another consumer took over.
        self.margin_ms = max(5, min(100, self.visibility_ms // 20))
        self.gone: set[bytes] = set()  # held entries found deleted while their handler runs
        self._reset_at: dict[bytes, float] = {}  # when our last claim of an entry replied
        self._lock = asyncio.Lock()
        # The embedded server (fakeredis) has no scripting. (EVALSHA, loading on NOSCRIPT.)
        embedded = is_embedded(consumer.redis)
        self._renew_script = None if embedded else consumer.redis.register_script(_RENEW)

    def _since_reset(self, d: Delivery, now: float) -> float:
        """Seconds since this consumer last reset ``d``'s idle time (a lower bound)."""
        return now - max(d.touched, self._reset_at.get(d.entry_id, 0.0))

    async def claim(
        self, deliveries: Iterable[Delivery], *, justid: bool
    ) -> dict[bytes, dict[bytes, bytes] | None]:
        """XCLAIM each delivery to this consumer if it still is ours; returns what was claimed
        (fields, or None with ``justid``). Without ``justid`` Redis counts a new delivery: that
        is a retry: one of an entry deleted meanwhile is counted as deleted, one that another
        consumer took over as lost.

        A retry claim never raises on a lost connection: it claims nothing, so the caller drops
        the entries, which stay pending (unrenewed) and are reclaimed after the visibility
        timeout, with Redis's delivery count intact."""
        c = self.consumer
        deliveries = list(deliveries)
        if not deliveries:
            return {}
        try:
            claimed, missing = await self._claim(deliveries, justid=justid)
            if missing and not justid:
                gone = await self._absent(d.entry_id for d in missing)
                await self._forget(gone)
                for d in missing:
                    if d.entry_id not in gone:
                        self._lose(d)
        except CONNECTION_ERRORS as exc:
            if justid:
                raise
            c.log.warning(
                "could not claim %d due retries (%s); they will be reclaimed after %.1fs",
                len(deliveries),
                exc,
                self.visibility_ms / 1000,
            )
            return {}
        return claimed

    async def _claim(
        self, deliveries: list[Delivery], *, justid: bool
    ) -> tuple[dict[bytes, dict[bytes, bytes] | None], list[Delivery]]:
        c = self.consumer
        async with self._lock:
            sent = time.monotonic()
            pipe = c.redis.pipeline(transaction=False)
            for d in deliveries:
                min_idle = max(0, int(self._since_reset(d, sent) * 1000) - self.margin_ms)
                pipe.xclaim(c.stream, c.group, c.consumer, min_idle, [d.entry_id], justid=justid)
            results = await pipe.execute(raise_on_error=False)
            # The idle times were reset at some moment before this reply: count from here.
            now = time.monotonic()
        claimed: dict[bytes, dict[bytes, bytes] | None] = {}
        missing: list[Delivery] = []
        for d, result in zip(deliveries, results, strict=True):
            if isinstance(result, Exception) or not result:
                missing.append(d)
                continue
            if justid:
                claimed[d.entry_id] = None
            else:
                entry_id, fields = result[0]
                if fields is None:  # Redis < 7 keeps deleted entries pending
                    missing.append(d)
                    continue
                claimed[entry_id] = fields
            d.touched = now
            self._reset_at[d.entry_id] = now
        return claimed, missing

    def _lose(self, d: Delivery) -> None:
        """``d`` was taken over by another consumer: stop holding it, and count it."""
        c = self.consumer
        c.log.warning("lost entry %s to another consumer", d.entry_id.decode())
        c.stats.lost += 1
        c.held.pop(d.entry_id, None)

    async def _absent(self, entry_ids: Iterable[bytes]) -> set[bytes]:
        """The entries of ``entry_ids`` that no longer exist in the stream."""
        c = self.consumer
        entry_ids = list(entry_ids)
        if not entry_ids:
            return set()
        pipe = c.redis.pipeline(transaction=False)
        for entry_id in entry_ids:
            pipe.xrange(c.stream, entry_id, entry_id)
        found = await pipe.execute(raise_on_error=False)
        return {
            entry_id
            for entry_id, rows in zip(entry_ids, found, strict=True)
            if not isinstance(rows, Exception) and not rows
        }

    async def _forget(self, entry_ids: Iterable[bytes]) -> None:
        """Count entries deleted while pending that can never run, and ACK them (Redis 7 has
        dropped them from the pending list if they were claimed; older servers keep them)."""
        c = self.consumer
        entry_ids = list(entry_ids)
        if not entry_ids:
            return
        await c.redis.xack(c.stream, c.group, *entry_ids)
        c.stats.deleted_while_pending += len(entry_ids)
        self.gone.difference_update(entry_ids)
        c.log.warning(
            "%d entries were deleted from %s while pending; they cannot run again: %s",
            len(entry_ids),
            c.stream,
            ", ".join(e.decode() for e in entry_ids[:10]),
        )

    async def _renew_claim(
        self, deliveries: list[Delivery]
    ) -> tuple[set[bytes], set[bytes], set[bytes]]:
        """Reset the idle time of ``deliveries`` that are still ours; returns the ids
        (renewed, taken over by another consumer, deleted from the stream and left pending)."""
        if self._renew_script is None:
            claimed, missing = await self._claim(deliveries, justid=True)
            absent = await self._absent(d.entry_id for d in missing)
            return set(claimed), {d.entry_id for d in missing} - absent, absent
        c = self.consumer
        renewed: set[bytes] = set()
        taken: set[bytes] = set()
        deleted: set[bytes] = set()
        for start in range(0, len(deliveries), _RENEW_CHUNK):
            chunk = deliveries[start : start + _RENEW_CHUNK]
            async with self._lock:
                sent = time.monotonic()
                args: list[bytes | str | int] = [c.group, c.consumer]
                for d in chunk:
                    min_idle = max(0, int(self._since_reset(d, sent) * 1000) - self.margin_ms)
                    args += [d.entry_id, min_idle]
                results = await self._renew_script(keys=[c.stream], args=args)
                now = time.monotonic()
            for d, result in zip(chunk, results, strict=True):
                if result == 1:
                    renewed.add(d.entry_id)
                    d.touched = now
                    self._reset_at[d.entry_id] = now
                elif result == -1:
                    deleted.add(d.entry_id)
                else:
                    taken.add(d.entry_id)
        return renewed, taken, deleted

    async def renew(self) -> None:
        """Reset the idle time of every held entry older than a third of the timeout."""
        c = self.consumer
        held = c.held
        self.gone &= held.keys()
        if len(self._reset_at) > len(held):
            self._reset_at = {k: v for k, v in self._reset_at.items() if k in held}
        now = time.monotonic()
        stale = [
            d
            for d in held.values()
            if self._since_reset(d, now) >= self.period_s and d.entry_id not in self.gone
        ]
        if not stale:
            return
        renewed, taken, _ = await self._renew_claim(stale)
        c.stats.lease_renewals += len(renewed)
        for d in stale:
            if d.entry_id in renewed or c.held.get(d.entry_id) is not d:
                continue  # renewed, or settled (ACKed) while the claim was on its way
            if d.entry_id in taken:
                self._lose(d)
            else:
                # Its handler runs (or is about to) with the fields in hand: the outcome
                # settles it; if it fails, the retry claim counts it.
                self.gone.add(d.entry_id)

    async def extend(self, delivery: Delivery) -> bool:
        """Reset ``delivery``'s idle time now (a handler asking for more time). False if it is
        no longer this consumer's, or was deleted from the stream: a deleted entry is left
        pending, never claimed (on Redis 7 a bare XCLAIM would drop its PEL record)."""
        renewed, taken, deleted = await self._renew_claim([delivery])
        c = self.consumer
        c.stats.lease_renewals += len(renewed)
        self.gone |= deleted
        if taken and c.held.get(delivery.entry_id) is delivery:
            self._lose(delivery)
        return bool(renewed)

    async def confirm(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """The deliveries that are still this consumer's: call it just before starting them.

        A delivery no longer held (a renewal found it taken) is dropped. One whose lease may
        have lapsed (not renewed for two periods: the process was frozen, or the event loop
        blocked) is claimed again first, and dropped, counted as lost, if another consumer
        took it over meanwhile. Otherwise no round trip is made."""
        c = self.consumer
        deliveries = [d for d in deliveries if c.held.get(d.entry_id) is d]
        now = time.monotonic()
        doubtful = [d for d in deliveries if self._since_reset(d, now) >= 2 * self.period_s]
        if not doubtful:
            return deliveries
        renewed, taken, deleted = await self._renew_claim(doubtful)
        c.stats.lease_renewals += len(renewed)
        self.gone |= deleted
        for d in doubtful:
            if d.entry_id in taken and c.held.get(d.entry_id) is d:
                self._lose(d)
        return [d for d in deliveries if d.entry_id not in taken]

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._loop(), name=f"leases:{self.consumer.consumer}")
        try:
            yield
        finally:
            if not await cancel_and_wait(task, 2.0):
                self.consumer.log.error("the lease renewal task would not stop")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            try:
                await self.renew()
            except Exception as exc:
                self.consumer.log.warning("lease renewal failed: %s", exc)

    async def release_all(self) -> int:
        """Hand back every entry still pending for this consumer, so that another consumer's
        reclaim takes it at once (a waiting retry keeps what is left of its backoff), including
        entries a reclaimer claimed for it that it never started (its ``intake``); then remove
        the consumer from the group if it holds nothing. The check and the removal are one
        step (a script): an entry claimed for this consumer meanwhile is never destroyed with
        it. Entries deleted from the stream meanwhile cannot be handed back (claiming one drops
        it): they are counted as deleted while pending."""
        c = self.consumer
        released = 0
        c.intake.clear()  # pending under this consumer in Redis: released with the rest below
        try:
            start = "-"
            while pending := await c.redis.xpending_range(
                c.stream, c.group, min=start, max="+", count=_RELEASE_PAGE, consumername=c.consumer
            ):
                released += await self._release(pending)
                if len(pending) < _RELEASE_PAGE:
                    break
                start = after_last(pending)
            if released:
                c.stats.released += released
                c.log.info("released %d pending entries for prompt pickup", released)
            await remove_consumer_if_empty(c.redis, c.stream, c.group, c.consumer)
        except Exception as exc:
            c.log.warning("could not release pending entries: %s", exc)
        c.held.clear()
        c.intake.clear()
        self.gone.clear()
        self._reset_at.clear()
        return released

    async def _release(self, pending: list[dict[str, Any]]) -> int:
        c = self.consumer
        ids: list[bytes] = [item["message_id"] for item in pending]
        pipe = c.redis.pipeline(transaction=False)
        for item in pending:
            entry_id = item["message_id"]
            # Idle past the timeout: a reclaimer takes it at once (a scheduled retry stays in
            # the delay set, which keeps reclaimers off it until it is due). One that was read
            # but never started gets its delivery back (RETRYCOUNT): the reclaimer's claim
            # counts it again, so a graceful hand-back costs no attempt of its retry budget.
            held = c.held.get(entry_id)
            retrycount = None
            if held is not None and not held.started:
                retrycount = max(0, int(item["times_delivered"]) - 1)
            pipe.xclaim(
                c.stream,
                c.group,
                c.consumer,
                0,
                [entry_id],
                idle=self.visibility_ms,
                retrycount=retrycount,
                justid=True,
            )
        results = await pipe.execute(raise_on_error=False)
        refused = [
            i for i, r in zip(ids, results, strict=True) if isinstance(r, Exception) or not r
        ]
        await self._forget(await self._absent(refused))
        return len(ids) - len(refused)
