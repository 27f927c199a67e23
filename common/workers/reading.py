"""Reading: one XREADGROUP over every stream a consumer reads, in its one group.

A consumer reads one or several streams (an action stream; the topics of a subscriber) in one
consumer group. Each read asks for new entries (``>``) of all of them at once and blocks until
any has some; each :class:`Delivery` remembers its stream, so that its ACK, lease, retry
schedule and dead letter go to the right keys.

On a Redis Cluster the keys of one command must share a hash slot (else CROSSSLOT), and each
topic stream or partition has a hash tag of its own. So there the streams are grouped by slot,
and a read takes:

1. the next group in turn (round-robin, so that none starves), up to ``count``: while a backlog
   lasts, that one XREADGROUP fills the batch, as on one server;
2. if it fell short, the other groups at once, ``count``'s rest split between them: one
   pipeline per master, the masters in parallel (one round trip, where one group after another
   took one each; the client's Python, the limit on a small machine, pays about the same);
   the groups that filled their share are read once more for what is left (a hot partition
   beside idle ones is read in full);
3. if all were empty, it blocks on the first group for ``block_ms / groups``, so an entry
   written to any other waits at most about that long before the next read takes it.

No read is ever cancelled for a timeout (which could leave delivered entries unseen until
reclaimed), and if one group's read fails, what the others delivered is run all the same.
One slot group (an action stream, a single topic, or standalone Redis) is one XREADGROUP, as
before.

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
from redis.crc import key_slot
from redis.exceptions import ResponseError

from common.clients.cluster_client import WaitingRedisCluster
from common.clients.cluster_send import send_by_node
from common.clients.embedded import change_signal
from common.clients.redis_manager import is_cluster
from common.workers.outcome import Delivery, HeldKey
from common.workers.stats import WorkerStats

__all__ = ["StreamReading", "is_nogroup"]

_SWEEPS = 2  # rounds of the other groups in one read: all, then those that filled their share


def _entries(reply: list[Any]) -> int:
    return sum(len(entries) for _, entries in reply)


def _shares(groups: list[dict[Any, Any]], count: int) -> list[tuple[dict[Any, Any], int]]:
    """``count`` split over ``groups`` (the first ones get the remainder; none gets 0)."""
    base, extra = divmod(count, len(groups))
    shares = [(group, base + (i < extra)) for i, group in enumerate(groups)]
    return [(group, share) for group, share in shares if share > 0]


def is_nogroup(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


def is_unblocked(exc: BaseException) -> bool:
    """Redis's answer to a blocked read whose stream key went away meanwhile (``UNBLOCKED the
    stream key no longer exists``): on a cluster, the slot was migrated to another node."""
    return isinstance(exc, ResponseError) and str(exc).startswith("UNBLOCKED")


class StreamReading:
    """Mixin of :class:`~common.workers.engine.StreamConsumer`: group creation and reads."""

    redis: aioredis.Redis
    streams: dict[str, str]  # every stream read -> its dead-letter stream
    group: str
    consumer: str
    held: dict[HeldKey, Delivery]
    intake: list[Delivery]
    stats: WorkerStats
    log: logging.LoggerAdapter  # type: ignore[type-arg]
    _embedded: bool
    _reading: bool
    _stopping: asyncio.Event
    _slot_groups: list[dict[Any, Any]] | None = None  # streams per hash slot, on a cluster
    _next_group: int = 0

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
            elif len(groups := self._groups()) > 1:
                reply = await self._read_slot_groups(groups, count, block_ms)
            else:
                reply = await self.redis.xreadgroup(
                    self.group, self.consumer, self._new_entries(), count=count, block=block_ms
                )
        finally:
            self._reading = False
        return self._deliveries(reply) if reply else []

    def _deliveries(self, reply: list[Any]) -> list[Delivery]:
        """The deliveries of an XREADGROUP reply, held from now on."""
        now = time.monotonic()
        batch = []
        held = self.held
        for raw_stream, entries in reply:
            stream = raw_stream.decode() if isinstance(raw_stream, bytes) else raw_stream
            for entry_id, fields in entries:
                if fields is None:  # deleted between delivery and read; nothing to run
                    continue
                delivery = Delivery(entry_id, fields, 1, now, stream=stream)
                held[delivery.key] = delivery
                batch.append(delivery)
        self.stats.read += len(batch)
        return batch

    def _new_entries(self) -> dict[Any, Any]:
        return {stream: ">" for stream in self.streams}

    def _groups(self) -> list[dict[Any, Any]]:
        """The streams read, grouped by hash slot on a cluster (one group elsewhere)."""
        if self._slot_groups is None:
            by_slot: dict[int, dict[Any, Any]] = {}
            if is_cluster(self.redis):
                for stream in self.streams:
                    by_slot.setdefault(key_slot(stream.encode()), {})[stream] = ">"
            self._slot_groups = list(by_slot.values())
        return self._slot_groups

    async def _read_slot_groups(
        self, groups: list[dict[Any, Any]], count: int, block_ms: int
    ) -> list[Any]:
        """The next group in turn, then the others at once; then block (see the module)."""
        n = len(groups)
        start = self._next_group
        self._next_group = (start + 1) % n
        first: Any = await self.redis.xreadgroup(
            self.group, self.consumer, groups[start], count=count
        )
        reply: list[Any] = list(first or [])
        count -= _entries(reply)
        rest = [groups[(start + i) % n] for i in range(1, n)]
        for _ in range(_SWEEPS):
            if count <= 0 or not rest:
                break
            wanted = _shares(rest, count)
            rest = []
            for (group, share), got in zip(wanted, await self._sweep(wanted, reply), strict=True):
                reply += got
                took = _entries(got)
                count -= took
                if took >= share:  # maybe more there
                    rest.append(group)
        if reply:
            return reply
        block = max(1, block_ms // n)
        blocked: Any = await self.redis.xreadgroup(
            self.group, self.consumer, groups[start], count=count, block=block
        )
        return list(blocked or [])

    async def _sweep(
        self, wanted: list[tuple[dict[Any, Any], int]], reply: list[Any]
    ) -> list[list[Any]]:
        """One XREADGROUP without BLOCK per group, all at once: one pipeline per master, the
        masters in parallel. If one fails, what this read delivered (``reply``, the others'
        replies) is kept, held, to run next, and the first error raised: a delivered entry is
        never left unseen until a reclaim."""
        commands = [
            (
                "XREADGROUP",
                "GROUP",
                self.group,
                self.consumer,
                "COUNT",
                share,
                "STREAMS",
                *group,
                *group.values(),
            )
            for group, share in wanted
        ]
        keys = [next(iter(group)) for group, _ in wanted]
        if isinstance(self.redis, WaitingRedisCluster):
            results = await send_by_node(self.redis, commands, keys)
        else:  # a cluster client of the application's own
            results = await asyncio.gather(
                *(
                    self.redis.xreadgroup(self.group, self.consumer, group, count=share)
                    for group, share in wanted
                ),
                return_exceptions=True,
            )
        replies = [list(r or []) for r in results if not isinstance(r, BaseException)]
        if len(replies) < len(results):
            self.intake += self._deliveries(reply + [item for got in replies for item in got])
            raise next(r for r in results if isinstance(r, BaseException))
        return replies

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
