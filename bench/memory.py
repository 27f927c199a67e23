"""Memory: the RSS of a worker process while it settles many actions.

The worker pool runs in its own process (``bench.serve memory``), which samples its own RSS as
its settled count grows. This process feeds it: pipelined XADDs of a cycle of pre-encoded
actions, with the backlog bounded and the consumed part of the stream trimmed, so that neither
side's memory depends on how far ahead the producer is.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from bench.serve import Served
from bench.workload import (
    PRELOAD_CHUNK,
    action_stream,
    encode_entries,
    make_actions,
    new_prefix,
    raw_client,
)

BACKLOG = 20_000  # entries added but not yet read by the group
DISTINCT = 5_000  # distinct encoded actions, sent in a cycle


def _id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


async def _trim_consumed(redis: Any, stream: str) -> None:
    """XTRIM MINID below what the group still needs (its oldest pending, or next unread)."""
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return
    floor = groups[0]["last-delivered-id"]
    oldest = (await redis.xpending(stream, groups[0]["name"]))["min"]
    if oldest is not None and _id(oldest) < _id(floor):
        floor = oldest
    await redis.xtrim(stream, minid=floor, approximate=True)


async def _entries_read(redis: Any, stream: str) -> int:
    groups = await redis.xinfo_groups(stream)
    return int(groups[0]["entries-read"] or 0) if groups else 0


async def measure(url: str, count: int, workers: int, uvloop: bool) -> dict[str, Any]:
    """Feed ``count`` actions to a worker process; return its RSS samples (MiB)."""
    prefix = new_prefix()
    stream = action_stream(prefix)
    entries = itertools.cycle(encode_entries(make_actions(min(count, DISTINCT))))
    redis = raw_client(url)
    start = time.perf_counter()
    try:
        options = {"workers": workers, "count": count}
        async with Served("memory", url, prefix, uvloop=uvloop, **options) as child:
            sent = 0
            while sent < count:
                if sent - await _entries_read(redis, stream) > BACKLOG:
                    await asyncio.sleep(0.01)
                    continue
                size = min(PRELOAD_CHUNK, count - sent)
                pipe = redis.pipeline(transaction=False)
                for raw in itertools.islice(entries, size):
                    pipe.xadd(stream, {b"action": raw})
                await pipe.execute()
                sent += size
                if sent % (20 * PRELOAD_CHUNK) == 0:
                    await _trim_consumed(redis, stream)
            done = await child.read_event(timeout=max(120.0, count / 1000))
    finally:
        await redis.aclose()
    samples = [(int(n), float(mb)) for n, mb in done["samples"]]
    first, last = samples[0][1], samples[-1][1]
    return {
        "count": done["count"],
        "workers": workers,
        "idle_mb": done["idle_mb"],
        "start_mb": first,  # after the first 1/len(samples) of the actions
        "end_mb": last,
        "peak_mb": max(mb for _, mb in samples),
        "growth_mb": last - first,
        "end_over_start": last / first,
        "throughput": done["count"] / done["seconds"],
        "wall_s": time.perf_counter() - start,
        "samples": samples,
    }
