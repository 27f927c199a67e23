"""The delay set: durable retry schedules, kept in Redis per stream and group.

A failed entry stays pending in its group (so it is never trimmed, and Redis goes on counting
its deliveries), and its due time goes into a sorted set of entry ids, the group's *delay set*,
``<stream>:delayed:<group>`` (same hash tag as the stream: legal in one script on a cluster).
The consumer that failed it stops renewing its lease: from then on the delay set, not a lease,
keeps everybody off it until it is due:

- the reclaimer's scan for abandoned entries (idle longer than the visibility timeout) skips
  every entry in the delay set, however long it has been idle;
- when it is due, whoever asks first (the consumer that failed it, which remembers the due time,
  or any reclaimer, which reads the due ids from the set) takes it with one script that removes
  it from the set and claims it in one step: exactly one of them gets it, and the claim counts a
  delivery, so the attempt number is Redis's delivery count and survives any crash.

So a delay longer than the visibility timeout is honoured even when the consumer that failed
the entry dies, a crash never shortens or forgets a backoff, and leases only protect entries
whose handlers run. ``reject(requeue=True, delay=...)`` and ``RetryLaterError`` use the same
schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

__all__ = ["ScheduleRetry", "claim_due", "claim_idle", "delay_set_key", "due_ids"]


def delay_set_key(stream: str, group: str) -> str:
    """The delay set of ``group`` on ``stream`` (it shares the stream's hash tag)."""
    return f"{stream}:delayed:{group}"


@dataclass(frozen=True, slots=True)
class ScheduleRetry:
    """ZADD an entry's due time (epoch ms) to its group's delay set."""

    key: str
    entry_id: bytes
    due_ms: int

    def apply(self, pipe: Pipeline) -> None:
        pipe.zadd(self.key, {self.entry_id: self.due_ms})


# KEYS[1] stream, KEYS[2] delay set; ARGV: group, consumer, now ms, then entry ids. For each id
# that is in the set and due: remove it and claim it (a counted delivery). Returns per id:
# {delivery count, field, value, ...}, {0} (not scheduled, or not due: someone else took it),
# or {-1} (deleted from the stream meanwhile: there is nothing to run).
_CLAIM_DUE = """
local out = {}
local now = tonumber(ARGV[3])
for i = 4, #ARGV do
  local id = ARGV[i]
  local due = redis.call('ZSCORE', KEYS[2], id)
  if not due or tonumber(due) > now then
    out[#out + 1] = {0}
  else
    redis.call('ZREM', KEYS[2], id)
    if #redis.call('XRANGE', KEYS[1], id, id) == 0 then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      out[#out + 1] = {-1}
    else
      local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
      local info = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      local row = {info[1][4]}
      for _, v in ipairs(got[1][2]) do row[#row + 1] = v end
      out[#out + 1] = row
    end
  end
end
return out
"""

# KEYS[1] stream, KEYS[2] delay set; ARGV: group, consumer, min idle ms, then entry ids. Claims
# each abandoned entry (idle at least min idle) that is not waiting in the delay set. Returns per
# id: {delivery count, field, value, ...}, {0} (scheduled, or not idle enough: leave it), or {-1}
# (deleted from the stream while pending: ACKed, there is nothing to run).
_CLAIM_IDLE = """
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[2], id) then
    out[#out + 1] = {0}
  elseif #redis.call('XRANGE', KEYS[1], id, id) == 0 then
    redis.call('XACK', KEYS[1], ARGV[1], id)
    out[#out + 1] = {-1}
  else
    local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
    if #got == 0 then
      out[#out + 1] = {0}
    else
      local info = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
      local row = {info[1][4]}
      for _, v in ipairs(got[1][2]) do row[#row + 1] = v end
      out[#out + 1] = row
    end
  end
end
return out
"""

Claimed = dict[bytes, tuple[int, dict[bytes, bytes]] | None]
"""Per entry id: (delivery count, fields) if claimed, None if deleted from the stream."""


def _parse(ids: Sequence[bytes], rows: list[list[object]]) -> Claimed:
    claimed: Claimed = {}
    for entry_id, row in zip(ids, rows, strict=True):
        head = row[0]
        assert isinstance(head, int)
        if head == 0:
            continue
        if head < 0:
            claimed[entry_id] = None
            continue
        flat = row[1:]
        fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
        claimed[entry_id] = (head, fields)  # type: ignore[assignment]
    return claimed


async def claim_due(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    consumer: str,
    entry_ids: Sequence[bytes],
    now_ms: int,
) -> Claimed:
    """Take the due entries of ``entry_ids`` off the delay set and claim them for ``consumer``."""
    if not entry_ids:
        return {}
    rows = await redis.eval(
        _CLAIM_DUE, 2, stream, delay_set_key(stream, group), group, consumer, now_ms, *entry_ids
    )
    return _parse(entry_ids, rows)


async def claim_idle(
    redis: aioredis.Redis,
    stream: str,
    group: str,
    consumer: str,
    entry_ids: Sequence[bytes],
    min_idle_ms: int,
) -> Claimed:
    """Claim for ``consumer`` the abandoned entries of ``entry_ids`` (not the scheduled ones)."""
    if not entry_ids:
        return {}
    key = delay_set_key(stream, group)
    rows = await redis.eval(_CLAIM_IDLE, 2, stream, key, group, consumer, min_idle_ms, *entry_ids)
    return _parse(entry_ids, rows)


async def due_ids(
    redis: aioredis.Redis, stream: str, group: str, now_ms: int, count: int = 100
) -> list[bytes]:
    """Up to ``count`` entry ids of the delay set that are due at ``now_ms``."""
    ids = await redis.zrangebyscore(
        delay_set_key(stream, group), "-inf", now_ms, start=0, num=count
    )
    return [i if isinstance(i, bytes) else str(i).encode() for i in ids]
