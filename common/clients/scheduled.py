"""Delayed sends: actions that stay invisible to workers until they are due.

``send_action_async(action, delay=...)`` (or ``not_before=``) does not append the action to
its stream yet: it adds the encoded action to the stream's *scheduled set*,
``<stream>:scheduled`` (a sorted set by due time in epoch milliseconds, with the stream's hash
tag). The consuming service's reclaimer moves due actions onto the stream with one script per
batch (``XADD`` then ``ZREM``, each action in turn: a refused XADD, e.g. under OOM, leaves that
action scheduled, never lost), so they are read like any other entry, by every group of that
stream. Being durable in Redis, a schedule survives restarts of both sides; an action is
delivered at most a poll period (a quarter of a second) after it is due, while the consuming
service runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from common.clients.replication import Replication
from common.models.codec import ACTION_FIELD

__all__ = ["due_ms", "move_due", "next_due_ms", "schedule", "scheduled_key"]

# KEYS[1] scheduled set, KEYS[2] stream; ARGV: now ms, limit, field name. Moves up to limit due
# members onto the stream, in due order; returns how many it moved.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', ARGV[3], member)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""


def scheduled_key(stream: str) -> str:
    """The scheduled set of ``stream`` (it shares the stream's hash tag)."""
    return f"{stream}:scheduled"


async def schedule(
    redis: aioredis.Redis,
    stream: str,
    payload: bytes,
    due_ms: int,
    replication: Replication | None = None,
) -> None:
    """Schedule the encoded action ``payload`` for ``stream`` at ``due_ms``; with
    ``replication``, confirmed by the replicas (WAIT) or :class:`ReplicationError`."""
    key = scheduled_key(stream)
    if replication is None:
        await redis.zadd(key, {payload: due_ms})
        return
    _, error = await replication.write(redis, key, lambda pipe: pipe.zadd(key, {payload: due_ms}))
    if error is not None:
        raise error


async def next_due_ms(redis: aioredis.Redis, stream: str) -> int | None:
    """When the earliest scheduled action of ``stream`` is due (epoch ms), if any."""
    first = await redis.zrange(scheduled_key(stream), 0, 0, withscores=True)
    return int(first[0][1]) if first else None


async def move_due(redis: aioredis.Redis, stream: str, now_ms: int, limit: int = 500) -> int:
    """Move the actions of ``stream`` due at ``now_ms`` onto it; returns how many moved."""
    total = 0
    while True:
        key = scheduled_key(stream)
        moved = int(await redis.eval(_MOVE_DUE, 2, key, stream, now_ms, limit, ACTION_FIELD))
        total += moved
        if moved < limit:
            return total


def due_ms(delay: float | None, not_before: datetime | None) -> int:
    """The due time (epoch ms) of a delayed send; refuses nonsense before anything is sent."""
    if delay is not None and not_before is not None:
        raise ValueError("give delay or not_before, not both")
    if not_before is not None:
        if not_before.tzinfo is None:
            raise ValueError("not_before must be an aware datetime (with a time zone)")
        return int(not_before.timestamp() * 1000)
    assert delay is not None
    if not delay >= 0:  # also refuses NaN
        raise ValueError("delay must be >= 0 seconds")
    return int((datetime.now(UTC).timestamp() + delay) * 1000)
