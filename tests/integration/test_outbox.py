"""Outbox.flush: replies grouped per list (one RPUSH + one EXPIRE per key), in order; an entry
is ACKed only once its writes are confirmed; refusals keep it pending (transient) or
dead-letter it (permanent)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common import BaseRedisClient, CommonAppSettings, DomainAction, ErrorDetail, WorkerPool
from common.workers.outbox import Outbox
from common.workers.outcome import DeadLetter, DeadLetterReason, Delivery, ListPush, StreamAdd
from tests.integration.test_roundtrip import CalcWorker


class RecordingRedis:
    """``redis`` whose pipelines record the commands they send (names and arguments)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.sent: list[list[tuple[Any, ...]]] = []

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._redis.pipeline(*args, **kwargs)
        execute = pipe.execute

        async def recorded(*a: Any, **kw: Any) -> Any:
            self.sent.append([tuple(cmd[0]) for cmd in pipe.command_stack])
            return await execute(*a, **kw)

        pipe.execute = recorded  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)


async def _outbox_with_entries(
    redis: aioredis.Redis, prefix: str, n: int
) -> tuple[Outbox, list[bytes]]:
    stream, group = f"{prefix}:in", "g"
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    for i in range(n):
        await redis.xadd(stream, {"i": str(i)})
    read = await redis.xreadgroup(group, "c", {stream: ">"}, count=n)
    ids = [entry_id for entry_id, _ in read[0][1]]
    return Outbox(stream, group, f"{prefix}:dlq", 1000, "c"), ids


async def test_replies_to_one_key_go_in_one_rpush_in_order_with_a_ttl(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 9)
    a, b, callback = f"{prefix}:reply:a", f"{prefix}:reply:b", f"{prefix}:cb"
    for i, entry_id in enumerate(ids):
        key = a if i % 3 else b
        writes: tuple[ListPush | StreamAdd, ...] = (ListPush(key, f"r{i}".encode(), 60),)
        if i == 4:
            writes += (StreamAdd(callback, {"action": b"cb4"}),)
        outbox.add_ack(Delivery(entry_id, {}), writes)

    recording = RecordingRedis(redis)
    result = await outbox.flush(recording)  # type: ignore[arg-type]

    assert result.error is None
    assert sorted(item.entry_id for item in result.done) == sorted(ids)
    assert await redis.lrange(a, 0, -1) == [f"r{i}".encode() for i in range(9) if i % 3]
    assert await redis.lrange(b, 0, -1) == [b"r0", b"r3", b"r6"]
    assert 0 < await redis.ttl(a) <= 60 and 0 < await redis.ttl(b) <= 60
    assert [e[1][b"action"] for e in await redis.xrange(callback)] == [b"cb4"]
    assert await redis.xpending(outbox.stream, outbox.group) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }

    (commands,) = recording.sent  # the writes; the XACK follows their confirmation
    names = [c[0] for c in commands]
    assert names.count("RPUSH") == 2 and names.count("EXPIRE") == 2
    assert names.count("XADD") == 1
    assert "XACK" not in names
    rpush_b = next(c for c in commands if c[0] == "RPUSH" and c[1] == b)
    assert rpush_b[2:] == (b"r0", b"r3", b"r6")


async def test_last_ttl_wins_per_key(settings: CommonAppSettings, redis: aioredis.Redis) -> None:
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 2)
    key = f"{prefix}:reply:x"
    outbox.add_ack(Delivery(ids[0], {}), (ListPush(key, b"1", 5),))
    outbox.add_ack(Delivery(ids[1], {}), (ListPush(key, b"2", 500),))
    await outbox.flush(redis)
    assert await redis.lrange(key, 0, -1) == [b"1", b"2"]
    assert 5 < await redis.ttl(key) <= 500


async def test_a_reply_refused_for_good_dead_letters_its_entry_and_spares_the_others(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """WRONGTYPE on a reply key will never pass: those entries are dead-lettered with the
    reason (and ACKed in the same transaction); the entry whose reply went out is ACKed."""
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 3)
    bad, good = f"{prefix}:reply:bad", f"{prefix}:reply:good"
    await redis.set(bad, "a string")
    outbox.add_ack(Delivery(ids[0], {b"action": b"{}"}), (ListPush(bad, b"x", 60),))
    outbox.add_ack(Delivery(ids[1], {b"action": b"{}"}), (ListPush(good, b"y", 60),))
    outbox.add_ack(Delivery(ids[2], {b"action": b"{}"}), (ListPush(bad, b"z", 60),))
    result = await outbox.flush(redis)
    assert result.error is None and len(outbox) == 0
    assert sorted(i.entry_id for i in result.done) == sorted(ids)
    assert [i.entry_id for i in result.refused] == [ids[0], ids[2]]
    assert await redis.lrange(good, 0, -1) == [b"y"]
    assert await redis.get(bad) == b"a string"
    assert (await redis.xpending(outbox.stream, outbox.group))["pending"] == 0
    dead = await redis.xrange(outbox.dead_letter_stream)
    assert [d[1][b"entry_id"] for d in dead] == [ids[0], ids[2]]
    assert {d[1][b"reason"] for d in dead} == {b"write_refused"}
    assert b"WRONGTYPE" in dead[0][1][b"error"]


