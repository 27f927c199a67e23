"""Outbox.flush: replies grouped per list (one RPUSH + one EXPIRE per key), in order, before
the XACK; other writes unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
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
        outbox.add_ack(entry_id, writes)

    recording = RecordingRedis(redis)
    settled = await outbox.flush(recording)  # type: ignore[arg-type]

    assert settled == ids
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

    (commands,) = recording.sent
    names = [c[0] for c in commands]
    assert names.count("RPUSH") == 2 and names.count("EXPIRE") == 2
    assert names.count("XADD") == 1
    assert names[-1] == "XACK"  # every write before the ack
    rpush_b = next(c for c in commands if c[0] == "RPUSH" and c[1] == b)
    assert rpush_b[2:] == (b"r0", b"r3", b"r6")


async def test_last_ttl_wins_per_key(settings: CommonAppSettings, redis: aioredis.Redis) -> None:
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 2)
    key = f"{prefix}:reply:x"
    outbox.add_ack(ids[0], (ListPush(key, b"1", 5),))
    outbox.add_ack(ids[1], (ListPush(key, b"2", 500),))
    await outbox.flush(redis)
    assert await redis.lrange(key, 0, -1) == [b"1", b"2"]
    assert 5 < await redis.ttl(key) <= 500


async def test_a_failed_rpush_does_not_stop_the_ack(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 3)
    bad, good = f"{prefix}:reply:bad", f"{prefix}:reply:good"
    await redis.set(bad, "a string")
    outbox.add_ack(ids[0], (ListPush(bad, b"x", 60),))
    outbox.add_ack(ids[1], (ListPush(good, b"y", 60),))
    outbox.add_ack(ids[2], (ListPush(bad, b"z", 60),))
    assert await outbox.flush(redis) == ids
    assert await redis.lrange(good, 0, -1) == [b"y"]
    assert (await redis.xpending(outbox.stream, outbox.group))["pending"] == 0


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


async def test_a_flush_that_fails_on_its_dead_letters_still_reports_its_acks(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Writes and XACK went out, then the dead-letter transaction failed: the retry writes
    only the dead letter, and reports the ACKed entry too (or the worker would go on holding
    it, and renewing a lease on an entry that is no longer pending)."""
    prefix = settings.queue_prefix
    outbox, ids = await _outbox_with_entries(redis, prefix, 2)
    outbox.add_ack(ids[0], ())
    dead = DeadLetter(DeadLetterReason.NON_RETRYABLE, ErrorDetail(error_type="No", message="no"))
    outbox.add_dead(Delivery(ids[1], {b"i": b"1"}), dead)
    with pytest.raises(RedisConnectionError):
        await outbox.flush(DeadLettersFailOnce(redis))  # type: ignore[arg-type]
    assert (await redis.xpending(outbox.stream, outbox.group))["pending"] == 1
    assert len(outbox) == 2
    assert await outbox.flush(redis) == ids
    assert (await redis.xpending(outbox.stream, outbox.group))["pending"] == 0
    assert await redis.xlen(outbox.dead_letter_stream) == 1
    assert len(outbox) == 0 and await outbox.flush(redis) == []


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
