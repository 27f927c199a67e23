"""A handler can extend its entry's visibility explicitly (leases also renew on their own)."""

from __future__ import annotations

import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from tests.integration.workers import ExtendingWorker


async def test_explicit_extension_resets_the_idle_time(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    # Automatic renewal every third of 30 s would not run during this test: only the
    # explicit calls can reset the idle time.
    s = settings.model_copy(update={"visibility_timeout_s": 30.0})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(ExtendingWorker, s, redis, num_workers=1) as pool:
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.extend", data={"seconds": 0.3}), timeout=5
        )
        renewals = pool.workers[0].stats.lease_renewals
    await client.close()
    assert reply.data["extended"] is True and reply.data["unknown"] is False
    assert reply.data["before"] >= 250 and reply.data["after"] < 100  # the idle time was reset
    assert renewals == 1


async def test_extending_a_deleted_entry_keeps_its_pending_record(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """A bare XCLAIM of a deleted entry drops it from the pending list on Redis 7, erasing
    the only trace of it: extending must say False and leave the record in place."""
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(ExtendingWorker, settings, redis, num_workers=1):
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.extend_deleted"), timeout=5
        )
    await client.close()
    assert reply.data == {"extended": False, "still_pending": True}
