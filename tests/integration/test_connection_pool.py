"""The lean connection pool: bounded, callers wait for a free connection, then time out."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError

from common.clients.pool import LeanConnectionPool
from common.testing import RedisServer
from tests.helpers import wait_for


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
        await wait_for(lambda: pool._in_use_connections, interval=0.001)  # the blocker has it
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await client.ping()
        assert await blocker is None
        assert await client.ping() is True  # the connection came back
    finally:
        await client.aclose()


async def _blocked_clients(redis: aioredis.Redis) -> int:
    return int((await redis.info("clients"))["blocked_clients"])


async def _more_blocked(redis: aioredis.Redis, than: int) -> bool:
    return await _blocked_clients(redis) > than


async def test_a_cancelled_command_leaves_a_usable_pool(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    pool = LeanConnectionPool.from_url(redis_server.url, max_connections=1, timeout=5)
    client = aioredis.Redis.from_pool(pool)
    try:
        blocked = await _blocked_clients(redis)
        task = asyncio.create_task(client.blpop(["nothing"], timeout=5))
        # Cancelled while the server holds it blocked (not while it connects).
        await wait_for(lambda: _more_blocked(redis, blocked), interval=0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.rpush("list", b"x")
        assert await client.lpop("list") == b"x"  # no stale reply read by the next command
    finally:
        await client.aclose()


def test_commands_are_packed_in_c_exactly_as_redis_py_packs_them() -> None:
    pool = LeanConnectionPool.from_url("redis://127.0.0.1:1", timeout=1)
    ours = pool.make_connection()  # type: ignore[no-untyped-call]
    plain = Connection()
    ids = [f"1732412345678-{i}".encode() for i in range(100)]
    for args in [
        ("XACK", "s", "g", *ids),
        ("XADD", "s", "MAXLEN", "~", 1000, "*", "action", b"\x00\xff" * 100),
        ("CONFIG GET", "maxmemory"),  # a two-word command name is split
        (b"CLIENT SETNAME", "w"),
        ("SET", "k", 1.5),
        ("SET", "k", "é"),
        ("SET", "k", bytearray(b"ab")),  # hiredis refuses it: redis-py's packer converts it
        ("SET", "k", memoryview(b"ab")),
    ]:
        assert b"".join(ours.pack_command(*args)) == b"".join(plain.pack_command(*args)), args
    for bad in (None, True, object()):
        with pytest.raises(DataError):
            ours.pack_command("SET", "k", bad)


async def test_values_round_trip_through_the_c_packer(redis_server: RedisServer) -> None:
    client = aioredis.Redis.from_pool(LeanConnectionPool.from_url(redis_server.url, timeout=5))
    try:
        await client.set("packed:float", 1.5)
        await client.set("packed:bytearray", bytearray(b"\x00ab"))
        assert await client.get("packed:float") == b"1.5"
        assert await client.get("packed:bytearray") == b"\x00ab"
        assert (await client.config_get("maxmemory")).keys() == {"maxmemory"}
    finally:
        await client.aclose()
