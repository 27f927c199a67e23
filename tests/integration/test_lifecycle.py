"""Lifecycle under stress: lost group, lost server, graceful stop, FastAPI, crashes, callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI, Request

from common import (
    ActionTimeoutError,
    BaseRedisClient,
    BaseWorker,
    CommonAppSettings,
    DomainAction,
    DomainActionResponse,
    ErrorDetail,
    WorkerPool,
)
from common.clients.redis_manager import CONNECTION_ERRORS, RedisManager
from common.errors import WorkerStateError
from common.testing import RedisServer, unique_settings
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _total_handled(pool: WorkerPool[CalcWorker]) -> int:
    return sum(len(w.handled) for w in pool.workers)


async def test_group_deleted_under_a_running_worker_is_recreated(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CalcWorker, settings, redis, num_workers=2) as pool:
        first = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=5
        )
        stream, group = pool.workers[0].action_stream_name, pool.workers[0].consumer_group_name
        await redis.xgroup_destroy(stream, group)
        second = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 2, "b": 2}), timeout=5
        )
        groups = await redis.xinfo_groups(stream)
    await client.close()
    assert first.data == {"sum": 2} and second.data == {"sum": 4}
    assert [g["name"] for g in groups] == [group.encode()]


async def test_redis_restart_under_running_workers() -> None:
    with RedisServer() as server:
        settings = unique_settings(
            redis_url=server.url,
            service_name="calc",
            worker_block_ms=50,
            retry_initial_delay_s=0.05,
            retry_max_delay_s=0.2,
            shutdown_grace_s=2,
        )
        async with RedisManager(settings) as manager:
            redis = manager.get_client()
            client = BaseRedisClient("api", redis, settings)
            async with WorkerPool(CalcWorker, settings, redis, num_workers=2) as pool:
                before = await client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=5
                )
                await asyncio.to_thread(server.restart)  # SIGKILL, no persistence: all is gone
                after = await _call_until_answered(client)
                assert all(w.is_running for w in pool.workers)
                assert pool.restarts == 0  # the workers reconnected; none crashed
            await client.close()
    assert before.data == {"sum": 3} and after.data == {"sum": 7}


async def _call_until_answered(client: BaseRedisClient, within_s: float = 30) -> Any:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await client.send_action_pseudo_sync(
                DomainAction(action_type="calc.add", data={"a": 3, "b": 4}), timeout=1
            )
        except (ActionTimeoutError, *CONNECTION_ERRORS):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_graceful_stop_finishes_in_flight_work(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    s = settings.model_copy(update={"worker_concurrency": 4})
    client = BaseRedisClient("api", redis, s)
    pool = WorkerPool(CalcWorker, s, redis, num_workers=1)
    await pool.start()
    await client.send_actions_async(
        [DomainAction(action_type="calc.slow", data={"seconds": 0.4}) for _ in range(4)]
    )
    worker = pool.workers[0]
    await wait_for(lambda: len(worker._active) == 4)
    await pool.stop()
    assert len(worker.handled) == 4  # all four finished rather than being cut off
    info = await redis.xpending(worker.action_stream_name, worker.consumer_group_name)
    assert info["pending"] == 0
    assert not worker.is_running


@pytest.mark.parametrize("concurrency", [1, 4])  # inline handler, or handler tasks
async def test_stop_past_the_grace_period_leaves_work_pending_for_others(
    settings: CommonAppSettings, redis: aioredis.Redis, concurrency: int
) -> None:
    s = settings.model_copy(update={"shutdown_grace_s": 0.2, "worker_concurrency": concurrency})
    client = BaseRedisClient("api", redis, s)
    pool = WorkerPool(CalcWorker, s, redis, num_workers=1)
    await pool.start()
    n = concurrency
    for _ in range(n):
        await client.send_action_async(DomainAction(action_type="calc.wait"))
    worker = pool.workers[0]
    await wait_for(lambda: worker.stats.read == n)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pool.stop()
    assert loop.time() - started < s.shutdown_grace_s + 1.5  # cut off, not waited for
    pending = await redis.xpending_range(
        worker.action_stream_name, worker.consumer_group_name, "-", "+", 10
    )
    assert len(pending) == n and worker.handled == []
    # Released at shutdown: idle at the visibility timeout, so the next reclaim takes it.
    assert all(p["time_since_delivered"] >= s.visibility_timeout_s * 1000 for p in pending)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as second:
        second.workers[0].release.set()
        await wait_for(lambda: len(second.workers[0].handled) == n, timeout=5)
    await client.close()


async def test_stop_interrupts_a_blocked_read_promptly(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    s = settings.model_copy(update={"worker_block_ms": 30_000})
    async with WorkerPool(CalcWorker, s, redis, num_workers=2) as pool:
        await wait_for(lambda: all(w._reading for w in pool.workers))
        loop = asyncio.get_running_loop()
        started = loop.time()
    assert loop.time() - started < 3


async def test_running_a_worker_twice_at_once_is_refused(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    worker = CalcWorker(settings, redis, "twice")
    run = asyncio.create_task(worker.run())
    await wait_for(lambda: worker.is_running)
    with pytest.raises(WorkerStateError, match="already running"):
        await worker.run()
    assert worker.is_running
    await worker.stop()
    await run
    assert not worker.is_running


async def test_a_standalone_worker_closes_its_own_client_when_it_stops(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Run outside a pool, the worker's client is its own: when run() returns, the client has
    been closed (queued sends finished, listener stopped, reply list deleted)."""
    worker = CalcWorker(settings, redis, "alone")
    client = worker.redis_client
    closed: list[bool] = []
    close = client.close

    async def recording_close() -> None:
        await close()
        closed.append(True)

    client.close = recording_close  # type: ignore[method-assign]
    run = asyncio.create_task(worker.run())
    reply = await client.send_action_pseudo_sync(
        DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=5
    )
    await worker.stop()
    await run
    assert reply.data == {"sum": 3}
    assert closed == [True]
    assert client._replies._task is None and not await redis.exists(client.reply_key)


