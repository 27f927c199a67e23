"""Detailed metrics: handlings by type and a handler latency histogram; opt-in, free when off."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from common import BaseRedisClient, CommonAppSettings, DomainAction, NonRetryableError, WorkerPool
from common.messaging import Producer, run_workers, worker
from common.messaging.handler import Handler
from common.observability import handler_metrics
from common.ops import ops_router
from common.ops.metrics import disable_detailed, enable_detailed
from tests.helpers import metric_labels as _key
from tests.helpers import metric_samples, wait_for
from tests.integration.workers import CalcWorker

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def detailed() -> Iterator[None]:
    enable_detailed()
    try:
        yield
    finally:
        disable_detailed()


async def _scrape(*pools: Any) -> Samples:
    app = FastAPI()
    app.include_router(ops_router(list(pools)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ops") as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    return metric_samples(response.text)


def _of_service(samples: Samples, prefix: str, service: str) -> Samples:
    return {
        k: v for k, v in samples.items() if k[0].startswith(prefix) and ("service", service) in k[1]
    }


@pytest.mark.usefixtures("detailed")
async def test_actions_counted_and_timed_by_type_after_a_known_workload(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"max_retries": 2})
    pool = WorkerPool(CalcWorker, settings, redis, num_workers=2)
    async with pool, BaseRedisClient("api", redis, settings) as client:
        assert "_process_delivery" in vars(pool.workers[0])  # wrapped, at construction
        await client.send_actions_async(
            [DomainAction(action_type="calc.add", data={"a": i, "b": 1}) for i in range(20)]
            + [DomainAction(action_type="calc.fail") for _ in range(3)]  # 2 attempts, then DLQ
            + [DomainAction(action_type="calc.reject"), DomainAction(action_type="calc.nope")]
        )

        def dead() -> int:
            return sum(sum(w.stats.dead_lettered.values()) for w in pool.workers)

        await wait_for(lambda: dead() == 5 and sum(w.stats.handled for w in pool.workers) == 20)
        values = await _scrape(pool)
    stream = pool.workers[0].action_stream_name

    def by_type(name: str, kind: str) -> float:
        return values.get((name, _key(service="calc", stream=stream, type=kind)), 0.0)

    assert by_type("common_handled_by_type_total", "calc.add") == 20
    assert by_type("common_failed_by_type_total", "calc.add") == 0
    assert by_type("common_failed_by_type_total", "calc.fail") == 6  # each failed delivery
    assert by_type("common_failed_by_type_total", "calc.reject") == 1
    assert not [k for k in values if ("type", "calc.nope") in k[1]]  # no handler ran
    count = {
        kind: values[("common_handler_duration_seconds_count", _key(service="calc", type=kind))]
        for kind in ("calc.add", "calc.fail", "calc.reject")
    }
    assert count == {"calc.add": 20, "calc.fail": 6, "calc.reject": 1}  # handled + failed
    histogram = _of_service(values, "common_handler_duration_seconds", "calc")
    assert sum(v for k, v in histogram.items() if k[0].endswith("_count")) == 27
    inf = _key(service="calc", type="calc.add", le="+Inf")
    assert values[("common_handler_duration_seconds_bucket", inf)] == 20
    duration_sum = ("common_handler_duration_seconds_sum", _key(service="calc", type="calc.add"))
    assert values[duration_sum] > 0
    base = _key(service="calc", stream=stream)
    assert values[("common_actions_handled_total", base)] == 20  # the base counters, unchanged
    assert values[("common_actions_failed_total", base)] == 6
    dead_key = _key(service="calc", stream=stream, reason="max_retries")
    assert values[("common_actions_dead_lettered_total", dead_key)] == 3


@pytest.mark.usefixtures("detailed")
async def test_declarative_handlers_counted_and_timed_by_event(
    settings: CommonAppSettings,
) -> None:
    @worker(topic="orders.created")
    async def on_order(order: dict[str, Any]) -> None:
        if order["id"] < 0:
            raise NonRetryableError("negative id")

    producer = Producer(settings)
    try:
        async with run_workers(on_order, settings=settings) as pool:
            assert pool.workers[0]._run_handler is not Handler.run
            for i in (1, 2, 3, 4, 5, -1, -2):
                await producer.send("orders.created", {"id": i})
            await wait_for(
                lambda: (
                    sum(w.stats.handled for w in pool.workers) == 5
                    and sum(sum(w.stats.dead_lettered.values()) for w in pool.workers) == 2
                )
            )
            values = await _scrape(pool)
            stream = pool.workers[0].stream
    finally:
        await producer.close()
    labels = _key(service="calc", stream=stream, type="orders.created")
    assert values[("common_handled_by_type_total", labels)] == 5
    assert values[("common_failed_by_type_total", labels)] == 2
    count = _key(service="calc", type="orders.created")
    assert values[("common_handler_duration_seconds_count", count)] == 7
    # The gauges of a declarative pool are its topics'.
    assert values[("common_stream_length", _key(service="calc", stream=stream))] == 7
    assert values[("common_dead_letters", _key(service="calc", stream=stream))] == 2


async def test_detailed_metrics_off_wrap_nothing_and_expose_nothing(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    assert not handler_metrics.detailed_enabled()

    @worker(topic="orders.created")
    async def on_order(order: dict[str, Any]) -> None:
        return None

    pool = WorkerPool(CalcWorker, settings, redis, num_workers=1)
    async with pool, run_workers(on_order, settings=settings) as messaging:
        assert "_process_delivery" not in vars(pool.workers[0])  # the class's own method
        assert messaging.workers[0]._run_handler is Handler.run
        async with BaseRedisClient("api", redis, settings) as client:
            await client.send_action_async(DomainAction(action_type="calc.big", data={"size": 1}))
            await wait_for(lambda: pool.workers[0].stats.handled == 1)
        values = await _scrape(pool, messaging)
    assert (
        values[
            ("common_actions_handled_total", _key(service="calc", stream=pool.workers[0].stream))
        ]
        == 1
    )
    # (This process's detailed metrics may hold earlier tests' samples: none of this one's.)
    mine = [k for k in values if settings.queue_prefix in dict(k[1]).get("stream", "")]
    detailed = ("common_handled_by_type", "common_failed_by_type", "common_handler_duration")
    assert mine and not [k for k in mine if k[0].startswith(detailed)]
    assert not [k for k in values if ("type", "calc.big") in k[1]]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


CONSTRUCT = (
    "import sys, redis.asyncio as r\n"
    "from common import CommonAppSettings\n"
    "from tests.integration.workers import CalcWorker\n"
    "w = CalcWorker(CommonAppSettings(service_name='calc'), r.Redis())\n"
    "print('_process_delivery' in vars(w), 'prometheus_client' in sys.modules)\n"
)


def test_the_environment_switch_decides_at_construction() -> None:
    off = _python(CONSTRUCT)
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["False", "False"]  # not wrapped, prometheus-client not loaded
    on = _python(CONSTRUCT, COMMON_METRICS_DETAILED="1")
    assert on.returncode == 0, on.stderr
    assert on.stdout.split() == ["True", "False"]  # wrapped; tallies need no prometheus-client
