"""Settled outcomes on their way to Redis: an entry is ACKed only once its writes are confirmed.

A flush takes everything settled since the last one and writes it in at most two round trips:

1. one pipeline with the writes (replies grouped per list: one ``RPUSH key v1 .. vn`` in the
   order they were settled plus one ``EXPIRE``; callbacks) and the XACK of entries that need
   no write;
2. the XACK of the entries whose writes were all confirmed, and the dead letters (``XADD`` to
   the dead-letter stream and ``XACK``, in one MULTI/EXEC: same hash tag, legal on a cluster).

So an ACK never precedes the reply it depends on, and never goes without it. A write refused for
a reason that can pass (see :mod:`common.clients.redis_errors`: OOM, READONLY, LOADING, BUSY, a
lost connection) keeps its entry pending and in the outbox: the flush reports the error and the
engine tries again after a backoff, reading nothing new meanwhile. A write refused for good
(WRONGTYPE on a reply key, NOPERM) dead-letters its entry with reason ``write_refused``. A
confirmed write is never repeated by a later flush; only a connection lost mid-flush, whose
outcome is unknown, repeats it (at least once).

Dead letters are bounded by ``dead_letter_maxlen``; a trim that drops old dead letters is
counted (``dead_letters_trimmed``) and logged, never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from common.clients.redis_errors import error_code, is_transient
from common.clients.redis_manager import is_cluster
from common.clients.replication import Replication
from common.models.actions import ErrorDetail
from common.workers.delays import ScheduleRetry
from common.workers.outcome import DeadLetter, DeadLetterReason, Delivery, Write
from common.workers.settled import FlushResult, Settled, dead_letter_fields, queue_writes

__all__ = ["FlushResult", "Outbox", "Settled", "dead_letter_fields"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outbox:
    stream: str
    group: str
    dead_letter_stream: str
    dead_letter_maxlen: int
    worker: str
    more_streams: dict[str, str] = field(default_factory=dict)  # other stream -> its dead letters
    replication: Replication | None = None  # redis_wait_replicas > 0: WAIT after each write
    items: list[Settled] = field(default_factory=list)
    dead_letters_trimmed: int = 0
    # How many of ``items`` may be more than a plain XACK (writes, a retry, a dead letter); it
    # may count too many (never too few). At 0 a flush takes the fast path: one XACK.
    _special: int = 0

    def _stream(self, item: Settled) -> str:
        return item.delivery.stream or self.stream

    def _dead_letter_stream(self, stream: str) -> str:
        return self.more_streams.get(stream, self.dead_letter_stream)

    def _by_stream(self, items: list[Settled]) -> dict[str, list[Settled]]:
        grouped: dict[str, list[Settled]] = {}
        for item in items:
            grouped.setdefault(self._stream(item), []).append(item)
        return grouped

    def __len__(self) -> int:
        return len(self.items)

    def has_writes(self) -> bool:
        """Whether anything settled still has a write (a reply, a callback) to send."""
        return self._special > 0 and any(item.writes and not item.written for item in self.items)

    def add_ack(self, delivery: Delivery, writes: tuple[Write, ...] = ()) -> None:
        self.items.append(Settled(delivery, writes))
        if writes:
            self._special += 1

    def add_retry(self, delivery: Delivery, schedule: ScheduleRetry) -> None:
        """Schedule a retry: the entry stays pending, its due time goes to the delay set."""
        self.items.append(Settled(delivery, (schedule,), ack=False))
        self._special += 1

    def add_dead(self, delivery: Delivery, dead: DeadLetter) -> None:
        self.items.append(Settled(delivery, dead.writes, dead))
        self._special += 1

    async def flush(self, redis: aioredis.Redis, *, writes_only: bool = False) -> FlushResult:
        """Write what is settled; return what is done. Never raises for a Redis error: what
        could not be written stays in the outbox and the error is returned, for the caller to
        back off and flush again. (Only cancellation propagates, the items put back first.)

        ``writes_only``: just round trip 1 (the writes, and the XACK of entries that need
        none); entries whose writes it confirmed stay in the outbox for their XACK, which the
        next flush sends (without writing again)."""
        result = FlushResult()
        items, self.items = self.items, []
        special, self._special = self._special, 0
        if not items:
            return result
        if not special and self.replication is None:  # (WAIT: the ACK path below)
            return await self._ack_plain(redis, items, result)
        try:
            acks = await self._write(redis, items, result)
            if not writes_only:
                await self._ack(redis, acks, result)
                await self._dead_letter(redis, [i for i in items if i.dead is not None], result)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled: put back what is not done
                self._keep_undone(items, result)
                raise
            if result.error is None:
                result.error = exc
        self._keep_undone(items, result)
        return result

    def _keep_undone(self, items: list[Settled], result: FlushResult) -> None:
        done = {id(item) for item in result.done}
        undone = [item for item in items if id(item) not in done]
        if undone:
            self.items[:0] = undone
            self._special += sum(1 for i in undone if i.writes or i.dead is not None or not i.ack)

    async def _ack_plain(
        self, redis: aioredis.Redis, items: list[Settled], result: FlushResult
    ) -> FlushResult:
        """The common case, on its own path: plain XACKs, one command per stream."""
        by_stream: dict[str, list[Settled]] = {}
        if self.more_streams:
            default = self.stream
            for item in items:
                stream = item.delivery.stream or default
                ours = by_stream.get(stream)
                if ours is None:
                    by_stream[stream] = [item]
                else:
                    ours.append(item)
        else:
            by_stream[self.stream] = items
        try:
            if len(by_stream) == 1:
                [(stream, ours)] = by_stream.items()
                await redis.xack(stream, self.group, *[i.delivery.entry_id for i in ours])
                result.done = items
                return result
            pipe = redis.pipeline(transaction=False)
            for stream, ours in by_stream.items():
                pipe.xack(stream, self.group, *[i.delivery.entry_id for i in ours])
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            self.items[:0] = items
            if not isinstance(exc, Exception):  # cancelled: put back, then propagate
                raise
            result.error = exc
            return result
        undone: list[Settled] = []
        for ours, reply in zip(by_stream.values(), replies, strict=True):
            if isinstance(reply, Exception):
                result.error = reply
                undone += ours
            else:
                result.done += ours
        self.items[:0] = undone
        return result

    async def _write(
        self, redis: aioredis.Redis, items: list[Settled], result: FlushResult
    ) -> list[Settled]:
        """Round trip 1: the writes, and the XACK of entries that need none. Returns the items
        whose writes this flush confirmed and which still need their ACK."""
        to_write = [i for i in items if i.writes and not i.written]
        plain = [i for i in items if i.dead is None and i.ack and (i.written or not i.writes)]
        if not to_write:
            return plain
        pipe = redis.pipeline(transaction=False)
        served = queue_writes(pipe, to_write)
        acked = self._by_stream(plain)
        for stream, ours in acked.items():
            pipe.xack(stream, self.group, *(i.entry_id for i in ours))
        if self.replication is not None:
            keys = [w.key for i in to_write for w in i.writes] + list(acked)
            replies = await self._execute_confirmed(redis, pipe, keys, result)
            if replies is None:
                return []  # not confirmed: all of it is written again by the next flush
        else:
            replies = await pipe.execute(raise_on_error=False)
        failed: dict[int, BaseException] = {}
        for users, reply in zip(served, replies, strict=False):
            if isinstance(reply, Exception):
                for item in users:
                    failed.setdefault(id(item), reply)
        for ours, ack_reply in zip(acked.values(), replies[len(served) :], strict=True):
            if isinstance(ack_reply, Exception):
                result.error = ack_reply
            else:
                result.done += ours
        confirmed = []
        for item in to_write:
            error = failed.get(id(item))
            if error is None:
                item.written = True
                if item.dead is None and item.ack:
                    confirmed.append(item)
                elif item.dead is None:  # a scheduled retry: nothing more to write
                    result.done.append(item)
            elif is_transient(error):
                result.error = error
            elif item.dead is None:
                self._refuse(item, error, result)
            else:  # a dead letter whose error reply cannot be written: dead-letter it anyway
                logger.warning(
                    "%s: the error reply for entry %s was refused (%s); dead-lettering it anyway",
                    self.stream,
                    item.entry_id.decode(),
                    error,
                )
                item.written = True
        return confirmed

    def _refuse(self, item: Settled, error: BaseException, result: FlushResult) -> None:
        """A write refused for good: the entry goes to the dead letters with the reason."""
        logger.error(
            "%s: a write for entry %s was refused (%s); dead-lettering it",
            self.stream,
            item.entry_id.decode(),
            error,
        )
        item.written = True
        item.ack = True
        item.dead = DeadLetter(
            DeadLetterReason.WRITE_REFUSED,
            ErrorDetail(
                error_type=f"Redis{error_code(error).title()}Error",
                message=f"Redis refused a reply or callback write: {error}",
            ),
        )
        result.refused.append(item)

    async def _ack(self, redis: aioredis.Redis, items: list[Settled], result: FlushResult) -> None:
        """Round trip 2: the XACK of entries whose writes this flush confirmed."""
        if not items:
            return
        grouped = self._by_stream(items)
        replies: list[object]
        try:
            if self.replication is not None:
                pipe = redis.pipeline(transaction=False)
                for stream, ours in grouped.items():
                    pipe.xack(stream, self.group, *(i.entry_id for i in ours))
                confirmed = await self._execute_confirmed(redis, pipe, list(grouped), result)
                if confirmed is None:
                    return
                replies = confirmed
            elif len(grouped) == 1:
                [(stream, ours)] = grouped.items()
                replies = [await redis.xack(stream, self.group, *(i.entry_id for i in ours))]
            else:
                pipe = redis.pipeline(transaction=False)
                for stream, ours in grouped.items():
                    pipe.xack(stream, self.group, *(i.entry_id for i in ours))
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            result.error = exc  # the writes stay confirmed: the next flush only ACKs
            return
        for ours, reply in zip(grouped.values(), replies, strict=True):
            if isinstance(reply, Exception):
                result.error = reply
            else:
                result.done += ours

    async def _dead_letter(
        self, redis: aioredis.Redis, items: list[Settled], result: FlushResult
    ) -> None:
        items = [i for i in items if i.written or not i.writes]
        for stream, ours in self._by_stream(items).items():
            await self._dead_letter_stream_batch(redis, stream, ours, result)

    async def _dead_letter_stream_batch(
        self, redis: aioredis.Redis, stream: str, items: list[Settled], result: FlushResult
    ) -> None:
        """The dead letters of one stream and their XACK, in one MULTI/EXEC (same hash tag)."""
        dead_letters = self._dead_letter_stream(stream)
        if self.replication is not None:
            await self._dead_letter_confirmed(redis, stream, items, result, self.replication)
            return
        pipe = redis.pipeline(transaction=True)
        self._queue_dead_letters(pipe, stream, dead_letters, items)
        try:
            replies = await pipe.execute()
        except Exception as exc:
            result.error = exc
            return
        result.done += items
        self._count_trimmed(stream, dead_letters, replies[-1])

    def _count_trimmed(self, stream: str, dead_letters: str, trimmed: object) -> None:
        if self.dead_letter_maxlen and trimmed:
            self.dead_letters_trimmed += int(trimmed)  # type: ignore[call-overload]
            logger.warning(
                "%s: dead-letter stream %s is over dead_letter_maxlen=%d: its %s oldest dead "
                "letters were trimmed",
                stream,
                dead_letters,
                self.dead_letter_maxlen,
                trimmed,
            )

    async def _execute_confirmed(
        self, redis: aioredis.Redis, pipe: Pipeline, keys: list[str], result: FlushResult
    ) -> list[object] | None:
        """Execute ``pipe`` (writes to ``keys``) and the WAIT(s) after it: the commands'
        replies, or None if the replicas did not confirm them all (the reason in
        ``result.error``; the writes are then repeated by the next flush: at least once)."""
        assert self.replication is not None
        count = len(pipe)
        waits = self.replication.queue_waits(pipe, redis, dict.fromkeys(keys))
        replies: list[object] = await pipe.execute(raise_on_error=False)
        missing = self.replication.unconfirmed(redis, waits, replies[count:])
        if missing:
            result.error = next(iter(missing.values()))
            return None
        return replies[:count]

    def _queue_dead_letters(
        self, pipe: Pipeline, stream: str, dead_letters: str, items: list[Settled]
    ) -> None:
        """Queue the dead letters of ``items`` (of ``stream``), their XACK and the trim."""
        for item in items:
            assert item.dead is not None
            fields = dead_letter_fields(stream, item.delivery, item.dead, self.worker)
            pipe.xadd(dead_letters, fields)  # type: ignore[arg-type]
        pipe.xack(stream, self.group, *(i.entry_id for i in items))
        if self.dead_letter_maxlen:
            pipe.xtrim(dead_letters, maxlen=self.dead_letter_maxlen, approximate=True)

    async def _dead_letter_confirmed(
        self,
        redis: aioredis.Redis,
        stream: str,
        items: list[Settled],
        result: FlushResult,
        replication: Replication,
    ) -> None:
        """The dead letters of one stream and their XACK in one MULTI/EXEC, then WAIT on the
        same connection: MULTI and EXEC go as commands of a plain pipeline, addressed to the
        stream's node on a cluster (a WAIT must follow the writes on their connection)."""
        dead_letters = self._dead_letter_stream(stream)
        node: dict[str, object] = {}
        if is_cluster(redis):
            node["target_nodes"] = redis.get_node_from_key(stream)  # type: ignore[attr-defined]
        pipe = redis.pipeline(transaction=False)
        pipe.execute_command("MULTI", **node)
        self._queue_dead_letters(pipe, stream, dead_letters, items)
        pipe.execute_command("EXEC", **node)
        try:
            replies = await self._execute_confirmed(redis, pipe, [stream], result)
        except Exception as exc:
            result.error = exc
            return
        if replies is None:
            return
        executed = replies[-1]
        failed = [r for r in replies if isinstance(r, Exception)]
        if isinstance(executed, list):
            failed += [r for r in executed if isinstance(r, Exception)]
        if failed or not isinstance(executed, list):
            error = failed[0] if failed else None
            result.error = (
                error if isinstance(error, Exception) else RuntimeError(f"EXEC: {executed!r}")
            )
            return
        result.done += items
        if self.dead_letter_maxlen:
            self._count_trimmed(stream, dead_letters, executed[-1])
