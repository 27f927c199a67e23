"""A pooled connection that the server closed while it sat idle is replaced before use.

A proxy or server restart, an idle timeout or ``CLIENT KILL`` closes connections that the pool
still holds; the first command on such a connection would fail on a healthy server. The pool
notices the closed socket locally (no round trip) and reconnects before handing it out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.clients.base_redis_client import BaseRedisClient
from common.config import CommonAppSettings
from common.models.actions import DomainAction
from common.testing import RedisServer
from tests.helpers import wait_for


@pytest.fixture
async def killer(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A connection of its own, outside the pool under test (CLIENT KILL skips its caller)."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _kill_normal_clients(killer: aioredis.Redis) -> int:
    return int(await killer.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))


async def test_the_first_command_after_the_server_closed_idle_connections_succeeds(
    redis: aioredis.Redis, killer: aioredis.Redis
) -> None:
    # Several idle connections in the pool, all closed by the server at once.
    await asyncio.gather(*[redis.blpop(["nothing"], timeout=0.05) for _ in range(4)])
    assert await _kill_normal_clients(killer) >= 4
    for i in range(6):  # every one of them, not only the first, is replaced
        assert await redis.set(f"stale:{i}", i) is True


async def test_a_send_after_the_server_closed_the_connection_is_appended_once(
    redis: aioredis.Redis, killer: aioredis.Redis, settings: CommonAppSettings
) -> None:
    client = BaseRedisClient("caller", redis, settings)
    try:
        await client.send_action_async(DomainAction(action_type="calc.add", data={"i": 0}))
        await _kill_normal_clients(killer)
        await client.send_action_async(DomainAction(action_type="calc.add", data={"i": 1}))
        assert await redis.xlen(client.queues.action_stream("calc")) == 2
    finally:
        await client.close()


async def test_a_command_cut_off_by_a_lost_connection_is_not_resent(
    redis: aioredis.Redis, killer: aioredis.Redis, settings: CommonAppSettings
) -> None:
    """The XADD reaches the server, which holds it (paused); its connection is then killed.
    The caller gets the error: the pool never replays a command that may have been received."""
    client = BaseRedisClient("caller", redis, settings)
    stream = client.queues.action_stream("calc")
    await killer.execute_command("CLIENT", "PAUSE", 3000, "WRITE")
    try:
        send = asyncio.create_task(client.send_action_async(DomainAction(action_type="calc.add")))
        # The XADD is held by the pause once the server counts a paused client.
        await wait_for(lambda: _held_xadd(killer), timeout=2.0, interval=0.005)
        await _kill_normal_clients(killer)
        with pytest.raises(RedisConnectionError):
            await send
    finally:
        await killer.execute_command("CLIENT", "UNPAUSE")
    assert await redis.xlen(stream) == 0  # and nothing is appended once writes resume
    await client.close()


async def _held_xadd(redis: aioredis.Redis) -> bool:
    """Some client's XADD is held (blocked) by the pause."""
    clients = await redis.client_list()
    return any(c.get("cmd") == "xadd" and "b" in c.get("flags", "") for c in clients)
