"""Actions sent to a stream that nobody consumes are told apart from a slow service."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.errors import ActionTimeoutError, NoConsumerError
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "nobody consumes" in r.getMessage()]


async def test_pseudo_sync_to_a_stream_without_group_raises_no_consumer(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with BaseRedisClient("api", redis, settings) as client:
        with pytest.raises(NoConsumerError) as info:
            await client.send_action_pseudo_sync(
                DomainAction(action_type="nobody.ping"), timeout=0.3
            )
    stream = client.queues.action_stream("nobody")
    assert isinstance(info.value, ActionTimeoutError)
    assert info.value.stream == stream and info.value.timeout == 0.3
    assert f"no service consumes stream {stream}" in str(info.value)
    assert "no consumer group" in str(info.value)


async def test_pseudo_sync_to_a_group_without_consumers_raises_no_consumer(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with BaseRedisClient("api", redis, settings) as client:
        stream = client.queues.action_stream("idle")
        await redis.xgroup_create(stream, "idle-group", id="$", mkstream=True)
        with pytest.raises(NoConsumerError, match="no consumer in its consumer group"):
            await client.send_action_pseudo_sync(DomainAction(action_type="idle.ping"), 0.3)


async def test_pseudo_sync_to_a_consumed_stream_is_a_plain_timeout(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with BaseRedisClient("api", redis, settings) as client:
        stream = client.queues.action_stream("mute")
        await redis.xgroup_create(stream, "mute-group", id="$", mkstream=True)
        await redis.xgroup_createconsumer(stream, "mute-group", "c1")  # a consumer, mute
        with pytest.raises(ActionTimeoutError) as info:
            await client.send_action_pseudo_sync(DomainAction(action_type="mute.ping"), 0.3)
    assert type(info.value) is ActionTimeoutError


async def test_a_served_pseudo_sync_call_still_answers(settings: CommonAppSettings) -> None:
    async with (
        WorkerPool(CalcWorker, settings) as pool,
        BaseRedisClient("api", pool.redis, settings) as client,
    ):
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=10
        )
    assert reply.data == {"sum": 3}


async def test_fire_and_forget_warns_once_per_unconsumed_stream_with_one_look(
    settings: CommonAppSettings, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="common.clients")
    looks: list[str] = []
    xinfo_groups = redis.xinfo_groups

    async def counted(name: Any) -> Any:
        looks.append(name)
        return await xinfo_groups(name)

    async with WorkerPool(CalcWorker, settings):  # "calc" is consumed; "nobody" is not
        client = BaseRedisClient("api", redis, settings)
        client.redis.xinfo_groups = counted  # type: ignore[method-assign]
        try:
            for i in range(5):
                await client.send_action_async(DomainAction(action_type="nobody.ping"))
                await client.send_action_async(
                    DomainAction(action_type="calc.add", data={"a": i, "b": 0})
                )
            await client.send_actions_async(
                [DomainAction(action_type="nobody.ping"), DomainAction(action_type="other.ping")]
            )
            nobody = client.queues.action_stream("nobody")
            other = client.queues.action_stream("other")
            await wait_for(lambda: len(_warnings(caplog)) == 2)
            await wait_for(lambda: not client._consumers.looks)  # every look has ended
            for _ in range(5):
                await client.send_action_async(DomainAction(action_type="nobody.ping"))
        finally:
            await client.close()
    assert sorted(looks) == sorted([nobody, client.queues.action_stream("calc"), other])
    warnings = _warnings(caplog)
    assert len(warnings) == 2
    assert any(nobody in w for w in warnings) and any(other in w for w in warnings)
    assert all("no consumer group" in w for w in warnings)
