"""The workload every scenario shares: actions, settings, the no-op worker, small helpers."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from common import BaseWorker, CommonAppSettings, DomainAction, QueueManager
from common.models.codec import ACTION_FIELD, encode_action

T = TypeVar("T")

SERVICE = "bench"
ACTION_TYPE = "bench.noop"
DATA_BYTES = 200  # JSON size of each action's ``data``
PRELOAD_CHUNK = 1000


def make_data(i: int) -> dict[str, Any]:
    """A ``data`` dict whose JSON is about :data:`DATA_BYTES` long."""
    data: dict[str, Any] = {"seq": i, "user": f"user-{i % 997}", "flags": [1, 2, 3], "note": ""}
    data["note"] = "x" * max(0, DATA_BYTES - len(orjson.dumps(data)))
    return data


def make_actions(n: int) -> list[DomainAction]:
    """``n`` actions as a caller would build them (no origin: the client stamps it)."""
    return [DomainAction(action_type=ACTION_TYPE, data=make_data(i)) for i in range(n)]


def encode_entries(actions: Sequence[DomainAction]) -> list[bytes]:
    """The stream field value of each action (what a worker reads)."""
    return [encode_action(a, 1 << 20)[ACTION_FIELD] for a in actions]


def as_plain(actions: Sequence[DomainAction]) -> list[dict[str, Any]]:
    """The same actions as plain JSON-ready dicts (what a raw redis-py sender holds)."""
    return [a.model_dump(mode="json") for a in actions]


def new_prefix() -> str:
    return "b" + uuid.uuid4().hex[:10]


def settings_for(url: str, prefix: str, **overrides: Any) -> CommonAppSettings:
    """Toolkit defaults, except the server, a private key prefix and the service name."""
    return CommonAppSettings(service_name=SERVICE, redis_url=url, queue_prefix=prefix, **overrides)


def action_stream(prefix: str) -> str:
    return QueueManager(prefix, "dev").action_stream(SERVICE)


def raw_stream(prefix: str) -> str:
    """The stream of the raw baselines (their own, next to the toolkit's)."""
    return f"{prefix}:raw:actions"


def raw_client(url: str) -> aioredis.Redis:
    """A plain redis-py client: hiredis parser (as for the toolkit), no socket timeout (as the
    toolkit's default ``redis_socket_timeout_s``; redis-py 8.1's own default of 5 s wraps every
    send in ``asyncio.wait_for``, which costs 10-25% on small commands), and room for 100
    callers in flight (redis-py's default pool refuses past 100 connections)."""
    return aioredis.Redis.from_url(url, max_connections=1024, socket_timeout=None)


async def preload(redis: aioredis.Redis, stream: str, entries: Sequence[bytes]) -> None:
    """XADD pre-encoded entries in pipelined chunks (not measured)."""
    await preload_partitions(redis, [stream], entries)


async def preload_partitions(
    redis: aioredis.Redis, streams: Sequence[str], entries: Sequence[bytes]
) -> None:
    """:func:`preload` spread round-robin over ``streams`` (a service's partitions)."""
    field = ACTION_FIELD.encode()
    for start in range(0, len(entries), PRELOAD_CHUNK):
        pipe = redis.pipeline(transaction=False)
        for i, raw in enumerate(entries[start : start + PRELOAD_CHUNK], start):
            pipe.xadd(streams[i % len(streams)], {field: raw})
        await pipe.execute()


class NoopWorker(BaseWorker):
    """The worker under test: one no-op handler that returns None."""

    async def _handle_bench_noop(self, action: DomainAction) -> None:
        return None


async def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.002
) -> None:
    """Poll a cheap in-process condition; raise if it stays false for ``timeout`` seconds."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"benchmark condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def timed(coro: Awaitable[T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = await coro
    return result, time.perf_counter() - start


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


def run_async(main: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    """Run ``main`` on asyncio's loop, or on uvloop's."""
    if use_uvloop:
        import uvloop

        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)
