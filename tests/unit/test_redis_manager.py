"""RedisManager's refusals: unsupported or incomplete URLs, use before initialise."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from common.clients.redis_manager import RedisManager, redact_url
from common.config import CommonAppSettings
from common.errors import ConfigurationError, WorkerStateError


def test_client_before_initialize_is_refused() -> None:
    with pytest.raises(WorkerStateError, match="initialize"):
        RedisManager(CommonAppSettings()).get_client()


async def test_cluster_urls_build_a_cluster_client_with_every_node_credentials_and_tls() -> None:
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import SSLConnection

    url = "rediss+cluster://u:p%40ss@h1:7000,h2:7001,[::1]/?ssl_cert_reqs=none"
    settings = CommonAppSettings(redis_url=url, redis_max_connections=7)
    client = RedisManager(settings)._build()
    assert isinstance(client, RedisCluster)
    nodes = client.nodes_manager.startup_nodes
    assert sorted(nodes) == ["::1:6379", "h1:7000", "h2:7001"]
    kwargs = client.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("u", "p@ss")
    assert kwargs["ssl_cert_reqs"] == "none"
    # TLS connections that pack commands in C (hiredis), on every node known so far
    assert issubclass(kwargs["connection_class"], SSLConnection)
    assert all(node.connection_class is kwargs["connection_class"] for node in nodes.values())
    packed = kwargs["connection_class"].pack_command
    assert packed is not SSLConnection.pack_command
    assert all(node.max_connections == 7 for node in nodes.values())
    await client.aclose()


async def test_sentinel_url_needs_a_master_name() -> None:
    manager = RedisManager(CommonAppSettings(redis_url="redis+sentinel://127.0.0.1:26379"))
    with pytest.raises(ConfigurationError, match="master_name"):
        await manager.initialize()


async def test_unreachable_server_fails_at_initialize_and_leaves_no_client() -> None:
    from common.testing import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    manager = RedisManager(CommonAppSettings(redis_url=url))
    with pytest.raises(RedisConnectionError):
        await manager.initialize()
    with pytest.raises(WorkerStateError):
        manager.get_client()


def test_passwords_are_redacted_in_logs() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
