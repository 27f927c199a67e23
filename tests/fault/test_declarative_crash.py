"""A SIGKILLed declarative worker loses nothing: another consumer of its group reclaims what it
held once idle past the visibility timeout, and every message is handled."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.messaging import run_workers, worker
from common.messaging.producer import Producer
from common.testing import RedisServer, unique_settings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


async def test_messages_of_a_sigkilled_declarative_worker_are_reclaimed(
    redis_server: RedisServer,
) -> None:
    settings = unique_settings(
        redis_url=redis_server.url,
        service_name="crashy",
        visibility_timeout_s=1.0,
        claim_interval_s=0.2,
    )
    prefix = settings.queue_prefix
    redis = aioredis.Redis.from_url(redis_server.url)
    producer = Producer(settings)
    n = 200
    for i in range(n):
        await producer.send("work.items", {"id": str(i)})
    proc = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "tests.fault.declarative_proc",
            "--url",
            redis_server.url,
            "--prefix",
            prefix,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    handled: list[str] = []
    try:
        # Kill it mid-run: some handled, some held (read and running, or settled unflushed).
        await wait_for(lambda: _runs(redis, prefix, 20), timeout=20)
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)
        stream = QueueManager(prefix, settings.environment).topic_stream("work.items")
        held = await redis.xpending_range(stream, "crash-group", "-", "+", 1000)
        held_ids = {
            orjson.loads(fields[b"event"])["data"]["id"]
            for row in held
            for _, fields in await redis.xrange(stream, row["message_id"], row["message_id"])
        }
        assert held_ids, "the killed worker held nothing: kill it earlier"

        @worker(topic="work.items", group_id="crash-group", concurrency=4)
        async def survivor(item: dict[str, Any]) -> None:
            handled.append(item["id"])

        runs_before = {r.decode() for r in await redis.lrange(f"{prefix}:runs", 0, -1)}
        async with run_workers(survivor, settings=settings) as pool:
            await wait_for(
                lambda: runs_before | set(handled) >= {str(i) for i in range(n)}, timeout=20
            )
            await wait_for(lambda: _no_pending(redis, stream), timeout=10)
            reclaimed = sum(c.stats.reclaimed for c in pool.subscribers(survivor))
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
        await producer.close()
        await redis.aclose()
    assert reclaimed >= len(held_ids)  # what the killed consumer held came back, reclaimed
    assert held_ids <= set(handled)  # and ran again (its ACK had never been written)
    # At least once: every message handled; a duplicate only for what was in flight when killed.
    assert len(set(handled)) == len(handled)


async def _runs(redis: aioredis.Redis, prefix: str, n: int) -> bool:
    return int(await redis.llen(f"{prefix}:runs")) >= n


async def _no_pending(redis: aioredis.Redis, stream: str) -> bool:
    return int((await redis.xpending(stream, "crash-group"))["pending"]) == 0
