"""The embedded ``memory://`` mode: a shared in-process server, and idle workers that sleep."""

from __future__ import annotations

import time
import uuid

from common import BaseRedisClient, CommonAppSettings, DomainAction, RedisManager, WorkerPool
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _memory_settings(**kw: object) -> CommonAppSettings:
    return CommonAppSettings(
        redis_url=f"memory://{uuid.uuid4().hex}", service_name="calc", worker_block_ms=200, **kw
    )  # type: ignore[arg-type]


async def test_everything_in_the_process_shares_one_embedded_server() -> None:
    settings = _memory_settings()
    async with RedisManager(settings) as a, RedisManager(settings) as b:
        await a.get_client().set("k", "v")
        assert await b.get_client().get("k") == b"v"
    other = _memory_settings()
    async with RedisManager(other) as c:
        assert await c.get_client().get("k") is None  # another name, another server


async def test_idle_pool_uses_almost_no_cpu_and_still_picks_up_work_promptly() -> None:
    settings = _memory_settings(num_internal_workers=4)
    async with WorkerPool(CalcWorker, settings) as pool:
        client = BaseRedisClient("api", pool.redis, settings)
        cpu_before, wall_before = time.process_time(), time.monotonic()
        idle_until = wall_before + 2.0
        while time.monotonic() < idle_until:  # idle: the workers have nothing to do
            await _sleep(0.1)
        cpu_used = time.process_time() - cpu_before
        started = time.monotonic()
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=5
        )
        latency = time.monotonic() - started
        await client.close()
    assert reply.data == {"sum": 3}
    # A spinning worker burns a whole core; four waiting ones should take a few percent.
    assert cpu_used < 0.3, f"idle pool used {cpu_used:.2f}s of CPU in 2s"
    assert latency < 0.5, f"new work took {latency:.3f}s to be answered"


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_round_trip_on_memory_with_retries_and_dead_letters() -> None:
    settings = _memory_settings(max_retries=2, retry_initial_delay_s=0.01, retry_max_delay_s=0.02)
    async with WorkerPool(CalcWorker, settings, num_workers=2) as pool:
        client = BaseRedisClient("api", pool.redis, settings)
        ok = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 2, "b": 2}), timeout=5
        )
        failed = await client.send_action_pseudo_sync(DomainAction(action_type="calc.fail"), 5)
        dlq = pool.workers[0].dead_letter_stream_name
        records = await wait_for(lambda: pool.redis.xrange(dlq))
        await client.close()
    assert ok.data == {"sum": 4}
    assert not failed.success and failed.status_code == 500
    assert [f[b"reason"] for _, f in records] == [b"max_retries"]
