"""The embedded ``memory://`` mode, as a test suite uses it: everything in one process.

Three figures, each on a fresh embedded server: sequential pseudo-sync latency (a pool of
workers and a calling service with its own connection pool), the time a pool takes to drain
pre-loaded actions, and the CPU an idle pool uses while it waits for work.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bench import ours
from bench.workload import NoopWorker, encode_entries, make_actions, new_prefix, settings_for
from common import WorkerPool

__all__ = ["drain_rate", "idle_cpu", "memory_url", "pseudo_sync_latencies"]


def memory_url() -> str:
    return f"memory://bench-{uuid.uuid4().hex[:10]}"


async def pseudo_sync_latencies(calls: int, warmup: int, workers: int) -> list[float]:
    """Latencies (s) of sequential pseudo-sync calls after ``warmup`` ones."""
    url, prefix = memory_url(), new_prefix()
    actions = make_actions(warmup + calls)
    async with (
        WorkerPool(NoopWorker, settings_for(url, prefix), num_workers=workers),
        ours.caller(url, prefix) as client,
    ):
        await ours.sequential_calls(client, actions[:warmup])
        return await ours.sequential_calls(client, actions[warmup:])


async def drain_rate(count: int, workers: int) -> float:
    """Throughput (actions/s) of a pool of ``workers`` handling ``count`` pre-loaded actions."""
    entries = encode_entries(make_actions(count))
    return await ours.drain(memory_url(), new_prefix(), entries, workers)


async def idle_cpu(seconds: float, workers: int) -> dict[str, Any]:
    """CPU (ms) this process uses while a started pool waits ``seconds`` for work."""
    settings = settings_for(memory_url(), new_prefix())
    async with WorkerPool(NoopWorker, settings, num_workers=workers):
        await asyncio.sleep(0.1)  # settle after start-up
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        used, elapsed = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_ms": used * 1000, "wall_ms": elapsed * 1000}
