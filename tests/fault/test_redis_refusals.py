"""Redis refuses writes (``maxmemory`` with ``noeviction``): no ACK without its reply.

Under OOM, XADD and RPUSH are refused while XACK is still allowed, so a worker that sent its
replies and ACKs together would ACK and drop every reply. These tests set ``maxmemory`` on a
private server mid-run and check that the entries stay pending, that the worker stops taking
new work while it cannot write (no zombie that reads and runs but never answers), that the
pool's health says why, and that everything is answered once memory is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.errors import ActionTimeoutError
from common.testing import RedisServer, unique_settings
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


@pytest.fixture(scope="module")
def oom_server() -> Iterator[RedisServer]:
    """A server of our own: these tests change its maxmemory."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def admin(oom_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(oom_server.url)
    await client.config_set("maxmemory-policy", "noeviction")
    yield client
    await client.config_set("maxmemory", 0)
    await client.aclose()


def _settings(server: RedisServer, **overrides: object) -> CommonAppSettings:
    return unique_settings(
        redis_url=server.url,
        service_name="calc",
        worker_block_ms=50,
        retry_initial_delay_s=0.05,
        retry_max_delay_s=0.2,
        visibility_timeout_s=2.0,
        claim_interval_s=0.2,
        shutdown_grace_s=3.0,
        **overrides,
    )


async def _pending(redis: aioredis.Redis, worker: CalcWorker) -> int:
    summary = await redis.xpending(worker.action_stream_name, worker.consumer_group_name)
    return int(summary["pending"])


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_replies_refused_under_oom_keep_entries_pending_until_memory_is_back(
    oom_server: RedisServer, admin: aioredis.Redis, concurrency: int
) -> None:
    settings = _settings(oom_server, worker_concurrency=concurrency, worker_batch_size=4)
    async with WorkerPool(CalcWorker, settings, num_workers=1) as pool:
        worker = pool.workers[0]
        client = BaseRedisClient("api", pool.redis, settings)
        calls = [
            asyncio.create_task(
                client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.wait", data={}), timeout=20
                )
            )
            for _ in range(40)
        ]
        await wait_for(lambda: worker.stats.read >= 1)
        await admin.config_set("maxmemory", 1)  # every write that needs memory is refused
        worker.release.set()
        await wait_for(lambda: worker.stats.flush_error is not None)
        assert "OutOfMemory" in str(worker.stats.flush_error)
        health = pool.health()["workers"][0]
        assert health["flush_error"] == worker.stats.flush_error
        # Nothing answered, nothing ACKed: every entry read is still pending.
        assert not any(c.done() for c in calls)
        read = worker.stats.read
        assert await _pending(pool.redis, worker) == read
        assert worker.stats.acked == 0
        # Backpressure: it takes no new work while it cannot answer the old.
        await wait_for(lambda: worker.stats.flush_errors >= 3)
        assert worker.stats.read == read < 40

        await admin.config_set("maxmemory", 0)
        responses = await asyncio.wait_for(asyncio.gather(*calls), 20)
        assert all(r.success for r in responses)
        await wait_for(lambda: worker.stats.flush_error is None)
        await wait_for(lambda: worker.stats.acked == 40)
        assert await _pending(pool.redis, worker) == 0
        await client.close()


async def test_a_reply_key_of_the_wrong_type_dead_letters_the_action(
    oom_server: RedisServer, admin: aioredis.Redis
) -> None:
    """WRONGTYPE on the reply key can never pass: dead-lettered with the reason, the worker
    goes on with the next action."""
    settings = _settings(oom_server)
    async with WorkerPool(CalcWorker, settings, num_workers=1) as pool:
        worker = pool.workers[0]
        client = BaseRedisClient("api", pool.redis, settings)
        await pool.redis.set(client.reply_key, "not a list")
        action = DomainAction(action_type="calc.add", data={"a": 1, "b": 2})
        call = asyncio.create_task(client.send_action_pseudo_sync(action, timeout=1.0))
        await wait_for(lambda: worker.stats.dead_lettered.get("write_refused") == 1)
        [(_, dead)] = await pool.redis.xrange(worker.dead_letter_stream_name)
        assert dead[b"reason"] == b"write_refused" and b"WRONGTYPE" in dead[b"error"]
        assert await _pending(pool.redis, worker) == 0
        await pool.redis.delete(client.reply_key)
        with pytest.raises(ActionTimeoutError):
            await call
        ok = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 2, "b": 2}), timeout=5
        )
        assert ok.data == {"sum": 4}
        await client.close()
