"""``common status``: per stream length, lag, pending, consumers, delays and dead letters."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker
from tests.ops.conftest import Invoke

ROOT = Path(__file__).resolve().parents[2]


async def test_status_reports_every_measure_of_a_seeded_stream(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    # An idle service: a group, three entries nobody has read (lag 3).
    idle = BaseRedisClient("api", redis, settings)
    idle_stream = idle.queues.action_stream("idle")
    await redis.xgroup_create(idle_stream, "idle-group", id="0", mkstream=True)
    for _ in range(3):
        await idle.send_action_async(DomainAction(action_type="idle.work"))
    slow = settings.model_copy(update={"retry_initial_delay_s": 60.0, "retry_max_delay_s": 60.0})
    async with WorkerPool(CalcWorker, slow, num_workers=1) as pool:
        worker = pool.workers[0]
        client = BaseRedisClient("api", redis, slow)
        await client.send_action_async(DomainAction(action_type="calc.reject"))  # dead letter
        await client.send_action_async(DomainAction(action_type="calc.fail"))  # delayed retry
        await client.send_action_async(DomainAction(action_type="calc.wait"))  # held, pending
        await client.send_action_async(DomainAction(action_type="calc.add"), delay=600)
        await wait_for(lambda: worker.stats.failed == 1 and len(worker.held) >= 1)
        await wait_for(lambda: worker.stats.dead_lettered.get("non_retryable") == 1)

        async def written() -> bool:  # the outbox writes the dead letter and delay just after
            delayed = await redis.zcard(f"{worker.action_stream_name}:delayed:calc-group")
            return await redis.xlen(worker.dead_letter_stream_name) == 1 and delayed == 1

        await wait_for(written)

        result = await cli("status", "--json")
        assert result.exit_code == 0, result.output
        by_name = {s["name"]: s for s in json.loads(result.stdout)}
        assert set(by_name) == {"calc", "idle"}
        calc = by_name["calc"]
        assert calc["length"] == 3
        assert calc["dead_letters"] == 1
        assert calc["scheduled"] == 1
        [group] = calc["groups"]
        assert group["name"] == "calc-group"
        assert group["lag"] == 0
        assert group["pending"] == 2  # the failed one waiting, the one held
        assert group["delayed"] == 1
        assert group["oldest_pending_idle_ms"] >= 0
        assert group["oldest_pending_age_s"] >= 0
        [consumer] = group["consumers"]
        assert consumer["name"] == worker.consumer_name
        assert consumer["pending"] == 2
        [idle_group] = by_name["idle"]["groups"]
        assert (idle_group["lag"], idle_group["pending"], idle_group["consumers"]) == (3, 0, [])

        only = await cli("status", "--service", "idle", "--json")
        assert [s["name"] for s in json.loads(only.stdout)] == ["idle"]

        table = await cli("status", COLUMNS="160")
        assert table.exit_code == 0, table.output
        for text in ("calc-group", "idle-group", worker.consumer_name[:20], "Consumers"):
            assert text in table.stdout
        worker.release.set()
        await client.close()
    await idle.close()


async def test_status_watch_refreshes_then_stops_after_count(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    await redis.xgroup_create(
        f"{settings.queue_prefix}:dev:{{calc}}:actions", "calc-group", mkstream=True
    )
    result = await cli("status", "--watch", "--count", "2", "--interval", "0.1", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 2
    assert all(sample[0]["name"] == "calc" for sample in lines)


async def test_status_of_an_unknown_service_is_one_line_and_exit_1(cli: Invoke) -> None:
    result = await cli("status", "--service", "nosuch")
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: unknown service 'nosuch'")


async def test_status_with_nothing_there_says_so(cli: Invoke) -> None:
    result = await cli("status")
    assert result.exit_code == 0
    assert "no streams found" in result.stdout
    assert (await cli("status", "--json")).stdout.strip() == "[]"


def _start_watch(settings: CommonAppSettings) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "QUEUE_PREFIX": settings.queue_prefix,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "common", "status", "--watch", "--json", "--interval", "0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_status_watch_ends_with_exit_0_on_ctrl_c(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    await redis.xgroup_create(
        f"{settings.queue_prefix}:dev:{{calc}}:actions", "calc-group", mkstream=True
    )
    proc = _start_watch(settings)
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert json.loads(first)[0]["name"] == "calc"
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(proc.communicate, None, 30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
