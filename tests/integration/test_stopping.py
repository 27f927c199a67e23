"""Stopping: never hangs, is final, is bounded, and swallows no cancellation but its own."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.workers.recovery import Reclaimer
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _memory_settings(**kw: Any) -> CommonAppSettings:
    return CommonAppSettings(redis_url=f"memory://{uuid.uuid4().hex}", service_name="calc", **kw)


async def test_an_idle_pool_on_memory_stops_every_time() -> None:
    """``async with WorkerPool(...): pass`` on memory:// used to hang in most runs: a cancel
    that reached the reclaim loop inside a fakeredis command was swallowed (Python 3.11's
    ``wait_for``), and stop() awaited the loop without a bound."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        settings = _memory_settings()
        started = loop.time()
        async with asyncio.timeout(10):
            async with WorkerPool(CalcWorker, settings, num_workers=4):
                pass
        assert loop.time() - started < 5


@pytest.mark.parametrize("backend", ["memory", "server"])
async def test_an_idle_pool_stops_promptly(backend: str, settings: CommonAppSettings) -> None:
    """Stopping an idle pool waits for nothing: not the reclaim interval, not a blocked read,
    not a lease period. (Generous bound: this is not a benchmark.)"""
    s = (
        _memory_settings(claim_interval_s=30, visibility_timeout_s=60)
        if backend == "memory"
        else settings.model_copy(
            update={"claim_interval_s": 30, "visibility_timeout_s": 60, "worker_block_ms": 5000}
        )
    )
    loop = asyncio.get_running_loop()
    for _ in range(3):
        pool = WorkerPool(CalcWorker, s, num_workers=4)
        await pool.start()
        await wait_for(lambda p=pool: all(w._reading for w in p.workers))  # type: ignore[misc]
        started = loop.time()
        await pool.stop()
        assert loop.time() - started < 0.5


async def test_stop_during_a_crashed_workers_restart_delay_is_final(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """A worker that crashed waits out the pool's restart delay; a stop then ends the delay
    and the worker never runs again (it used to be restarted, and stop took the whole grace
    period plus ten seconds while it handled more work)."""
    s = settings.model_copy(update={"shutdown_grace_s": 1.0})
    pool = WorkerPool(CalcWorker, s, redis, num_workers=1, restart_delay_s=30)
    await pool.start()
    worker = pool.workers[0]
    runs = 0
    run = worker.run

    async def counting_run() -> None:  # what the supervisor would call to restart it
        nonlocal runs
        runs += 1
        await run()

    worker.run = counting_run  # type: ignore[method-assign]
    # The supervisor is already in run(): crash its loop once, from inside.
    original_next_batch = worker._next_batch
    crashed = False

    async def crash_once() -> Any:
        nonlocal crashed
        if not crashed:
            crashed = True
            raise RuntimeError("the loop crashed")
        return await original_next_batch()

    worker._next_batch = crash_once  # type: ignore[method-assign]
    await wait_for(lambda: pool.restarts == 1)
    client = BaseRedisClient("api", redis, s)
    await client.send_action_async(DomainAction(action_type="calc.add", data={"a": 1, "b": 1}))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pool.stop()
    elapsed = loop.time() - started
    await client.close()
    assert elapsed < 1.0  # the restart delay was cut short; nothing was in flight
    assert runs == 0  # never started again, neither by the supervisor nor anyone else
    assert worker.handled == []
    assert not worker.is_running
    # A stop is final: run() on a stopped worker returns at once without reading.
    async with asyncio.timeout(1):
        await run()
    assert worker.handled == [] and not worker.is_running


async def test_stop_is_bounded_when_the_reclaim_loop_swallows_its_cancellation(
    settings: CommonAppSettings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that loses a cancel (as Python 3.11's ``wait_for`` does) inside a reclaim
    pass does not hang stop(): the loop notices the unanswered request, and stop() repeats it."""
    swallowed = 0

    async def swallowing_pass(self: Reclaimer) -> int:
        nonlocal swallowed
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            swallowed += 1  # lost, as in the library bug: no uncancel, no re-raise
        return 0

    monkeypatch.setattr(Reclaimer, "reclaim_once", swallowing_pass)
    s = settings.model_copy(update={"claim_interval_s": 30})
    pool = WorkerPool(CalcWorker, s, redis, num_workers=1)
    await pool.start()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.01)  # into the first pass: not a wait for a condition
    started = loop.time()
    async with asyncio.timeout(10):
        await pool.stop()
    assert loop.time() - started < 1.0
    assert swallowed >= 1


async def test_a_foreign_cancel_during_stop_is_not_swallowed(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """stop() interrupts a blocked read by cancelling the run task and withdraws that cancel;
    a cancel from anyone else that arrives together with it still cancels the task."""
    s = settings.model_copy(update={"worker_block_ms": 30_000})
    worker = CalcWorker(s, redis, "foreign")
    task = asyncio.create_task(worker.run())
    await wait_for(lambda: worker._reading)
    await worker.stop()
    task.cancel()  # e.g. the application shutting down at the same moment
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done
    assert task.cancelled()


async def test_stop_alone_still_ends_run_normally(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    s = settings.model_copy(update={"worker_block_ms": 30_000})
    worker = CalcWorker(s, redis, "own")
    task = asyncio.create_task(worker.run())
    await wait_for(lambda: worker._reading)
    await worker.stop()
    async with asyncio.timeout(5):
        await task
    assert not task.cancelled() and task.exception() is None
