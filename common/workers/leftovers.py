"""Leftover partitions: streams beyond the configured partition count that still hold work.

When the partition count P of a service (``stream_partitions``) or of a topic
(``topic_partitions``) is lowered, or a sender used a larger P than the consumer, partitions
``P ..`` may still hold entries. A consumer asks, at start, which of those exist and hold work
for its group (:func:`streams_with_work`) and reads them too, until it stops, so nothing they
hold is lost (the drain rule of the README's "Scaling out").
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from common.clients.redis_manager import is_cluster
from common.clients.scheduled import scheduled_key
from common.workers.delays import delay_set_key

__all__ = ["holds_work", "streams_with_work"]


async def holds_work(redis: aioredis.Redis, stream: str, group: str) -> bool:
    """Whether ``stream`` has entries ``group`` has not read or not ACKed, retries waiting in
    its delay set, or scheduled sends."""
    pipe = redis.pipeline(transaction=False)
    pipe.xinfo_groups(stream)
    pipe.xlen(stream)
    pipe.zcard(delay_set_key(stream, group))
    pipe.zcard(scheduled_key(stream))
    groups, length, delayed, scheduled = await pipe.execute()
    if delayed or scheduled:
        return True
    for info in groups:
        name = info.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == group:
            lag = info.get("lag")
            return bool(info.get("pending")) or lag is None or lag > 0
    return bool(length)  # written by a sender before any consumer of the group made it


async def streams_with_work(
    redis: aioredis.Redis, group: str, candidates: Mapping[str, str]
) -> dict[str, str]:
    """Those of ``candidates`` (stream -> its dead-letter stream) that exist and hold work
    for ``group``. On one server, one EXISTS of them all (the usual answer: none); else, or
    when some exist, one pipelined EXISTS each, and only the few that exist are looked into."""
    if not candidates:
        return {}
    if not is_cluster(redis) and not await redis.exists(*candidates):
        return {}
    pipe = redis.pipeline(transaction=False)
    for stream in candidates:
        pipe.exists(stream)
    found = await pipe.execute()
    return {
        stream: dead_letters
        for (stream, dead_letters), exists in zip(candidates.items(), found, strict=True)
        if exists and await holds_work(redis, stream, group)
    }
