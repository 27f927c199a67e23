"""Delayed sends: invisible to workers until due, durable in Redis, refused when nonsense."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.scheduled import scheduled_key
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


async def test_a_delayed_action_runs_when_due_and_not_before(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        worker = pool.workers[0]
        action = DomainAction(action_type="calc.add", data={"a": 1, "b": 2})
        sent = time.monotonic()
        returned = await client.send_action_async(action, delay=0.8)
        assert returned == str(action.action_id)
        assert await redis.xlen(worker.action_stream_name) == 0  # invisible: not on the stream
        assert await redis.zcard(scheduled_key(worker.action_stream_name)) == 1
        await wait_for(lambda: worker.handled == [str(action.action_id)], timeout=5)
        elapsed = time.monotonic() - sent
        assert 0.75 <= elapsed < 0.8 + 0.25 + 1.0
        assert await redis.zcard(scheduled_key(worker.action_stream_name)) == 0
    await client.close()


async def test_a_schedule_survives_until_a_consumer_comes(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Scheduled while no worker runs, due by the time one starts: it runs at once."""
    client = BaseRedisClient("api", redis, settings)
    action = DomainAction(action_type="calc.add", data={"a": 2, "b": 2})
    due = datetime.now(UTC) + timedelta(seconds=0.2)
    await client.send_action_async(action, not_before=due)
    await wait_for(lambda: datetime.now(UTC) > due, timeout=2)  # due before any worker runs
    async with WorkerPool(CalcWorker, settings, redis, num_workers=1) as pool:
        await wait_for(lambda: pool.workers[0].handled == [str(action.action_id)], timeout=5)
    await client.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1.0}, "delay must be >= 0"),
        ({"delay": float("nan")}, "delay must be >= 0"),
        ({"not_before": datetime(2030, 1, 1)}, "aware"),
        ({"delay": 1.0, "not_before": datetime.now(UTC)}, "not both"),
    ],
)
async def test_nonsense_delays_are_refused_before_anything_is_sent(
    settings: CommonAppSettings, redis: aioredis.Redis, kwargs: dict[str, object], message: str
) -> None:
    client = BaseRedisClient("api", redis, settings)
    action = DomainAction(action_type="calc.add", data={})
    with pytest.raises(ValueError, match=message):
        await client.send_action_async(action, **kwargs)  # type: ignore[arg-type]
    assert await redis.exists(scheduled_key(client.stream_for(action))) == 0
    await client.close()
