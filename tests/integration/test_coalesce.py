"""Coalesced single sends: concurrent XADDs of one client share a pipeline, each caller still
gets its own entry id or its own error, and nothing outlives the client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from common import (
    BaseRedisClient,
    CommonAppSettings,
    DomainAction,
    DomainActionResponse,
    QueueManager,
    WorkerPool,
)
from common.errors import PayloadTooLargeError
from common.testing import free_port
from tests.helpers import wait_for
from tests.integration import workers
from tests.integration.test_roundtrip import CalcWorker


def _add(i: int, service: str = "calc") -> DomainAction:
    return DomainAction(action_type=f"{service}.add", data={"a": i, "b": 1})


class PipelineSpy:
    """Counts the pipelines a client's Redis opens and the commands each one sends."""

    def __init__(self, redis: aioredis.Redis, fail_with: Exception | None = None) -> None:
        self.sizes: list[int] = []
        self._pipeline = redis.pipeline
        self._fail_with = fail_with

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **kw: Any) -> Any:
            self.sizes.append(len(pipe.command_stack))
            if self._fail_with is not None:
                await pipe.reset()
                raise self._fail_with
            return await execute(*a, **kw)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


def _spy(client: BaseRedisClient, fail_with: Exception | None = None) -> PipelineSpy:
    spy = PipelineSpy(client.redis, fail_with)
    client.redis = _Proxy(client.redis, spy)  # type: ignore[assignment]
    return spy


class _Proxy:
    """``redis`` with its ``pipeline`` replaced (the real client stays untouched)."""

    def __init__(self, redis: aioredis.Redis, pipeline: PipelineSpy) -> None:
        self._redis = redis
        self.pipeline = pipeline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)


async def _stream_action_ids(redis: aioredis.Redis, stream: str) -> list[str]:
    entries = await redis.xrange(stream)
    return [str(orjson.loads(fields[b"action"])["action_id"]) for _, fields in entries]


