"""Start-up without Redis: the pool and the runner wait for it within a bound, then fail clearly."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common import BaseRedisClient, CommonAppSettings, DomainAction, RedisManager, WorkerPool
from common.errors import RedisUnavailableError
from common.runner import run_pool
from common.testing import RedisServer, free_port, unique_settings
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _settings(url: str) -> CommonAppSettings:
    return unique_settings(
        redis_url=url, service_name="calc", worker_block_ms=50, num_internal_workers=1
    )


def _attempts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Redis unavailable" in r.getMessage()]


async def test_pool_start_without_redis_raises_a_clear_error_after_its_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="common.clients")
    port = free_port()
    pool = WorkerPool(CalcWorker, _settings(f"redis://app:s3cret@127.0.0.1:{port}/0"))
    pool.connect_timeout_s = 1.0
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(RedisUnavailableError) as info:
        await pool.start()
    waited = loop.time() - began
    assert 0.9 <= waited < 5.0
    message = str(info.value)
    assert f"redis://app:***@127.0.0.1:{port}/0" in message
    assert "ConnectionError: Error 111" in message and "s3cret" not in message
    assert info.value.__cause__ is None and info.value.attempts >= 2
    attempts = _attempts(caplog)  # one line per attempt but the last (which the error reports)
    assert len(attempts) == info.value.attempts - 1
    assert all("s3cret" not in line for line in attempts)
    assert not pool.running
    await pool.stop()  # nothing to stop: a no-op


async def test_lifespan_without_redis_raises_the_clear_error() -> None:
    pool = WorkerPool(CalcWorker, _settings(f"redis://127.0.0.1:{free_port()}/0"))
    pool.connect_timeout_s = 0.3
    with pytest.raises(RedisUnavailableError, match="cannot connect to Redis at redis://"):
        async with pool.lifespan(None):
            pass


async def test_bad_credentials_fail_at_once_without_retrying(redis_server: RedisServer) -> None:
    pool = WorkerPool(CalcWorker, _settings(f"redis://nobody:wrong@127.0.0.1:{redis_server.port}"))
    with pytest.raises(RedisUnavailableError, match="AuthenticationError") as info:
        await pool.start()
    assert info.value.attempts == 1 and "wrong" not in str(info.value)


async def test_pool_connects_to_a_server_that_comes_up_a_moment_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="common.clients")
    server = RedisServer()  # its port is chosen, nothing listens there yet
    try:
        settings = _settings(server.url)
        pool = WorkerPool(CalcWorker, settings)
        starting = asyncio.create_task(pool.start())
        await wait_for(lambda: _attempts(caplog))  # it was refused, and waits
        assert not starting.done()
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(starting, 10)
        try:
            async with BaseRedisClient("api", pool.redis, settings) as client:
                reply = await client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.add", data={"a": 2, "b": 3}), timeout=10
                )
            assert reply.data == {"sum": 5}
        finally:
            await pool.stop()
    finally:
        server.close()


async def test_runner_waits_forever_with_0_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="common.clients")
    stop = asyncio.Event()
    settings = _settings(f"redis://127.0.0.1:{free_port()}/0")
    running = asyncio.create_task(run_pool(CalcWorker, settings, stop=stop, connect_timeout_s=0))
    await wait_for(lambda: len(_attempts(caplog)) >= 2)
    assert all("giving up" not in line for line in _attempts(caplog))
    stop.set()
    pool = await asyncio.wait_for(running, 5)  # a stop ends the wait at once
    assert not pool.running


async def test_runner_runs_once_a_late_server_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="common.clients")
    server = RedisServer()
    try:
        settings = _settings(server.url)
        stop = asyncio.Event()
        running = asyncio.create_task(
            run_pool(CalcWorker, settings, stop=stop, connect_timeout_s=20)
        )
        await wait_for(lambda: _attempts(caplog))
        await asyncio.to_thread(server.start)
        async with (
            RedisManager(settings) as manager,
            BaseRedisClient("api", manager.get_client(), settings) as client,
        ):
            reply = await client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=10
            )
        assert reply.data == {"sum": 2}
        stop.set()
        await asyncio.wait_for(running, 10)
    finally:
        server.close()
