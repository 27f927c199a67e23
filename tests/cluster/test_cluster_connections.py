"""``redis_max_connections`` on a cluster: callers past the bound wait for a connection (as on
one server) instead of failing with ``MaxConnectionsError``; a wait has a bound too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.redis_manager import RedisManager
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _connections_per_node(redis: aioredis.Redis) -> list[int]:
    cluster: Any = redis
    return [len(node._connections) for node in cluster.get_nodes()]


async def test_commands_and_pipelines_past_the_bound_wait_and_all_succeed(
    settings: CommonAppSettings,
) -> None:
    bounded = settings.model_copy(update={"redis_max_connections": 2})
    async with RedisManager(bounded) as manager:
        redis = manager.get_client()
        key = f"{{{settings.queue_prefix}}}:count"  # one slot: a transaction may use them
        # 40 callers blocking 0.05 s each on 2 connections, then 40 increments.
        found = await asyncio.gather(
            *(redis.blpop([f"{key}:nothing"], timeout=0.05) for _ in range(40))
        )
        assert found == [None] * 40
        await asyncio.gather(*(redis.incr(key) for _ in range(40)))
        assert int(await redis.get(key)) == 40

        async def transaction(i: int) -> list[Any]:
            pipe = redis.pipeline(transaction=True)
            pipe.incr(key)
            pipe.rpush(f"{key}:list", i)
            result: list[Any] = await pipe.execute()
            return result

        await asyncio.gather(*(transaction(i) for i in range(40)))
        assert int(await redis.get(key)) == 80
        assert await redis.llen(f"{key}:list") == 40
        assert max(_connections_per_node(redis)) <= 2


async def test_pseudo_sync_calls_and_sends_past_the_bound_wait_for_a_connection(
    settings: CommonAppSettings,
) -> None:
    """Five clients (each with its own reply listener) share one pool of one connection per
    node with the workers: every call gets its answer, every send goes out."""
    bounded = settings.model_copy(update={"redis_max_connections": 1})
    async with RedisManager(bounded) as manager, WorkerPool(CalcWorker, bounded, num_workers=2):
        redis = manager.get_client()
        clients = [BaseRedisClient("api", redis, bounded) for _ in range(5)]

        async def call(i: int) -> int:
            action = DomainAction(action_type="calc.add", data={"a": i, "b": 1})
            response = await clients[i % 5].send_action_pseudo_sync(action, timeout=30)
            return int(response.data["sum"])

        async def send(i: int) -> str:
            action = DomainAction(action_type="calc.add", data={"a": i, "b": 0})
            return await clients[i % 5].send_action_async(action)

        try:
            sums, sent = await asyncio.gather(
                asyncio.gather(*(call(i) for i in range(40))),
                asyncio.gather(*(send(i) for i in range(40))),
            )
        finally:
            for client in clients:
                await client.close()
        assert sums == [i + 1 for i in range(40)]
        assert len(set(sent)) == 40


async def test_a_wait_past_its_bound_fails_with_a_transient_error(
    settings: CommonAppSettings,
) -> None:
    bounded = settings.model_copy(update={"redis_max_connections": 1})
    async with RedisManager(bounded) as manager:
        redis = manager.get_client()
        cluster: Any = redis
        cluster.connection_wait_s = 0.2
        key = f"{settings.queue_prefix}:nothing"
        blocker = asyncio.create_task(redis.blpop([key], timeout=1))
        await wait_for(lambda: cluster.connections_in_use, interval=0.001)
        with pytest.raises(RedisConnectionError, match="redis_max_connections"):
            await redis.get(key)
        assert await blocker is None
        assert await redis.get(key) is None  # the connection came back
