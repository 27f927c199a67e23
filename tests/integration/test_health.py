"""``WorkerPool.health()``: plain JSON-ready data, with the documented fields."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker

WORKER_FIELDS = {
    "consumer",
    "running",
    "read",
    "handled",
    "acked",
    "failed",
    "retried",
    "reclaimed",
    "deleted_while_pending",
    "lease_renewals",
    "lost",
    "released",
    "dead_lettered",
    "dead_letters_trimmed",
    "flush_errors",
    "flush_error",
}


def _plain(value: Any) -> bool:
    """Only the built-in JSON types themselves (no subclasses such as enums)."""
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if type(value) is list:
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


async def test_health_is_plain_json_ready_data(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async with (
        WorkerPool(CalcWorker, settings, redis, num_workers=2) as pool,
        BaseRedisClient("api", redis, settings) as client,
    ):
        reply = await client.send_action_pseudo_sync(
            DomainAction(action_type="calc.reject"), timeout=5
        )
        assert reply.status_code == 422

        def dead_lettered() -> int:
            return sum(sum(w.stats.dead_lettered.values()) for w in pool.workers)

        await wait_for(lambda: dead_lettered() == 1, timeout=5)
        health = pool.health()

    assert _plain(health), health
    assert json.loads(json.dumps(health)) == health
    assert set(health) == {"service", "stream", "running", "num_workers", "restarts", "workers"}
    assert (health["service"], health["running"], health["restarts"]) == ("calc", True, 0)
    assert health["stream"] == pool.workers[0].action_stream_name
    assert health["num_workers"] == 2 and len(health["workers"]) == 2
    for worker in health["workers"]:
        assert set(worker) == WORKER_FIELDS
        assert worker["running"] is True and worker["flush_error"] is None
    reasons = [w["dead_lettered"] for w in health["workers"] if w["dead_lettered"]]
    assert reasons == [{"non_retryable": 1}]
    assert [type(k) for k in reasons[0]] == [str]


def test_health_of_a_pool_never_started(settings: CommonAppSettings) -> None:
    health = WorkerPool(CalcWorker, settings, num_workers=3).health()
    assert _plain(health)
    assert health["running"] is False and health["workers"] == []
    assert health["num_workers"] == 3 and health["stream"].endswith(":actions")
