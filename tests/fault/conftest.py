"""Fixtures of the fault-injection tests: worker processes on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.testing import RedisServer
from tests.fault.harness import FaultRun

FaultFactory = Callable[..., Any]


@pytest.fixture
async def fault_factory(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[FaultFactory]:
    """Build a :class:`FaultRun`: on the session server by default, or on ``broker`` (a
    dedicated server the test may kill) with the records kept on the session server."""
    runs: list[FaultRun] = []
    async with AsyncExitStack() as stack:

        async def make(broker: RedisServer | None = None) -> FaultRun:
            server = broker or redis_server
            broker_client = aioredis.Redis.from_url(server.url)
            records = aioredis.Redis.from_url(redis_server.url)
            stack.push_async_callback(broker_client.aclose)
            stack.push_async_callback(records.aclose)
            logdir = tmp_path / f"run{len(runs)}"
            logdir.mkdir()
            run = FaultRun(server.url, broker_client, records, redis_server.url, logdir)
            stack.callback(run.cleanup)
            runs.append(run)
            return run

        yield make


@pytest.fixture
async def fault(fault_factory: FaultFactory) -> FaultRun:
    """Worker processes on the session redis-server, with a key prefix of their own."""
    run: FaultRun = await fault_factory()
    return run


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    """A redis-server of this test alone (it may kill it, or read its command stats)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    """A private redis-server with AOF on, fsync every second."""
    with RedisServer(appendonly=True, appendfsync="everysec") as server:
        yield server