class DeadLettersFailOnce:
    """``redis`` whose first transaction (the dead letters' MULTI/EXEC) loses the connection."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.failed = False

    def pipeline(self, transaction: bool = True) -> Any:
        if transaction and not self.failed:
            self.failed = True
            raise RedisConnectionError("lost the connection")
        return self._redis.pipeline(transaction=transaction)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)


async def test_a_flush_that_fails_on_its_dead_letters_keeps_only_them(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """The XACK went out, then the dead-letter transaction failed: the entry it ACKed is done;
    the dead letter stays in the outbox for the next flush, which writes only it."""
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 2)
    outbox.add_ack(Delivery(ids[0], {}))
    dead = DeadLetter(DeadLetterReason.NON_RETRYABLE, ErrorDetail(error_type="No", message="no"))
    outbox.add_dead(Delivery(ids[1], {b"i": b"1"}), dead)
    first = await outbox.flush(DeadLettersFailOnce(redis))  # type: ignore[arg-type]
    assert isinstance(first.error, RedisConnectionError)
    assert [i.entry_id for i in first.done] == [ids[0]]
    assert (await redis.xpending(outbox.stream, outbox.group))["pending"] == 1
    assert len(outbox) == 1
    second = await outbox.flush(redis)
    assert second.error is None and [i.entry_id for i in second.done] == [ids[1]]
    assert (await redis.xpending(outbox.stream, outbox.group))["pending"] == 0
    assert await redis.xlen(outbox.dead_letter_stream) == 1
    assert len(outbox) == 0 and not (await outbox.flush(redis)).done


async def test_a_full_dead_letter_stream_is_trimmed_and_counted(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 300)
    outbox.dead_letter_maxlen = 10
    dead = DeadLetter(DeadLetterReason.NON_RETRYABLE, ErrorDetail(error_type="No", message="no"))
    for entry_id in ids:
        outbox.add_dead(Delivery(entry_id, {b"i": b"1"}), dead)
    result = await outbox.flush(redis)
    assert result.error is None and len(result.done) == 300
    remaining = await redis.xlen(outbox.dead_letter_stream)
    assert remaining < 300
    assert outbox.dead_letters_trimmed == 300 - remaining


async def test_many_pseudo_sync_replies_to_one_client(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """One client, many calls in flight: the worker's replies share one reply list."""
    async with WorkerPool(CalcWorker, settings, redis, num_workers=2):
        client = BaseRedisClient("api", redis, settings)
        calls = [
            client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": i, "b": 2}), timeout=10
            )
            for i in range(400)
        ]
        responses = await asyncio.gather(*calls)
        await client.close()
    assert [r.data["sum"] for r in responses] == [i + 2 for i in range(400)]
    assert client.late_replies == 0


async def test_plain_acks_of_two_streams_one_refused_keep_only_that_streams(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """The plain-ACK path with several streams (partitions, topics): one XACK per stream; a
    stream whose XACK Redis refuses keeps its entries in the outbox (pending, with the error),
    the other stream's are done."""
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 2)
    other = f"{prefix}:other"
    outbox.more_streams[other] = f"{prefix}:other-dlq"
    await redis.set(other, "not a stream")  # its XACK: WRONGTYPE
    outbox.add_ack(Delivery(ids[0], {}, stream=outbox.stream))
    outbox.add_ack(Delivery(ids[1], {}, stream=other))
    result = await outbox.flush(redis)
    assert [item.delivery.stream for item in result.done] == [outbox.stream]
    assert result.error is not None and "WRONGTYPE" in str(result.error)
    assert [item.delivery.stream for item in outbox.items] == [other]
    pending = await redis.xpending(outbox.stream, outbox.group)
    assert pending["pending"] == 1  # ids[0] ACKed; ids[1] (its XACK went to the other) not
