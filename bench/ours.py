"""The toolkit on the benchmark workload: WorkerPool, BaseRedisClient, as a service uses them.

Settings are the toolkit's defaults (batch 100, concurrency 1, ...) apart from the server, a
private key prefix and the number of workers asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from bench.workload import NoopWorker, action_stream, preload, settings_for, wait_until
from common import BaseRedisClient, DomainAction, RedisManager, WorkerPool

CALLER = "caller"


def _acked(pool: WorkerPool[NoopWorker]) -> int:
    return sum(w.stats.acked for w in pool.workers)


async def drain(url: str, prefix: str, entries: Sequence[bytes], workers: int) -> float:
    """Throughput (entries/s) of one pool of ``workers`` draining pre-loaded entries."""
    settings = settings_for(url, prefix)
    n = len(entries)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await preload(redis, action_stream(prefix), entries)
        pool = WorkerPool(NoopWorker, settings, redis, num_workers=workers)
        start = time.perf_counter()
        await pool.start()
        try:
            await wait_until(lambda: _acked(pool) >= n, timeout=300)
            return n / (time.perf_counter() - start)
        finally:
            await pool.stop()


async def _send_in_chunks(
    client: BaseRedisClient, actions: Sequence[DomainAction], chunk: int
) -> None:
    for i in range(0, len(actions), chunk):
        await client.send_actions_async(actions[i : i + chunk])


async def end_to_end(
    url: str, prefix: str, actions: Sequence[DomainAction], chunk: int, workers: int = 1
) -> float:
    """Throughput with a producer (``send_actions_async`` in chunks) and a pool at once."""
    settings = settings_for(url, prefix)
    n = len(actions)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        client = BaseRedisClient(CALLER, redis, settings)
        async with WorkerPool(NoopWorker, settings, redis, num_workers=workers) as pool:
            start = time.perf_counter()
            await _send_in_chunks(client, actions, chunk)
            await wait_until(lambda: _acked(pool) >= n, timeout=300)
            elapsed = time.perf_counter() - start
        await client.close()
    return n / elapsed


async def send_awaited(url: str, prefix: str, actions: Sequence[DomainAction]) -> float:
    """Throughput of ``send_action_async`` awaited one at a time."""
    settings = settings_for(url, prefix)
    async with RedisManager(settings) as manager:
        client = BaseRedisClient(CALLER, manager.get_client(), settings)
        start = time.perf_counter()
        for action in actions:
            await client.send_action_async(action)
        elapsed = time.perf_counter() - start
        await client.close()
    return len(actions) / elapsed


async def send_batched(url: str, prefix: str, actions: Sequence[DomainAction], chunk: int) -> float:
    """Throughput of ``send_actions_async`` with ``chunk`` actions per call."""
    settings = settings_for(url, prefix)
    async with RedisManager(settings) as manager:
        client = BaseRedisClient(CALLER, manager.get_client(), settings)
        start = time.perf_counter()
        await _send_in_chunks(client, actions, chunk)
        elapsed = time.perf_counter() - start
        await client.close()
    return len(actions) / elapsed


@contextlib.asynccontextmanager
async def caller(url: str, prefix: str) -> AsyncIterator[BaseRedisClient]:
    """A client as a calling service holds it (its own pool and reply listener)."""
    settings = settings_for(url, prefix)
    async with RedisManager(settings) as manager:
        client = BaseRedisClient(CALLER, manager.get_client(), settings)
        try:
            yield client
        finally:
            await client.close()


async def sequential_calls(client: BaseRedisClient, actions: Sequence[DomainAction]) -> list[float]:
    """Latencies (s) of ``send_action_pseudo_sync`` awaited one after another."""
    latencies = []
    for action in actions:
        start = time.perf_counter()
        await client.send_action_pseudo_sync(action, timeout=10)
        latencies.append(time.perf_counter() - start)
    return latencies


async def pseudo_sync_sequential(
    url: str, prefix: str, actions: Sequence[DomainAction], warmup: int
) -> list[float]:
    """Latencies (s) of sequential calls, without the first ``warmup``."""
    async with caller(url, prefix) as client:
        return (await sequential_calls(client, actions))[warmup:]


async def pseudo_sync_in_flight(
    url: str, prefix: str, actions: Sequence[DomainAction], in_flight: int
) -> float:
    """Calls/s with ``in_flight`` callers sharing one client (one reply listener)."""
    settings = settings_for(url, prefix)
    pending = iter(actions)
    async with RedisManager(settings) as manager:
        client = BaseRedisClient(CALLER, manager.get_client(), settings)

        async def one_caller() -> None:
            for action in pending:
                await client.send_action_pseudo_sync(action, timeout=10)

        try:
            start = time.perf_counter()
            await asyncio.gather(*(one_caller() for _ in range(in_flight)))
            elapsed = time.perf_counter() - start
        finally:
            await client.close()
    return len(actions) / elapsed
