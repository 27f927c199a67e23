"""Bad input from the wire, against a real worker: foreign targets and undecodable times."""

from __future__ import annotations

import time

import orjson
import pytest
import redis.asyncio as aioredis

from common import CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


async def _dead_letter_reasons(redis: aioredis.Redis, dlq: str) -> list[bytes]:
    return [fields[b"reason"] for _, fields in await redis.xrange(dlq)]


@pytest.mark.parametrize("callback", [False, True], ids=["reply", "callback"])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", " "], ids=["lf", "crlf", "space"])
async def test_a_target_with_trailing_whitespace_is_refused_and_untouched(
    settings: CommonAppSettings, redis: aioredis.Redis, callback: bool, suffix: str
) -> None:
    qm = QueueManager(settings.queue_prefix, settings.environment)
    stream, dlq = qm.action_stream("calc"), qm.dead_letter_stream("calc")
    # A key that is ours but for the whitespace, pre-created with the type the worker would
    # write (a stream for a callback, a list for a reply) and no expiry.
    if callback:
        target = qm.action_stream("api") + suffix
        await redis.xadd(target, {"precious": "1"})
    else:
        target = qm.reply_key("api", "c1") + suffix
        await redis.rpush(target, b"precious")
    action = DomainAction(
        action_type="calc.add",
        data={"a": 1, "b": 2},
        callback_queue_name=target,
        callback_action_type="api.added" if callback else None,
    )
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        await redis.xadd(stream, {"action": action.model_dump_json()})
        await wait_for(lambda: _dead_letter_reasons(redis, dlq))
        assert pool.workers[0].handled == []  # refused before running the handler
        assert int((await redis.xpending(stream, qm.consumer_group("calc")))["pending"]) == 0
    assert await _dead_letter_reasons(redis, dlq) == [b"refused_target"]
    assert await redis.ttl(target) == -1
    if callback:
        assert await redis.xlen(target) == 1
    else:
        assert await redis.lrange(target, 0, -1) == [b"precious"]
    # Nothing was written under the name without the whitespace either.
    assert await redis.exists(target[: -len(suffix)]) == 0
    await redis.delete(target)


@pytest.mark.parametrize("field", ["timestamp", "deadline"], ids=["timestamp", "deadline"])
@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"], ids=["min", "max"]
)
async def test_a_time_outside_utc_range_is_malformed_at_once(
    settings: CommonAppSettings, redis: aioredis.Redis, field: str, when: str
) -> None:
    qm = QueueManager(settings.queue_prefix, settings.environment)
    stream, dlq = qm.action_stream("calc"), qm.dead_letter_stream("calc")
    doc = orjson.dumps({"action_type": "calc.add", "data": {"a": 1, "b": 2}, field: when})
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        started = time.monotonic()
        await redis.xadd(stream, {"action": doc})
        await wait_for(lambda: _dead_letter_reasons(redis, dlq))
        elapsed = time.monotonic() - started
        assert pool.workers[0].handled == []
        assert pool.workers[0].stats.failed == 0  # no delivery crashed and was retried
    [record] = [fields for _, fields in await redis.xrange(dlq)]
    assert record[b"reason"] == b"malformed"
    assert field.encode() in record[b"error"]
    assert record[b"original"] == doc
    assert elapsed < 2.0  # at once, not after the retries (0.05 s .. 0.2 s each, 5 of them)
