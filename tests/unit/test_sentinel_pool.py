"""The Sentinel master's pool is bounded by ``redis_max_connections``, like every other pool.

Built without contacting any Sentinel: the client and its pool are created lazily.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.clients.pool import LeanConnectionPool
from common.clients.redis_manager import RedisManager
from common.config import CommonAppSettings

_URL = "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster"


def _master_client(max_connections: int) -> aioredis.Redis:
    settings = CommonAppSettings(redis_url=_URL, redis_max_connections=max_connections)
    return RedisManager(settings)._build()


async def test_the_master_pool_has_redis_max_connections_as_its_bound() -> None:
    client = _master_client(7)
    try:
        pool = client.connection_pool
        assert pool.max_connections == 7
        assert pool.service_name == "mymaster"  # type: ignore[attr-defined]
        assert isinstance(pool, LeanConnectionPool)
    finally:
        await client.aclose()


async def test_a_caller_past_the_bound_waits_for_a_connection_then_fails_clearly() -> None:
    client = _master_client(2)
    try:
        pool = client.connection_pool
        assert isinstance(pool, LeanConnectionPool)
        pool.timeout = 0.05
        taken = [pool.make_connection() for _ in range(2)]  # type: ignore[no-untyped-call]
        pool._in_use_connections.update(taken)
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await pool.get_connection()
    finally:
        await client.aclose()
