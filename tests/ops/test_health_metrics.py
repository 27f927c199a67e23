"""The operations router: liveness, readiness (503 with the reason) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.ops import ops_router
from common.testing import RedisServer, unique_settings
from tests.helpers import metric_labels as _labels
from tests.helpers import metric_samples as _samples
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker


def _http(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops")


async def test_metrics_after_a_known_workload(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"max_retries": 2})
    pool = WorkerPool(CalcWorker, settings, num_workers=2)
    app = FastAPI()
    app.include_router(ops_router(pool))
    async with pool, _http(app) as http:
        client = BaseRedisClient("api", redis, settings)
        for i in range(5):
            await client.send_action_async(
                DomainAction(action_type="calc.add", data={"a": i, "b": 1})
            )
        await client.send_action_async(DomainAction(action_type="calc.reject"))
        await client.send_action_async(DomainAction(action_type="calc.fail"))
        await client.send_action_async(DomainAction(action_type="calc.flaky"))  # 1 failure
        await client.send_action_async(DomainAction(action_type="calc.add"), delay=600)

        def dead() -> int:
            return sum(sum(w.stats.dead_lettered.values()) for w in pool.workers)

        await wait_for(lambda: dead() == 2 and sum(w.stats.handled for w in pool.workers) == 6)
        stream = pool.workers[0].action_stream_name

        async def all_written() -> bool:  # the outbox writes ACKs and dead letters just after
            pending = await redis.xpending(stream, "calc-group")
            dlq = await redis.xlen(pool.workers[0].dead_letter_stream_name)
            return int(pending["pending"]) == 0 and dlq == 2

        await wait_for(all_written)
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        values = _samples(response.text)
        key = _labels(service="calc", stream=stream)
        group = _labels(service="calc", stream=stream, group="calc-group")
        assert values[("common_actions_handled_total", key)] == 6
        assert values[("common_actions_failed_total", key)] == 3  # fail twice, flaky once
        assert values[("common_actions_retried_total", key)] == 2
        assert values[("common_actions_expired_total", key)] == 0
        assert values[("common_actions_reclaimed_total", key)] == 0
        dead_key = _labels(service="calc", stream=stream, reason="max_retries")
        assert values[("common_actions_dead_lettered_total", dead_key)] == 1
        dead_key = _labels(service="calc", stream=stream, reason="non_retryable")
        assert values[("common_actions_dead_lettered_total", dead_key)] == 1
        assert values[("common_workers_running", (("service", "calc"),))] == 2
        assert values[("common_redis_up", (("service", "calc"),))] == 1
        assert values[("common_stream_length", key)] == 8
        assert values[("common_dead_letters", key)] == 2
        assert values[("common_scheduled_sends", key)] == 1
        assert values[("common_stream_lag", group)] == 0
        assert values[("common_stream_pending", group)] == 0
        assert values[("common_stream_oldest_pending_age_seconds", group)] == 0
        assert values[("common_delayed_retries", group)] == 0
        await client.close()


async def test_liveness_and_readiness_of_a_running_pool(settings: CommonAppSettings) -> None:
    pool = WorkerPool(CalcWorker, settings, num_workers=1)
    app = FastAPI()
    app.include_router(ops_router(pool))
    async with _http(app) as http:
        assert (await http.get("/health/live")).json() == {"status": "alive"}
        before = await http.get("/health/ready")
        assert before.status_code == 503
        assert "workers not running" in before.json()["reason"]
        async with pool:
            ready = await http.get("/health/ready")
            assert ready.status_code == 200, ready.json()
            assert ready.json()["checks"] == {
                "redis": True,
                "groups": True,
                "workers": True,
                "outbox": True,
            }
            # While its only worker runs a long handler (concurrency 1: not reading), the
            # group is deleted: nothing recreates it until the worker reads again.
            worker = pool.workers[0]
            client = BaseRedisClient("api", pool.redis, settings)
            await client.send_action_async(DomainAction(action_type="calc.wait"))
            await wait_for(lambda: len(worker.held) == 1)
            await pool.redis.xgroup_destroy(worker.action_stream_name, "calc-group")
            gone = await http.get("/health/ready")
            assert gone.status_code == 503
            assert gone.json()["checks"]["groups"] is False
            assert "consumer group calc-group missing" in gone.json()["reason"]
            await pool.redis.xgroup_create(worker.action_stream_name, "calc-group", id="0")
            assert (await http.get("/health/ready")).status_code == 200
            worker.release.set()
            await client.close()
        after = await http.get("/health/ready")
        assert after.status_code == 503
        assert after.json()["checks"]["workers"] is False


@pytest.fixture(scope="module")
def oom_server() -> Iterator[RedisServer]:
    """A server of our own: this test sets its maxmemory."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def admin(oom_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(oom_server.url)
    await client.config_set("maxmemory-policy", "noeviction")
    yield client
    await client.config_set("maxmemory", 0)
    await client.aclose()


async def test_readiness_turns_503_while_the_outbox_is_stuck_and_back(
    oom_server: RedisServer, admin: aioredis.Redis
) -> None:
    settings = unique_settings(
        redis_url=oom_server.url,
        service_name="calc",
        worker_block_ms=50,
        retry_initial_delay_s=0.05,
        retry_max_delay_s=0.2,
        shutdown_grace_s=3.0,
    )
    pool = WorkerPool(CalcWorker, settings, num_workers=1)
    app = FastAPI()
    app.include_router(ops_router(pool))
    async with pool, _http(app) as http:
        worker = pool.workers[0]
        assert (await http.get("/health/ready")).status_code == 200
        client = BaseRedisClient("api", pool.redis, settings)
        call = client.send_action_pseudo_sync(DomainAction(action_type="calc.wait"), timeout=20)
        task = asyncio.create_task(call)
        await wait_for(lambda: worker.stats.read >= 1)
        await admin.config_set("maxmemory", 1)  # the reply cannot be written
        worker.release.set()
        await wait_for(lambda: worker.stats.flush_error is not None)
        stuck = await http.get("/health/ready")
        assert stuck.status_code == 503
        body = stuck.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["outbox"] is False and body["checks"]["redis"] is True
        assert "outbox stuck" in body["reason"] and "OutOfMemory" in body["reason"]
        metrics = _samples((await http.get("/metrics")).text)
        flush_errors = (
            "common_outbox_flush_errors_total",
            (("service", "calc"), ("stream", worker.action_stream_name)),
        )
        assert metrics[flush_errors] >= 1

        await admin.config_set("maxmemory", 0)

        async def ready() -> bool:
            return (await http.get("/health/ready")).status_code == 200

        await wait_for(ready)
        assert (await task).success
        await client.close()
