"""Pseudo-sync calls queued behind a slow handler (issue 11, point 1).

A calling service sends ``calls`` pseudo-sync calls at once, each with a ``timeout`` (1.5 s),
to a service whose handler takes ``handler_s`` (20 ms); once all of them wait in the stream,
one worker starts with the toolkit's defaults (``worker_batch_size=100``,
``worker_concurrency=1``). The worker can serve about ``timeout / handler_s`` calls in time,
provided each reply leaves when its handler ends rather than when the read batch ends.

Figures, from when the calls were sent: the first reply the caller got, how many calls were
answered within the timeout (successful responses; a late one is counted apart), and when
the worker first settled (replied to and ACKed) an action, which is also known when no call
is answered in time. Runs on ``memory://`` or a Redis server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from bench.workload import action_stream, make_data, settings_for, wait_until
from common import BaseRedisClient, BaseWorker, DomainAction, RedisManager, WorkerPool

__all__ = ["SLOW_TYPE", "SlowWorker", "queued_calls"]

SLOW_TYPE = "bench.slow"
CALLER = "caller"


class SlowWorker(BaseWorker):
    """A handler that waits ``handler_s`` (asyncio, as I/O would) and answers."""

    handler_s: float = 0.02

    async def _handle_bench_slow(self, action: DomainAction) -> dict[str, Any]:
        await asyncio.sleep(self.handler_s)
        return {"seq": action.data.get("seq")}


def _settled(pool: WorkerPool[SlowWorker]) -> int:
    return sum(w.stats.acked for w in pool.workers)


async def queued_calls(
    url: str,
    prefix: str,
    calls: int = 100,
    handler_s: float = 0.02,
    timeout: float = 1.5,
    batch: int = 100,
) -> dict[str, Any]:
    """One run; times in ms from the moment the calls were sent."""
    SlowWorker.handler_s = handler_s
    settings = settings_for(url, prefix, worker_batch_size=batch, worker_concurrency=1)
    actions = [DomainAction(action_type=SLOW_TYPE, data=make_data(i)) for i in range(calls)]
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        client = BaseRedisClient(CALLER, redis, settings)
        start = time.perf_counter()

        async def call(action: DomainAction) -> float | str:
            try:
                response = await client.send_action_pseudo_sync(action, timeout=timeout)
            except Exception as exc:  # a timeout, counted by type
                return type(exc).__name__
            return time.perf_counter() - start if response.success else "error response"

        tasks = [asyncio.create_task(call(a)) for a in actions]
        stream = action_stream(prefix)
        deadline = time.perf_counter() + 10
        while await redis.xlen(stream) < calls:  # the backlog is in place
            if time.perf_counter() > deadline:
                raise TimeoutError("the calls did not reach the stream")
            await asyncio.sleep(0.002)
        queued = time.perf_counter() - start
        pool = WorkerPool(SlowWorker, settings, redis, num_workers=1)
        await pool.start()
        first_settled: float | None = None
        try:

            async def watch() -> None:
                nonlocal first_settled
                await wait_until(lambda: _settled(pool) > 0, timeout=timeout + 10)
                first_settled = time.perf_counter() - start

            watcher = asyncio.create_task(watch())
            results = await asyncio.gather(*tasks)
            await watcher  # bounded: the old engine settles its first batch after the callers
        finally:
            await pool.stop()
            await client.close()
    times = sorted(r for r in results if isinstance(r, float))
    in_time = [t for t in times if t <= timeout]
    return {
        "calls": calls,
        "answered": len(in_time),
        "answered_late": len(times) - len(in_time),  # a client that overran its timeout
        "first_reply_ms": times[0] * 1000 if times else None,
        "last_reply_ms": times[-1] * 1000 if times else None,
        "first_settled_ms": None if first_settled is None else first_settled * 1000,
        "queued_ms": queued * 1000,
        "unanswered": dict(Counter(r for r in results if isinstance(r, str))),
    }
