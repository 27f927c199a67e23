"""Sentinel: ``redis+sentinel://`` against a real master, replica and Sentinel, through a
failover while a WorkerPool runs.

What a failover may lose: replication is asynchronous, so writes the old master acknowledged
but had not yet sent to the replica are gone with it (an XADD, an XACK). A lost XACK makes the
entry pending again on the new master (run twice: at-least-once, never lost); a lost XADD is a
send the caller saw succeed and that is gone. Here the failover is SENTINEL FAILOVER with the
replica in sync (the master is not killed), so nothing acknowledged is lost; the test asserts
every action sent is run at least once, and that work flows again on the new master.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ReadOnlyError

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.redis_manager import CONNECTION_ERRORS, RedisManager
from common.testing import RedisSentinel
from tests.helpers import wait_for
from tests.integration.test_roundtrip import CalcWorker


async def _send(client: BaseRedisClient, n: int) -> str:
    """Send, retrying what a failover makes transient (a lost connection, a demoted master)."""
    """Returns the action id."""
    action = DomainAction(action_type="calc.add", data={"a": n, "b": 0})
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        try:
            await client.send_action_async(action)
            return str(action.action_id)
        except (*CONNECTION_ERRORS, ReadOnlyError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_sentinel_url_reaches_the_master(
    sentinel_settings: CommonAppSettings, redis_sentinel: RedisSentinel
) -> None:
    async with RedisManager(sentinel_settings) as manager:
        redis: aioredis.Redis = manager.get_client()
        info = await redis.info("server")
        assert int(info["tcp_port"]) == redis_sentinel.master_port()
        assert (await redis.info("replication"))["role"] == "master"


@pytest.mark.slow
async def test_workers_keep_running_through_a_sentinel_failover(
    sentinel_settings: CommonAppSettings, redis_sentinel: RedisSentinel
) -> None:
    settings = sentinel_settings.model_copy(update={"redis_socket_timeout_s": 8.0})
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        async with WorkerPool(CalcWorker, settings, redis) as pool:
            client = BaseRedisClient("api", redis, settings)

            def seen() -> set[str]:
                return {a for w in pool.workers for a in w.seen}

            before = {await _send(client, n) for n in range(50)}
            await wait_for(lambda: len(seen()) >= 50)
            old = redis_sentinel.master_port()
            sending = asyncio.gather(*(_send(client, n) for n in range(100)))
            new = await asyncio.to_thread(redis_sentinel.failover)
            assert new.port != old
            during = await sending
            after = {await _send(client, n) for n in range(50)}
            # A pseudo-sync call (XADD, then the reply listener's BLPOP) on the new master.
            response = await client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": 2, "b": 3}), timeout=10
            )
            assert response.success and response.data == {"sum": 5}
            await wait_for(lambda: len(seen()) >= 200, timeout=30)
            await client.close()
        assert int((await redis.info("server"))["tcp_port"]) == new.port
    ids = before | set(during) | after
    assert len(ids) == 200
    assert {i for i in ids if i not in seen()} == set()  # every action ran, at least once