async def test_concurrent_sends_get_distinct_ids_in_call_order(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    spy = _spy(client)
    callers, per_caller = 40, 15
    actions = [[_add(c * 100 + i) for i in range(per_caller)] for c in range(callers)]

    async def one_caller(mine: list[DomainAction]) -> list[str]:
        return [await client.send_action_async(a) for a in mine]

    ids = await asyncio.gather(*(one_caller(mine) for mine in actions))
    await client.close()

    flat = [i for per in ids for i in per]
    assert len(set(flat)) == callers * per_caller
    stream = client.stream_for(actions[0][0])
    entries = await redis.xrange(stream)
    assert sorted(e[0].decode() for e in entries) == sorted(flat)
    by_id = dict(
        zip(await _entry_ids(redis, stream), await _stream_action_ids(redis, stream), strict=True)
    )
    for mine, got in zip(actions, ids, strict=True):
        # each caller's entries are in the order of its calls, and each id is its own action
        assert got == sorted(got, key=_id_key)
        assert [by_id[i] for i in got] == [str(a.action_id) for a in mine]
    # and they were coalesced: far fewer round trips than sends
    assert spy.sizes and max(spy.sizes) > 1
    assert len(spy.sizes) < callers * per_caller // 2


async def _entry_ids(redis: aioredis.Redis, stream: str) -> list[str]:
    return [e[0].decode() for e in await redis.xrange(stream)]


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def test_sequential_sends_go_out_directly(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    spy = _spy(client)
    ids = [await client.send_action_async(_add(i)) for i in range(20)]
    await client.close()
    assert len(set(ids)) == 20
    assert spy.sizes == []  # nothing was in flight: no pipeline


async def test_per_command_error_reaches_only_its_caller(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    spy = _spy(client)
    await redis.set(client.queues.action_stream("broken"), "not a stream")
    actions = [_add(i, "broken" if i in (0, 7, 13) else "calc") for i in range(20)]
    results = await asyncio.gather(
        *(client.send_action_async(a) for a in actions), return_exceptions=True
    )
    await client.close()

    assert max(spy.sizes) > 1  # the errors at 7 and 13 happened inside a pipeline
    for i, result in enumerate(results):
        if i in (0, 7, 13):
            assert isinstance(result, ResponseError) and "WRONGTYPE" in str(result)
        else:
            assert isinstance(result, str), result
    stream = client.queues.action_stream("calc")
    assert sorted(await _entry_ids(redis, stream)) == sorted(
        r for r in results if isinstance(r, str)
    )


async def test_pipeline_failure_reaches_every_caller_in_it(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    spy = _spy(client, fail_with=RedisConnectionError("connection lost"))
    results = await asyncio.gather(
        *(client.send_action_async(_add(i)) for i in range(10)), return_exceptions=True
    )
    await client.close()
    assert spy.sizes == [9]
    assert isinstance(results[0], str)  # the direct send went through
    assert all(isinstance(r, RedisConnectionError) for r in results[1:]), results
    assert await _entry_ids(redis, client.queues.action_stream("calc")) == [results[0]]


async def test_connection_refused_reaches_all_callers(settings: CommonAppSettings) -> None:
    down = aioredis.Redis(port=free_port(), socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
    client = BaseRedisClient("api", down, settings)
    spy = _spy(client)
    results = await asyncio.gather(
        *(client.send_action_async(_add(i)) for i in range(10)), return_exceptions=True
    )
    await client.close()
    await down.aclose()
    assert spy.sizes == [9]
    assert all(isinstance(r, RedisConnectionError) for r in results), results


async def test_cancelled_callers_do_not_break_the_others(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    actions = [_add(i) for i in range(20)]
    tasks = [asyncio.create_task(client.send_action_async(a)) for a in actions]
    await asyncio.sleep(0)  # the first is in flight, the others queued
    cancelled = {3, 4, 11, 19}
    for i in cancelled:
        tasks[i].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()

    for i, result in enumerate(results):
        if i in cancelled:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert isinstance(result, str), result
    sent = await _stream_action_ids(redis, client.queues.action_stream("calc"))
    # cancelled while queued: never sent; the others in call order
    assert sent == [str(a.action_id) for i, a in enumerate(actions) if i not in cancelled]


async def test_cancelling_the_direct_send_lets_the_queued_ones_go(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    tasks = [asyncio.create_task(client.send_action_async(_add(i))) for i in range(10)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, str) for r in results[1:]), results
    # and the client works afterwards
    assert isinstance(await client.send_action_async(_add(99)), str)


async def test_close_waits_for_queued_sends(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    tasks = [asyncio.create_task(client.send_action_async(_add(i))) for i in range(30)]
    await asyncio.sleep(0)
    await client.close()  # the leaked-task fixture fails the test if a flusher outlives this
    assert all(t.done() for t in tasks)
    ids = [t.result() for t in tasks]
    assert sorted(await _entry_ids(redis, client.queues.action_stream("calc"))) == sorted(ids)


async def test_payload_too_large_raises_in_the_caller_before_sending(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    big = DomainAction(action_type="calc.add", data={"blob": "x" * settings.max_payload_bytes})
    actions = [_add(0), big, _add(2), big, _add(4)]
    results = await asyncio.gather(
        *(client.send_action_async(a) for a in actions), return_exceptions=True
    )
    pseudo = asyncio.gather(
        client.send_action_async(_add(5)),
        client.send_action_pseudo_sync(big, timeout=1),
        return_exceptions=True,
    )
    first, too_large = await pseudo
    await client.close()
    assert isinstance(results[1], PayloadTooLargeError)
    assert isinstance(results[3], PayloadTooLargeError)
    assert isinstance(too_large, PayloadTooLargeError)
    good = [results[0], results[2], results[4], first]
    assert all(isinstance(r, str) for r in good)
    assert sorted(await _entry_ids(redis, client.queues.action_stream("calc"))) == sorted(good)


async def test_pseudo_sync_under_coalescing(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with WorkerPool(CalcWorker, settings, redis, num_workers=3):
        client = BaseRedisClient("api", redis, settings)
        spy = _spy(client)
        calls = [client.send_action_pseudo_sync(_add(i), timeout=10) for i in range(300)]
        mixed = [client.send_action_async(_add(i)) for i in range(50)]
        responses, ids = await asyncio.gather(asyncio.gather(*calls), asyncio.gather(*mixed))
        await client.close()
    assert [r.data["sum"] for r in responses] == [i + 1 for i in range(300)]
    assert len(set(ids)) == 50
    assert max(spy.sizes) > 1


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_pseudo_sync_sequential_and_pairs(
    settings: CommonAppSettings, redis: aioredis.Redis, in_flight: int
) -> None:
    async with WorkerPool(CalcWorker, settings, redis):
        client = BaseRedisClient("api", redis, settings)
        for round_ in range(5):
            responses = await asyncio.gather(
                *(
                    client.send_action_pseudo_sync(_add(round_ * 10 + k), timeout=5)
                    for k in range(in_flight)
                )
            )
            assert [r.data["sum"] for r in responses] == [
                round_ * 10 + k + 1 for k in range(in_flight)
            ]
        await client.close()


async def test_replies_leave_as_each_action_finishes_not_when_the_batch_ends(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """A backlog of 100 pseudo-sync calls to a 20 ms handler, read as one batch at
    concurrency 1: each reply leaves when its handler is done, so most calls are answered
    within a 1.5 s timeout (when replies waited for the batch's end, none was)."""
    settings = settings.model_copy(update={"worker_batch_size": 100, "worker_concurrency": 1})
    client = BaseRedisClient("api", redis, settings)
    started = time.monotonic()
    calls = [
        asyncio.create_task(
            client.send_action_pseudo_sync(
                DomainAction(action_type="calc.slow", data={"seconds": 0.02}), timeout=1.5
            )
        )
        for _ in range(100)
    ]
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    await wait_for(lambda: _is(redis.xlen(stream), 100))
    first_reply: list[float] = []
    calls[0].add_done_callback(lambda _: first_reply.append(time.monotonic() - started))
    async with WorkerPool(workers.CalcWorker, settings, redis, num_workers=1):
        results = await asyncio.gather(*calls, return_exceptions=True)
    answered = [r for r in results if isinstance(r, DomainActionResponse)]
    assert len(answered) >= 30, f"only {len(answered)} of 100 answered in time"
    assert first_reply and first_reply[0] < 1.0
    await client.close()


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
