"""Stream status: length, per-group lag and pending work, consumers, dead letters, delays.

One :class:`StreamStatus` per stream (each partition of a service or a topic is a stream of
its own, with its ``partition``), read in two pipelined round trips (the stream, then its
groups); plain data, JSON-ready by :meth:`StreamStatus.as_dict`, shown by ``common status``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common.clients.queue_manager import QueueManager
from common.ops.streams import StreamRef, streams_to_report
from common.workers.delays import delay_set_key

__all__ = [
    "ConsumerStatus",
    "GroupStatus",
    "StreamStatus",
    "collect_status",
    "stream_status",
]


@dataclass(slots=True)
class ConsumerStatus:
    name: str
    pending: int  # entries delivered to it and not yet ACKed
    idle_ms: int  # since its last read or claim


@dataclass(slots=True)
class GroupStatus:
    name: str
    pending: int  # delivered, not yet ACKed (running, failed and waiting for a retry, stuck)
    lag: int | None  # entries not yet delivered to the group (None: Redis cannot tell)
    last_delivered_id: str
    delayed: int  # failed entries waiting in the group's delay set for their retry
    oldest_pending_id: str | None = None
    oldest_pending_idle_ms: int | None = None  # since that entry was last delivered
    oldest_pending_age_s: float | None = None  # since that entry was added to the stream
    consumers: list[ConsumerStatus] = field(default_factory=list)
    dead_letter_stream: str | None = None  # a topic's group: its own dead-letter stream
    dead_letters: int | None = None  # ... and its size (None: the stream's are shared)


@dataclass(slots=True)
class StreamStatus:
    kind: str
    name: str
    stream: str
    length: int
    dead_letter_stream: str
    dead_letters: int
    scheduled: int  # delayed sends waiting to be put on the stream
    groups: list[GroupStatus] = field(default_factory=list)
    partition: int = 0  # the partition (``stream_partitions``, ``topic_partitions``)

    @property
    def pending(self) -> int:
        return sum(g.pending for g in self.groups)

    @property
    def lag(self) -> int | None:
        lags = [g.lag for g in self.groups]
        if not lags or any(lag is None for lag in lags):
            return None
        return max(lag for lag in lags if lag is not None)

    @property
    def delayed(self) -> int:
        return sum(g.delayed for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: keys and values are plain ``str``, ``int``, ``float``, ``None``, lists."""
        return asdict(self)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _age_s(entry_id: str, now_ms: int) -> float:
    return max(now_ms - int(entry_id.split("-", 1)[0]), 0) / 1000


async def stream_status(
    redis: aioredis.Redis, ref: StreamRef, now_ms: int | None = None
) -> StreamStatus:
    """The status of one stream (a stream that does not exist reads as empty)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(ref.stream)
    pipe.xinfo_groups(ref.stream)
    pipe.zcard(ref.scheduled_key)
    if ref.dead_letter_stream:  # a topic has none of its own: its groups' are counted below
        pipe.xlen(ref.dead_letter_stream)
    length, groups_info, scheduled, *dead_reply = await pipe.execute(raise_on_error=False)
    dead = dead_reply[0] if dead_reply else 0
    for reply in (length, dead, scheduled):
        if isinstance(reply, Exception):
            raise reply
    if isinstance(groups_info, ResponseError) and "no such key" in str(groups_info).lower():
        groups_info = []
    elif isinstance(groups_info, Exception):
        raise groups_info
    status = StreamStatus(
        ref.kind,
        ref.name,
        ref.stream,
        int(length),
        ref.dead_letter_stream,
        int(dead),
        int(scheduled),
        partition=ref.partition,
    )
    if not groups_info:
        return status
    names = [_text(g["name"]) for g in groups_info]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.xinfo_consumers(ref.stream, name)
        pipe.xpending_range(ref.stream, name, min="-", max="+", count=1)
        pipe.zcard(delay_set_key(ref.stream, name))
        group_dead = ref.group_dead_letter_stream(name)
        if group_dead is not None:
            pipe.xlen(group_dead)
    replies = await pipe.execute()
    per = 4 if ref.dead_letter_prefix else 3
    for i, (name, info) in enumerate(zip(names, groups_info, strict=True)):
        consumers, oldest, delayed, *group_dead_count = replies[per * i : per * i + per]
        group = GroupStatus(
            name=name,
            pending=int(info["pending"]),
            lag=_int(info.get("lag")),
            last_delivered_id=_text(info["last-delivered-id"]),
            delayed=int(delayed),
            consumers=[
                ConsumerStatus(_text(c["name"]), int(c["pending"]), int(c["idle"]))
                for c in consumers
            ],
        )
        group_dead = ref.group_dead_letter_stream(name)
        if group_dead is not None:
            group.dead_letter_stream = group_dead
            group.dead_letters = int(group_dead_count[0])
            status.dead_letters += group.dead_letters
        if oldest:
            entry_id = _text(oldest[0]["message_id"])
            group.oldest_pending_id = entry_id
            group.oldest_pending_idle_ms = int(oldest[0]["time_since_delivered"])
            group.oldest_pending_age_s = _age_s(entry_id, now_ms)
        status.groups.append(group)
    return status


async def collect_status(
    redis: aioredis.Redis,
    queues: QueueManager,
    name: str | None = None,
    refs: list[StreamRef] | None = None,
) -> list[StreamStatus]:
    """The status of every stream to report (or those named ``name``, or ``refs``)."""
    if refs is None:
        refs = await streams_to_report(redis, queues, name)
    now_ms = int(time.time() * 1000)
    return [await stream_status(redis, ref, now_ms) for ref in refs]
