"""The embedded ``memory://`` mode: a shared in-process server, and idle workers that sleep."""

from __future__ import annotations

import asyncio
import time
import uuid

from common import BaseRedisClient, CommonAppSettings, DomainAction, RedisManager, WorkerPool
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _memory_settings(**kw: object) -> CommonAppSettings:
    kw.setdefault("worker_block_ms", 200)
    return CommonAppSettings(redis_url=f"memory://{uuid.uuid4().hex}", service_name="calc", **kw)  # type: ignore[arg-type]


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


def _p50(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def test_pseudo_sync_round_trip_on_memory_is_woken_not_polled() -> None:
    """Workers and the reply listener wake on the embedded server's change signal: a call
    takes milliseconds (``python -m bench --only embedded`` measures it: p50 about 2 ms), not
    a share of ``worker_block_ms``. The bound leaves a 10x margin for a loaded machine; waiting
    out block timeouts would take hundreds of ms."""
    settings = _memory_settings(worker_block_ms=1000)
    async with WorkerPool(CalcWorker, settings, num_workers=2) as pool:
        client = BaseRedisClient("api", pool.redis, settings)
        latencies = []
        for i in range(60):
            started = time.perf_counter()
            reply = await client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": i, "b": 1}), timeout=5
            )
            latencies.append(time.perf_counter() - started)
            assert reply.data == {"sum": i + 1}
        await client.close()
    assert _p50(latencies) <= 0.05, f"p50 {_p50(latencies) * 1000:.1f} ms"


async def test_a_thousand_action_drain_on_memory_takes_well_under_a_second() -> None:
    settings = _memory_settings(worker_block_ms=1000)
    async with RedisManager(settings) as manager:
        client = BaseRedisClient("api", manager.get_client(), settings)
        actions = [DomainAction(action_type="calc.add", data={"a": i, "b": 0}) for i in range(1000)]
        for i in range(0, len(actions), 100):
            await client.send_actions_async(actions[i : i + 100])
        pool = WorkerPool(CalcWorker, settings, manager.get_client(), num_workers=4)
        started = time.perf_counter()
        await pool.start()
        try:
            await wait_for(lambda: sum(w.stats.acked for w in pool.workers) >= 1000, 10, 0.005)
            elapsed = time.perf_counter() - started
        finally:
            await pool.stop()
        await client.close()
    assert elapsed < 0.5, f"1,000 actions drained in {elapsed:.3f}s"


async def test_stopping_an_idle_memory_pool_and_client_is_near_instant() -> None:
    settings = _memory_settings(worker_block_ms=5000)
    pool = WorkerPool(CalcWorker, settings, num_workers=4)
    await pool.start()
    client = BaseRedisClient("api", pool.redis, settings)
    reply = await client.send_action_pseudo_sync(
        DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=5
    )
    assert reply.data == {"sum": 2}
    await wait_for(lambda: all(w._reading for w in pool.workers))  # all waiting for work
    started = time.monotonic()
    await client.close()  # its reply listener is waiting for replies
    closed = time.monotonic() - started
    await pool.stop()
    stopped = time.monotonic() - started - closed
    assert closed < 0.1, f"client.close() took {closed:.3f}s"
    assert stopped < 0.5, f"pool.stop() took {stopped:.3f}s"


async def test_a_client_in_another_thread_gets_prompt_replies_from_a_pool_here() -> None:
    settings = _memory_settings(worker_block_ms=1000)
    async with WorkerPool(CalcWorker, settings, num_workers=2):

        async def call_from_there() -> list[float]:
            async with RedisManager(settings) as manager:
                client = BaseRedisClient("api", manager.get_client(), settings)
                latencies = []
                for i in range(20):
                    started = time.perf_counter()
                    reply = await client.send_action_pseudo_sync(
                        DomainAction(action_type="calc.add", data={"a": i, "b": 2}), timeout=5
                    )
                    latencies.append(time.perf_counter() - started)
                    assert reply.data == {"sum": i + 2}
                await client.close()
                return latencies

        latencies = await asyncio.to_thread(asyncio.run, call_from_there())
    assert _p50(latencies) <= 0.05, f"p50 {_p50(latencies) * 1000:.1f} ms"
