"""Stream hygiene: bounded streams that never lose pending work, and no piles of dead consumers.

Trimming is by MINID, never below the oldest entry any group still needs (its oldest pending
entry, or the first it has not been delivered yet): entries are only dropped once every group
is done with them. A consumer is removed from its group once it has been idle longer than
``consumer_idle_timeout_s`` *and* holds no pending entries (the reclaimer takes those first).

The check and the removal are one script: XGROUP DELCONSUMER destroys the pending entries of
the consumer it removes, so a consumer that read something between a separate check and the
removal would lose that entry for good. (The embedded server runs the same scripts.)
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import redis.asyncio as aioredis

from common.config import CommonAppSettings

__all__ = ["TRIM_LIMIT", "remove_consumer_if_empty", "safe_trim_id", "tidy_stream", "trim_stream"]

logger = logging.getLogger(__name__)

TRIM_LIMIT = 100_000
"""Entries one XTRIM call may remove. Approximate trimming without LIMIT stops at 100 nodes
(100 x stream-node-max-entries, ~10,000 entries: measured 9,994 in 0.6 ms on Redis 7.0); with
this limit one call removed 99,997 entries in 4.3 ms. :func:`trim_stream` repeats it while a
call hits the limit, so that a backlog of consumed entries of any size goes in one pass."""
_TRIM_ROUNDS = 20  # at most ~2M entries per trim_stream call; the next call goes on

# KEYS[1] stream; ARGV: group, consumer, idle ms. Removes the consumer only if it holds no
# pending entry and has been idle at least that long; returns 1 if it did.
_REMOVE_IF_DONE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #consumer, 2 do fields[consumer[i]] = consumer[i + 1] end
  if fields['name'] == ARGV[2] then
    if fields['idle'] < tonumber(ARGV[3]) then return 0 end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 1
  end
end
return 0
"""

# KEYS[1] stream; ARGV: group, consumer. Removes the consumer only if it holds no pending
# entry, however recently it was active (a consumer handing back at shutdown); 1 if it did.
_REMOVE_IF_EMPTY = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) >= 0 and 1 or 0
"""


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
            if summary["min"] is not None:  # all ACKed since XINFO answered: nothing pending
                needed = min(needed, _parse_id(summary["min"]))
        floor = needed if floor is None else min(floor, needed)
    assert floor is not None
    return f"{floor[0]}-{floor[1]}"


async def trim_stream(
    redis: aioredis.Redis, settings: CommonAppSettings, stream: str, *, length: int | None = None
) -> int:
    """If ``stream`` is longer than ``stream_maxlen``, drop every entry that all its groups are
    done with (below :func:`safe_trim_id`), approximately (whole nodes: up to one node of
    consumed entries may stay); returns how many were dropped. Costs one XLEN when under
    (none if the caller just measured the ``length``)."""
    maxlen = settings.stream_maxlen
    if length is None and maxlen:
        length = int(await redis.xlen(stream))
    if not maxlen or length is None or length <= maxlen:
        return 0
    floor = await safe_trim_id(redis, stream)
    if floor is None:
        return 0
    trimmed = 0
    for _ in range(_TRIM_ROUNDS):
        removed = int(await redis.xtrim(stream, minid=floor, approximate=True, limit=TRIM_LIMIT))
        trimmed += removed
        if removed < TRIM_LIMIT:
            break
    if trimmed:
        logger.info("trimmed %d consumed entries from %s (below %s)", trimmed, stream, floor)
    return trimmed


async def tidy_stream(
    redis: aioredis.Redis,
    settings: CommonAppSettings,
    stream: str,
    keep_consumers: Collection[str] = (),
) -> tuple[int, int]:
    """Trim past ``stream_maxlen``, drop dead consumers; returns (trimmed, removed)."""
    trimmed = await trim_stream(redis, settings, stream)
    removed = 0
    idle_ms = int(settings.consumer_idle_timeout_s * 1000)
    for group in await redis.xinfo_groups(stream):
        name = group["name"]
        for consumer in await redis.xinfo_consumers(stream, name):
            cname = consumer["name"]
            text = cname.decode() if isinstance(cname, bytes) else cname
            if text in keep_consumers or consumer["pending"] or consumer["idle"] < idle_ms:
                continue
            if await _remove_if_done(redis, stream, name, cname, idle_ms):
                removed += 1
                logger.info("removed consumer %s from %s (idle, nothing pending)", text, stream)
    return trimmed, removed


async def remove_consumer_if_empty(
    redis: aioredis.Redis, stream: str, group: str | bytes, consumer: str | bytes
) -> bool:
    """Remove ``consumer`` from ``group`` if it holds no pending entry, in one step: an entry
    claimed for it (by a reclaimer) just before is never destroyed with it. True if removed."""
    return await _remove_if_done(redis, stream, group, consumer, None)


async def _remove_if_done(
    redis: aioredis.Redis,
    stream: str,
    group: str | bytes,
    consumer: str | bytes,
    idle_ms: int | None,
) -> bool:
    if idle_ms is None:
        done = await redis.eval(_REMOVE_IF_EMPTY, 1, stream, group, consumer)
    else:
        done = await redis.eval(_REMOVE_IF_DONE, 1, stream, group, consumer, idle_ms)
    return bool(done)
