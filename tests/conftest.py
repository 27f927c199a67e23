"""Fixtures: a private redis-server per test session, and settings unique to each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from common.clients.redis_manager import RedisManager
from common.config import CommonAppSettings
from common.testing import RedisServer, unique_settings


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on an ephemeral loopback port for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def settings(redis_server: RedisServer) -> CommonAppSettings:
    """Settings on the session server, with a key prefix no other test uses."""
    return unique_settings(
        redis_url=redis_server.url,
        service_name="calc",
        worker_block_ms=50,
        num_internal_workers=2,
        retry_initial_delay_s=0.05,
        retry_max_delay_s=0.2,
        visibility_timeout_s=2.0,
        claim_interval_s=0.2,
        shutdown_grace_s=3.0,
    )


@pytest.fixture
async def redis(settings: CommonAppSettings) -> AsyncIterator[aioredis.Redis]:
    async with RedisManager(settings) as manager:
        yield manager.get_client()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running after it ends."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leaked or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    for task in leaked:
        task.cancel()
    assert not leaked, f"test leaked tasks: {[t.get_name() for t in leaked]}"
