"""Stream hygiene: bounded streams that never lose pending work, and no piles of dead consumers.

Trimming is by MINID, never below the oldest entry any group still needs (its oldest pending
entry, or the first it has not been delivered yet): entries are only dropped once every group
is done with them. A consumer is removed from its group once it has been idle longer than
``consumer_idle_timeout_s`` *and* holds no pending entries (the reclaimer takes those first).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import redis.asyncio as aioredis

from common.config import CommonAppSettings

__all__ = ["safe_trim_id", "tidy_stream"]

logger = logging.getLogger("common.workers")


def _parse_id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_id(redis: aioredis.Redis, stream: str) -> str | None:
    """The lowest id still needed by some group, or None if no group exists."""
    groups = await redis.xinfo_groups(stream)
    if not groups:
        return None
    floor: tuple[int, int] | None = None
    for group in groups:
        name = group["name"]
        last = _parse_id(group["last-delivered-id"])
        needed = (last[0], last[1] + 1)  # the first entry not yet delivered to this group
        if group["pending"]:
            summary = await redis.xpending(stream, name)
            needed = min(needed, _parse_id(summary["min"]))
        floor = needed if floor is None else min(floor, needed)
    assert floor is not None
    return f"{floor[0]}-{floor[1]}"


async def tidy_stream(
    redis: aioredis.Redis,
    settings: CommonAppSettings,
    stream: str,
    keep_consumers: Collection[str] = (),
) -> tuple[int, int]:
    """Trim past ``stream_maxlen``, drop dead consumers; returns (trimmed, removed)."""
    trimmed = 0
    if settings.stream_maxlen and await redis.xlen(stream) > settings.stream_maxlen:
        floor = await safe_trim_id(redis, stream)
        if floor is not None:
            trimmed = await redis.xtrim(stream, minid=floor, approximate=True)
            if trimmed:
                logger.info(
                    "trimmed %d consumed entries from %s (below %s)", trimmed, stream, floor
                )
    removed = 0
    idle_ms = settings.consumer_idle_timeout_s * 1000
    for group in await redis.xinfo_groups(stream):
        name = group["name"]
        for consumer in await redis.xinfo_consumers(stream, name):
            cname = consumer["name"]
            text = cname.decode() if isinstance(cname, bytes) else cname
            if text in keep_consumers or consumer["pending"] or consumer["idle"] < idle_ms:
                continue
            await redis.xgroup_delconsumer(stream, name, cname)
            removed += 1
            logger.info("removed consumer %s from %s (idle, nothing pending)", text, stream)
    return trimmed, removed