async def test_concurrent_handlers_within_one_worker(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    s = settings.model_copy(update={"worker_concurrency": 20})
    client = BaseRedisClient("api", redis, s)
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as pool:
        loop = asyncio.get_running_loop()
        started = loop.time()
        replies = await asyncio.gather(
            *[
                client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.slow", data={"seconds": 0.3}), timeout=10
                )
                for _ in range(20)
            ]
        )
        elapsed = loop.time() - started
        assert len(pool.workers[0].handled) == 20
    await client.close()
    assert all(r.success for r in replies)
    assert elapsed < 3  # 20 x 0.3 s one after another would take 6 s


async def test_callback_flow_reaches_the_caller_service(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    received: list[DomainAction] = []

    class ApiWorker(BaseWorker):
        async def _handle_api_sum_ready(self, action: DomainAction) -> None:
            received.append(action)

    api_settings = settings.model_copy(update={"service_name": "api"})
    client = BaseRedisClient("api", redis, api_settings)
    async with (
        WorkerPool(CalcWorker, settings, redis, num_workers=1),
        WorkerPool(ApiWorker, api_settings, redis, num_workers=1),
    ):
        request = DomainAction(action_type="calc.add", data={"a": 20, "b": 22}, tenant_id="t1")
        await client.send_action_async_with_callback(request, "api.sum_ready")
        await wait_for(lambda: received)
        failing = DomainAction(action_type="calc.reject")
        await client.send_action_async_with_callback(failing, "api.sum_ready")
        await wait_for(lambda: len(received) == 2)
    callback, failure = received
    assert callback.data == {"sum": 42}
    assert callback.correlation_id == request.correlation_id and callback.tenant_id == "t1"
    assert callback.origin_service == "calc"
    assert callback.metadata["in_reply_to"] == str(request.action_id)
    assert failure.metadata["success"] is False and failure.metadata["error"]["error_type"]
    assert failure.metadata["status_code"] == 422 and callback.metadata["error"] is None


async def test_a_failed_response_keeps_its_data_in_the_callback(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    received: list[DomainAction] = []

    class Stock(BaseWorker):
        async def _handle_calc_reserve(self, action: DomainAction) -> DomainActionResponse:
            return DomainActionResponse(
                success=False,
                status_code=409,
                data={"available": 2},
                error=ErrorDetail(error_type="Insufficient", message="only 2 left"),
            )

    class Api(BaseWorker):
        async def _handle_api_reserved(self, action: DomainAction) -> None:
            received.append(action)

    api_settings = settings.model_copy(update={"service_name": "api"})
    client = BaseRedisClient("api", redis, api_settings)
    async with (
        WorkerPool(Stock, settings, redis, num_workers=1),
        WorkerPool(Api, api_settings, redis, num_workers=1),
    ):
        await client.send_action_async_with_callback(
            DomainAction(action_type="calc.reserve"), "api.reserved"
        )
        await wait_for(lambda: received)
    [callback] = received
    assert callback.data == {"available": 2}
    assert callback.metadata["status_code"] == 409 and not callback.metadata["success"]
    assert callback.metadata["error"]["message"] == "only 2 left"


async def test_a_crashing_worker_task_is_restarted(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    class CrashOnce(CalcWorker):
        crashed = False

        async def _process_action_loop(self) -> None:
            if not CrashOnce.crashed:
                CrashOnce.crashed = True
                raise RuntimeError("worker bug")
            await super()._process_action_loop()

    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(CrashOnce, settings, redis, num_workers=1, restart_delay_s=0.05) as pool:
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": 1, "b": 1}), timeout=5
        )
        assert pool.restarts == 1
        health = pool.health()
        assert health["service"] == "calc" and health["restarts"] == 1 and health["running"]
        assert [w["running"] for w in health["workers"]] == [True]
        assert health["workers"][0]["handled"] == 1
    await client.close()
    assert reply.success


def _make_app(settings: CommonAppSettings) -> FastAPI:
    pool: WorkerPool[CalcWorker] = WorkerPool(CalcWorker, settings)

    @asynccontextmanager_lifespan
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with pool.lifespan(app):
            app.state.pool = pool
            app.state.client = BaseRedisClient("api", pool.redis, settings)
            yield
            await app.state.client.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/add")
    async def add(request: Request, a: int, b: int) -> dict[str, Any]:
        reply = await request.app.state.client.send_action_pseudo_sync(
            DomainAction(action_type="calc.add", data={"a": a, "b": b}), timeout=5
        )
        return dict(reply.data)

    return app


def asynccontextmanager_lifespan(func: Any) -> Any:
    from contextlib import asynccontextmanager

    return asynccontextmanager(func)


async def test_fastapi_lifespan_starts_and_stops_the_pool(settings: CommonAppSettings) -> None:
    app = _make_app(settings)
    async with app.router.lifespan_context(app):
        pool = app.state.pool
        assert pool.running and len(pool.workers) == settings.num_internal_workers
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/add", params={"a": 2, "b": 40})
    assert response.status_code == 200 and response.json() == {"sum": 42}
    assert not pool.running and not any(w.is_running for w in pool.workers)


async def test_pool_lifespan_directly_as_fastapi_lifespan(settings: CommonAppSettings) -> None:
    pool = WorkerPool(CalcWorker, settings, num_workers=3)
    app = FastAPI(lifespan=pool.lifespan)
    async with app.router.lifespan_context(app):
        assert pool.running and len(pool.workers) == 3
        assert all(w.is_running for w in pool.workers)  # running once start() returns
    assert not pool.running


@pytest.mark.parametrize("bad", [0, -1])
def test_pool_refuses_bad_sizes(settings: CommonAppSettings, bad: int) -> None:
    with pytest.raises(ValueError):
        WorkerPool(CalcWorker, settings, num_workers=bad)


async def test_a_graceful_hand_back_costs_no_attempt(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """With max_retries=1 every entry has one delivery. A stop hands back the entries read
    but not started; the next pool runs them all: the hand-back gave their delivery back
    (before, the reclaim counted a second one and dead-lettered them unrun)."""
    s = settings.model_copy(
        update={"max_retries": 1, "worker_batch_size": 10, "visibility_timeout_s": 30.0}
    )
    client = BaseRedisClient("api", redis, s)
    first = WorkerPool(CalcWorker, s, redis, num_workers=1)
    await first.start()
    actions = [DomainAction(action_type="calc.slow", data={"seconds": 0.3}) for _ in range(5)]
    for action in actions:
        await client.send_action_async(action)
    await wait_for(lambda: first.workers[0].stats.read == 5)
    await first.stop()
    handled_first = len(first.workers[0].handled)
    assert handled_first < 5
    async with WorkerPool(CalcWorker, s, redis, num_workers=1) as second:
        await wait_for(lambda: len(second.workers[0].handled) == 5 - handled_first, timeout=10)
        assert second.workers[0].stats.dead_lettered == {}
    await client.close()
