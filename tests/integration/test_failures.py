"""Every failure path of the core: bad input, bad handlers, bad targets, expiry, timeouts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from common import (
    ActionTimeoutError,
    BaseRedisClient,
    CommonAppSettings,
    DomainAction,
    PartialSendError,
    PayloadTooLargeError,
    WorkerPool,
)
from common.clients.queue_manager import QueueManager
from common.errors import WorkerStateError
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _keys(settings: CommonAppSettings) -> tuple[str, str, str]:
    qm = QueueManager(settings.queue_prefix, settings.environment)
    return qm.action_stream("calc"), qm.dead_letter_stream("calc"), qm.consumer_group("calc")


async def _dead_letters(redis: aioredis.Redis, dlq: str) -> list[dict[str, bytes]]:
    return [fields for _, fields in await redis.xrange(dlq)]


async def _pending_count(redis: aioredis.Redis, stream: str, group: str) -> int:
    return int((await redis.xpending(stream, group))["pending"])


async def test_malformed_entries_are_dead_lettered_and_acked(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    stream, dlq, group = _keys(settings)
    junk: list[dict[bytes | str, bytes | str]] = [
        {"action": b"{not json"},
        {"action": b"{}"},  # missing fields
        {"action": orjson.dumps({"action_type": 42, "data": "x"})},  # wrong types
        {"action": b"\x00\xff\xfe\x80binary"},
        {"something": "else"},
        {"action": orjson.dumps({"action_type": "calc.add", "data": {"pad": "x" * 5000}})},
    ]
    small = settings.model_copy(update={"max_payload_bytes": 4096})
    client = BaseRedisClient("api", redis, small)
    async with WorkerPool(CalcWorker, small, redis, num_workers=1) as pool:
        for fields in junk:
            await redis.xadd(stream, fields)  # type: ignore[arg-type]
        await wait_for(lambda: _n(redis, dlq, len(junk)))
        # The worker is still serving.
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=5
        )
        assert reply.data == {"sum": 2}
        await wait_for(lambda: _no_pending(redis, stream, group))  # the ACK follows the reply
        assert pool.workers[0].is_running
    await client.close()
    records = await _dead_letters(redis, dlq)
    reasons = [r[b"reason"].decode() for r in records]
    assert reasons.count("malformed") == 5 and reasons.count("payload_too_large") == 1
    for record in records:
        assert {b"original", b"error", b"worker", b"retries", b"first_seen", b"failed_at"} <= set(
            record
        )
    assert records[3][b"original"] == b"\x00\xff\xfe\x80binary"  # kept byte for byte


async def _no_pending(redis: aioredis.Redis, stream: str, group: str) -> bool:
    return await _pending_count(redis, stream, group) == 0


async def _n(redis: aioredis.Redis, key: str, n: int) -> bool:
    return await redis.xlen(key) >= n


async def test_invalid_action_with_reply_key_gets_an_error_reply(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    stream, _dlq, _ = _keys(settings)
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1):
        action = DomainAction(action_type="calc.add")
        future = client._replies.expect(action.action_id)
        bad = {
            **orjson.loads(action.model_dump_json()),
            "action_type": "NOT VALID",
            "callback_queue_name": client.reply_key,
        }
        await redis.xadd(stream, {"action": orjson.dumps(bad)})
        reply = await asyncio.wait_for(future, 5)
    await client.close()
    assert not reply.success and reply.status_code == 400
    assert reply.error is not None and "action_type" in reply.error.message


async def test_unknown_action_type_answers_with_an_error(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    _, dlq, _ = _keys(settings)
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1):
        started = time.monotonic()
        reply = await client.send_action_pseudo_sync(DomainAction(action_type="calc.nope"), 5)
        assert time.monotonic() - started < 2  # an answer, not a timeout
    await client.close()
    assert not reply.success and reply.status_code == 404
    assert reply.error is not None and reply.error.error_type == "UnknownActionError"
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"unknown_action"


@pytest.mark.parametrize(
    "target",
    [
        "victim:key",  # outside the scheme
        "{prefix}:{env}:{{calc}}:dlq",  # a dead-letter stream is no target
        "other:{env}:{{api}}:reply:abc",  # another prefix
        "{prefix}:prod:{{api}}:reply:abc",  # another environment
    ],
)
async def test_reply_target_outside_the_scheme_is_refused(
    settings: CommonAppSettings, redis: aioredis.Redis, target: str
) -> None:
    stream, dlq, group = _keys(settings)
    target = target.format(prefix=settings.queue_prefix, env=settings.environment)
    victim_is_dlq = target == dlq
    if not victim_is_dlq:
        await redis.set(target, b"precious")
    action = DomainAction(action_type="calc.add", data={"a": 1, "b": 2}, callback_queue_name=target)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        await redis.xadd(stream, {"action": action.model_dump_json()})
        await wait_for(lambda: _n(redis, dlq, 1))
        assert pool.workers[0].handled == []  # refused before running the handler
        assert await _pending_count(redis, stream, group) == 0
    if not victim_is_dlq:
        assert await redis.get(target) == b"precious"
        assert await redis.type(target) == b"string"
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"refused_target"
    await redis.delete(target)


async def test_handler_failure_leaves_the_entry_pending(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    stream, dlq, group = _keys(settings)
    slow_retry = settings.model_copy(update={"retry_initial_delay_s": 30, "retry_max_delay_s": 30})
    client = BaseRedisClient("api", redis, slow_retry)
    async with WorkerPool(CalcWorker, slow_retry, redis, num_workers=1) as pool:
        await client.send_action_async(DomainAction(action_type="calc.fail"))
        await wait_for(lambda: pool.workers[0].stats.failed == 1)
        assert await _pending_count(redis, stream, group) == 1
        assert await redis.xlen(dlq) == 0


async def test_failures_are_retried_then_succeed(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1):
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.flaky", data={"succeed_on": 3}), timeout=10
        )
    await client.close()
    assert reply.success and reply.data == {"attempts": 3}


async def test_exhausted_retries_dead_letter_and_answer_the_caller(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    stream, dlq, group = _keys(settings)
    s = settings.model_copy(update={"max_retries": 3})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        action = DomainAction(action_type="calc.fail")
        reply = await client.send_action_pseudo_sync(action, timeout=10)
        assert pool.workers[0].attempts[str(action.action_id)] == 3
        # The error reply is written first, then the dead letter and its ACK.
        await wait_for(lambda: _no_pending(redis, stream, group))
    await client.close()
    assert not reply.success and reply.status_code == 500
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"max_retries" and record[b"retries"] == b"3"
    assert orjson.loads(record[b"error"])["message"] == "always fails"


async def test_an_entry_whose_consumers_keep_dying_is_dead_lettered_unrun(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Poison that kills its consumer: each crash leaves a delivery counted by Redis. Once the
    count passes max_retries, the reclaiming worker dead-letters it without running it."""
    stream, dlq, group = _keys(settings)
    s = settings.model_copy(update={"max_retries": 2, "visibility_timeout_s": 0.5})
    client = BaseRedisClient("api", redis, s)
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    entry_id = await client.send_action_async(
        DomainAction(action_type="calc.add", data={"a": 1, "b": 1})
    )
    await redis.xreadgroup(group, "ghost", {stream: ">"}, count=1)  # delivery 1: it died
    await redis.xclaim(stream, group, "ghost", 0, [entry_id])  # delivery 2: died again
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        await wait_for(lambda: _n(redis, dlq, 1))
        await wait_for(lambda: _no_pending(redis, stream, group))
        assert pool.workers[0].handled == []
    await client.close()
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"max_retries" and record[b"retries"] == b"3"
    assert orjson.loads(record[b"error"])["error_type"] == "DeliveryLimitExceeded"


