"""The lean connection pool: bounded, callers wait for a free connection, then time out."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.clients.pool import LeanConnectionPool
from common.testing import RedisServer


async def test_callers_past_the_limit_wait_and_all_succeed(redis_server: RedisServer) -> None:
    pool = LeanConnectionPool.from_url(redis_server.url, max_connections=3, timeout=10)
    client = aioredis.Redis.from_pool(pool)
    try:
        # 30 callers blocking 0.1 s each on 3 connections: all succeed, never more than 3 open.
        results = await asyncio.gather(*[client.blpop(["nothing"], timeout=0.1) for _ in range(30)])
        assert results == [None] * 30
        assert len(pool._in_use_connections) == 0
        assert len(pool._available_connections) <= 3
    finally:
        await client.aclose()


async def test_waiting_longer_than_the_timeout_fails_clearly(redis_server: RedisServer) -> None:
    pool = LeanConnectionPool.from_url(redis_server.url, max_connections=1, timeout=0.2)
    client = aioredis.Redis.from_pool(pool)
    try:
        blocker = asyncio.create_task(client.blpop(["nothing"], timeout=1))
        await asyncio.sleep(0.05)
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()
        assert await blocker is None
        assert await client.ping() is True  # the connection came back
    finally:
        await client.aclose()


async def test_a_cancelled_command_leaves_a_usable_pool(redis_server: RedisServer) -> None:
    pool = LeanConnectionPool.from_url(redis_server.url, max_connections=1, timeout=5)
    client = aioredis.Redis.from_pool(pool)
    try:
        task = asyncio.create_task(client.blpop(["nothing"], timeout=5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.rpush("list", b"x")
        assert await client.lpop("list") == b"x"  # no stale reply read by the next command
    finally:
        await client.aclose()
