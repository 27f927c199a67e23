"""``unix://`` URLs: socket path, database number and credentials, through RedisManager."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.clients.base_redis_client import BaseRedisClient
from common.clients.redis_manager import RedisManager
from common.models.actions import DomainAction
from common.testing import RedisServer, unique_settings


@pytest.fixture(scope="module")
def unix_server() -> Iterator[RedisServer]:
    with RedisServer(unixsocket=True) as server:
        yield server


async def _db_of_connection(redis: aioredis.Redis) -> str:
    return str((await redis.client_info())["db"])


async def test_a_unix_url_connects_to_the_database_it_names(unix_server: RedisServer) -> None:
    settings = unique_settings(redis_url=f"{unix_server.unix_url}?db=1", service_name="calc")
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        assert await _db_of_connection(redis) == "1"
        client = BaseRedisClient("caller", redis, settings)
        entry_id = await client.send_action_async(DomainAction(action_type="calc.add"))
        await client.close()
    # Seen over TCP: the entry is in database 1, not 0.
    tcp = aioredis.Redis.from_url(unix_server.url.rsplit("/", 1)[0] + "/1")
    try:
        stream = client.queues.action_stream("calc")
        assert [e[0].decode() for e in await tcp.xrange(stream)] == [entry_id]
        await tcp.delete(stream)
    finally:
        await tcp.aclose()


async def test_a_unix_url_with_an_acl_user_and_password(unix_server: RedisServer) -> None:
    admin = aioredis.Redis.from_url(unix_server.url)
    try:
        await admin.acl_setuser(
            "app", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
        )
        url = f"unix://app:s3cret@{unix_server.unixsocket}?db=2"
        async with RedisManager(unique_settings(redis_url=url)) as manager:
            redis = manager.get_client()
            assert (await redis.client_info())["user"] == "app"
            assert await _db_of_connection(redis) == "2"
        wrong = f"unix://app:wrong@{unix_server.unixsocket}"
        with pytest.raises(RedisConnectionError, match="username-password"):
            await RedisManager(unique_settings(redis_url=wrong)).initialize()
    finally:
        await admin.acl_deluser("app")
        await admin.aclose()


async def test_a_unix_url_with_only_a_password() -> None:
    with RedisServer(unixsocket=True) as server:
        admin = aioredis.Redis.from_url(server.url)
        await admin.config_set("requirepass", "pw 1")
        await admin.aclose()
        url = f"unix://:pw%201@{server.unixsocket}?db=3"
        async with RedisManager(unique_settings(redis_url=url)) as manager:
            redis = manager.get_client()
            assert await redis.set("k", b"v") is True
            assert await _db_of_connection(redis) == "3"