async def test_poison_dead_lettered_unrun_still_answers_its_pseudo_sync_caller(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    stream, _, group = _keys(settings)
    s = settings.model_copy(update={"max_retries": 2, "visibility_timeout_s": 0.5})
    client = BaseRedisClient("api", redis, s)
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    call = asyncio.create_task(
        client.send_action_pseudo_sync(DomainAction(action_type="calc.add", data={}), 20)
    )
    await wait_for(lambda: _n(redis, stream, 1))
    [[_, [(entry_id, _)]]] = await redis.xreadgroup(group, "ghost", {stream: ">"}, count=1)
    await redis.xclaim(stream, group, "ghost", 0, [entry_id])  # it died twice
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        reply = await call
        assert pool.workers[0].handled == []
    await client.close()
    assert not reply.success and reply.status_code == 500 and reply.error is not None
    assert reply.error.error_type == "DeliveryLimitExceeded"


async def test_an_os_error_in_initialize_components_is_not_taken_for_redis_being_down(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    class BrokenSetup(CalcWorker):
        async def _initialize_components(self) -> None:
            raise FileNotFoundError("/etc/service/config.yaml")

    worker = BrokenSetup(settings, redis)
    with pytest.raises(WorkerStateError, match=r"config\.yaml"):
        await asyncio.wait_for(worker.run(), 5)


async def test_non_retryable_error_dead_letters_at_once(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    _, dlq, _ = _keys(settings)
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        action = DomainAction(action_type="calc.reject")
        reply = await client.send_action_pseudo_sync(action, timeout=5)
        assert pool.workers[0].attempts[str(action.action_id)] == 1
    await client.close()
    assert reply.status_code == 422 and reply.error is not None
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"non_retryable"


async def test_oversized_callback_is_dead_lettered_once_and_the_sender_told(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """The handler ran; its result does not fit in a callback. Running it again would give the
    same: dead-lettered after one run, and the sender gets a (small) error callback."""
    stream, dlq, group = _keys(settings)
    s = settings.model_copy(update={"max_payload_bytes": 4096})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        action = DomainAction(action_type="calc.big", data={"size": 10_000})
        await client.send_action_async_with_callback(action, "api.big_done")
        await wait_for(lambda: _n(redis, dlq, 1))
        await wait_for(lambda: _no_pending(redis, stream, group))
        assert pool.workers[0].attempts[str(action.action_id)] == 1
        assert pool.workers[0].is_running
    await client.close()
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"payload_too_large"
    [(_, fields)] = await redis.xrange(client.own_stream)
    callback = orjson.loads(fields[b"action"])
    assert callback["action_type"] == "api.big_done"
    assert callback["metadata"]["success"] is False
    assert callback["metadata"]["in_reply_to"] == str(action.action_id)


async def test_error_too_large_for_its_callback_still_dead_letters(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """A handler error whose message cannot fit in the error callback: the action is still
    dead-lettered (the sender cannot be told), and the worker goes on serving."""
    stream, dlq, group = _keys(settings)
    s = settings.model_copy(update={"max_payload_bytes": 4096})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        action = DomainAction(action_type="calc.reject", data={"message": "e", "repeat": 10_000})
        await client.send_action_async_with_callback(action, "api.reject_done")
        await wait_for(lambda: _n(redis, dlq, 1))
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=5
        )
        assert reply.data == {"sum": 3}
        await wait_for(lambda: _no_pending(redis, stream, group))
        assert pool.workers[0].is_running and pool.restarts == 0
    await client.close()
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"non_retryable"
    assert await redis.xlen(client.own_stream) == 0


async def test_retry_later_waits_the_requested_delay(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1):
        started = time.monotonic()
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.later", data={"delay": 0.6}), timeout=10
        )
        elapsed = time.monotonic() - started
    await client.close()
    assert reply.data == {"attempts": 2}
    assert 0.55 <= elapsed < 3


@pytest.mark.parametrize("action_type", ["calc.bad_return", "calc.not_json"])
async def test_a_bad_result_is_dead_lettered_at_once_and_the_caller_told(
    settings: CommonAppSettings, redis: aioredis.Redis, action_type: str
) -> None:
    """A result of the wrong type, or one that cannot be serialised, would be the same on
    every attempt: the handler runs once, the caller gets a 500 with the reason."""
    _, dlq, _ = _keys(settings)
    s = settings.model_copy(update={"max_retries": 5})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        reply = await client.send_action_pseudo_sync(DomainAction(action_type=action_type), 10)
        assert list(pool.workers[0].attempts.values()) == [1]
    await client.close()
    assert not reply.success and reply.error is not None and reply.status_code == 500
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"non_retryable"


async def test_bad_return_type_of_a_fire_and_forget_action_is_dead_lettered_too(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """No reply is built for it, yet the result is still checked: not ACKed as a success."""
    _, dlq, _ = _keys(settings)
    s = settings.model_copy(update={"max_retries": 5})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        await client.send_action_async(DomainAction(action_type="calc.bad_return"))
        await wait_for(lambda: _n(redis, dlq, 1))
        assert pool.workers[0].stats.handled == 0
        assert list(pool.workers[0].attempts.values()) == [1]
    await client.close()
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"non_retryable"
    assert "expected dict" in orjson.loads(record[b"error"])["message"]


def test_a_handler_that_is_not_async_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="_handle_calc_sync must be 'async def'"):

        class SyncWorker(CalcWorker):
            def _handle_calc_sync(self, action: DomainAction) -> dict[str, int]:
                return {}


async def test_a_pseudo_sync_call_gets_the_real_error_when_no_retry_fits_its_deadline(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """The next attempt could not finish before the caller gives up: the caller gets the
    handler's error (500) at once, not a bare timeout, and so does the dead letter."""
    _, dlq, _ = _keys(settings)
    s = settings.model_copy(
        update={"max_retries": 5, "retry_initial_delay_s": 5.0, "retry_max_delay_s": 5.0}
    )
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        started = time.monotonic()
        reply = await client.send_action_pseudo_sync(DomainAction(action_type="calc.fail"), 3)
        elapsed = time.monotonic() - started
        assert list(pool.workers[0].attempts.values()) == [1]
    await client.close()
    assert elapsed < 2.0
    assert not reply.success and reply.status_code == 500 and reply.error is not None
    assert reply.error.error_type == "RuntimeError" and "always fails" in reply.error.message
    [record] = await _dead_letters(redis, dlq)
    assert orjson.loads(record[b"error"])["error_type"] == "RuntimeError"


async def test_expired_deadline_is_acked_unprocessed_and_reported(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    stream, dlq, group = _keys(settings)
    client = BaseRedisClient("api", redis, settings)
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 1}, deadline=past), 5
        )
        assert pool.workers[0].handled == []
        assert pool.workers[0].stats.expired == 1
        await wait_for(lambda: _no_pending(redis, stream, group))
    await client.close()
    assert reply.status_code == 504 and not reply.success
    [record] = await _dead_letters(redis, dlq)
    assert record[b"reason"] == b"expired"


async def test_reply_listener_survives_a_reply_key_of_the_wrong_type(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Something wrote a string where the reply list goes (WRONGTYPE on every pop): calls time
    out, but the listener keeps going and answers again once the key is usable."""
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1):
        await redis.set(client.reply_key, "not a list")
        with pytest.raises(ActionTimeoutError):
            await client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=0.5
            )
        listener = client._replies._task
        assert listener is not None and not listener.done()
        await redis.delete(client.reply_key)
        again = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 3, "b": 3}), timeout=5
        )
        assert client._replies._task is listener
    await client.close()
    assert again.data == {"sum": 6}


@pytest.mark.parametrize("timeout", [0, -1.0])
async def test_pseudo_sync_refuses_a_timeout_that_is_not_positive(
    settings: CommonAppSettings, redis: aioredis.Redis, timeout: float
) -> None:
    stream, _, _ = _keys(settings)
    client = BaseRedisClient("api", redis, settings)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        await client.send_action_pseudo_sync(DomainAction(action_type="calc.add"), timeout=timeout)
    await client.close()
    assert await redis.xlen(stream) == 0  # nothing was sent


async def test_pseudo_sync_timeout_then_late_reply_leaks_nothing(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    s = settings.model_copy(update={"reply_ttl_s": 1})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        action = DomainAction(action_type="calc.wait", deadline=datetime.now(UTC) + timedelta(60))
        with pytest.raises(ActionTimeoutError):
            await client.send_action_pseudo_sync(action, timeout=0.3)
        for w in pool.workers:
            w.release.set()
        await wait_for(lambda: client.late_replies == 1)  # the listener is still up: discarded
        assert await redis.llen(client.reply_key) == 0
        # A late reply to a client that is gone expires with its key.
        await client.close()
        other = BaseRedisClient("api", redis, s)
        gone = DomainAction(action_type="calc.slow", data={"seconds": 0.5})
        with pytest.raises(ActionTimeoutError):
            await other.send_action_pseudo_sync(gone, timeout=0.1)
        await other._replies.close()  # stop listening without deleting the key
        await wait_for(lambda: _exists(redis, other.reply_key))
        assert 0 < await redis.ttl(other.reply_key) <= 1
        await wait_for(lambda: _missing(redis, other.reply_key), timeout=5)


async def _exists(redis: aioredis.Redis, key: str) -> bool:
    return bool(await redis.exists(key))


async def _missing(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_oversized_send_is_refused_by_the_client(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    s = settings.model_copy(update={"max_payload_bytes": 1024})
    client = BaseRedisClient("api", redis, s)
    with pytest.raises(PayloadTooLargeError):
        await client.send_action_async(DomainAction(action_type="calc.add", data={"x": "y" * 2000}))
    stream, _, _ = _keys(settings)
    assert await redis.xlen(stream) == 0


async def test_a_batch_send_that_redis_partly_refuses_says_which_actions_went_out(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    blocked = QueueManager(settings.queue_prefix, settings.environment).action_stream("blocked")
    await redis.set(blocked, "not a stream")  # XADD to it fails with WRONGTYPE
    actions = [
        DomainAction(action_type="calc.add"),
        DomainAction(action_type="blocked.do"),
        DomainAction(action_type="calc.add"),
    ]
    with pytest.raises(PartialSendError) as info:
        await client.send_actions_async(actions)
    await client.close()
    ids = info.value.entry_ids
    assert ids[1] is None and ids[0] is not None and ids[2] is not None
    assert len(info.value.errors) == 1 and "WRONGTYPE" in str(info.value.errors[0])
    stream, _, _ = _keys(settings)
    assert [e.decode() for e, _ in await redis.xrange(stream)] == [ids[0], ids[2]]


@pytest.mark.parametrize("callback_type", ["Not.Valid", "nodot", "x" * 199 + ".y"])
async def test_invalid_callback_type_is_refused_by_the_client(
    settings: CommonAppSettings, redis: aioredis.Redis, callback_type: str
) -> None:
    client = BaseRedisClient("api", redis, settings)
    with pytest.raises(ValidationError):
        await client.send_action_async_with_callback(
            DomainAction(action_type="calc.add"), callback_type
        )
    stream, _, _ = _keys(settings)
    assert await redis.xlen(stream) == 0


async def test_malformed_reply_is_discarded_and_the_call_still_answered(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1):
        # Junk on the reply list (a bug or a hostile writer) must not break the listener.
        await redis.rpush(client.reply_key, b"not a response", b'{"success": "maybe"}')
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 5, "b": 5}), timeout=5
        )
        assert await redis.llen(client.reply_key) == 0
    await client.close()
    assert reply.data == {"sum": 10}
    assert client.late_replies == 0  # junk is not counted as a late reply
