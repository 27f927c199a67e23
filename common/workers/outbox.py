"""Settled outcomes waiting to be written: replies, callbacks, XACKs and dead letters.

Everything settled since the last flush goes out in one pipelined round trip (writes first,
then one multi-id XACK), so that an ACK never precedes the reply it depends on. Replies to the
same list go out as one ``RPUSH key v1 .. vn`` (in the order they were settled) plus one
``EXPIRE``. Dead letters go in a MULTI/EXEC with their XACK (same hash tag, so legal on a
cluster too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from common.models.codec import ACTION_FIELD_BYTES, dumps
from common.workers.outcome import DeadLetter, Delivery, ListPush, Write

__all__ = ["Outbox", "dead_letter_fields"]

logger = logging.getLogger(__name__)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def dead_letter_fields(
    stream: str, delivery: Delivery, dead: DeadLetter, worker: str
) -> dict[str, bytes | str]:
    """The dead-letter record: ``{original, error, worker, retries, reason, ...}``."""
    raw = delivery.fields.get(ACTION_FIELD_BYTES)
    if raw is None:
        raw = dumps(
            {
                k.decode("utf-8", "backslashreplace"): v.decode("utf-8", "backslashreplace")
                for k, v in delivery.fields.items()
            }
        )
    return {
        "original": raw,
        "error": dead.error.model_dump_json(),
        "reason": dead.reason.value,
        "worker": worker,
        "retries": str(delivery.attempt),
        "stream": stream,
        "entry_id": delivery.entry_id,
        "first_seen": _iso_ms(delivery.first_seen_ms),
        "failed_at": datetime.now(UTC).isoformat(),
    }


def _apply_writes(pipe: Pipeline, writes: list[Write]) -> None:
    """Queue ``writes`` on ``pipe``, the replies grouped per list: one RPUSH of all the values
    for a key (in order) and one EXPIRE (the last TTL asked for, as separate EXPIREs would
    leave), where that key's first reply was. Other writes go as they are, in order."""
    if len(writes) == 1:
        writes[0].apply(pipe)
        return
    values: dict[str, list[bytes]] = {}
    ttls: dict[str, int] = {}
    ops: list[Write | str] = []  # a str: the grouped replies to that key
    for write in writes:
        if isinstance(write, ListPush):
            if write.key not in values:
                values[write.key] = []
                ops.append(write.key)
            values[write.key].append(write.value)
            ttls[write.key] = write.ttl_s
        else:
            ops.append(write)
    for op in ops:
        if isinstance(op, str):
            pipe.rpush(op, *values[op])
            pipe.expire(op, ttls[op])
        else:
            op.apply(pipe)


@dataclass(slots=True)
class Outbox:
    stream: str
    group: str
    dead_letter_stream: str
    dead_letter_maxlen: int
    worker: str
    writes: list[Write] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    dead: list[tuple[Delivery, DeadLetter]] = field(default_factory=list)
    # ACKed by a flush that then failed on its dead letters: reported by the next flush.
    acked: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.acks) + len(self.dead) + len(self.acked)

    def add_ack(self, entry_id: bytes, writes: tuple[Write, ...]) -> None:
        if writes:
            self.writes.extend(writes)
        self.acks.append(entry_id)

    def add_dead(self, delivery: Delivery, dead: DeadLetter) -> None:
        if dead.writes:
            self.writes.extend(dead.writes)
        self.dead.append((delivery, dead))

    def _take(self) -> tuple[list[Write], list[bytes], list[tuple[Delivery, DeadLetter]]]:
        taken = (self.writes, self.acks, self.dead)
        self.writes, self.acks, self.dead = [], [], []
        return taken

    def _restore(
        self, taken: tuple[list[Write], list[bytes], list[tuple[Delivery, DeadLetter]]]
    ) -> None:
        writes, acks, dead = taken
        self.writes[:0] = writes
        self.acks[:0] = acks
        self.dead[:0] = dead

    async def flush(self, redis: aioredis.Redis) -> list[bytes]:
        """Write everything; return the ids settled. On a connection error nothing is lost:
        the items go back into the outbox and the error propagates (the caller retries)."""
        if not len(self) and not self.writes:
            return []
        writes, acks, dead = self._take()
        try:
            if writes or acks:
                pipe = redis.pipeline(transaction=False)
                _apply_writes(pipe, writes)
                if acks:
                    pipe.xack(self.stream, self.group, *acks)
                results = await pipe.execute(raise_on_error=False)
                self._log_errors(results)
                self.acked += acks
                writes, acks = [], []  # written: a retry must not repeat them
            if dead:
                await self._flush_dead(redis, dead)
        except BaseException:
            self._restore((writes, acks, dead))
            raise
        settled, self.acked = self.acked, []
        return settled + [d.entry_id for d, _ in dead]

    async def _flush_dead(
        self, redis: aioredis.Redis, dead: list[tuple[Delivery, DeadLetter]]
    ) -> None:
        pipe = redis.pipeline(transaction=True)
        maxlen = self.dead_letter_maxlen or None
        for delivery, record in dead:
            fields = dead_letter_fields(self.stream, delivery, record, self.worker)
            pipe.xadd(self.dead_letter_stream, fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        pipe.xack(self.stream, self.group, *(d.entry_id for d, _ in dead))
        await pipe.execute()

    def _log_errors(self, results: list[object]) -> None:
        for result in results:
            if isinstance(result, ResponseError):
                logger.error("outbox command failed on %s: %s", self.stream, result)
