"""The XADDs of a send in one round trip: the commands, a single send waiting for the next
coalesced pipeline (:class:`QueuedSend`), and :func:`send_xadds` (one pipeline; on a cluster
one per master; with ``redis_wait_replicas`` > 0 the WAITs after them)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from common.clients.cluster_client import WaitingRedisCluster
from common.clients.cluster_send import Command, send_by_node
from common.clients.replication import Replication
from common.errors import ReplicationError, SendTimeoutError

__all__ = ["Command", "QueuedSend", "entry_id_text", "not_confirmed", "send_xadds", "xadd_command"]


class QueuedSend:
    """A single send waiting for the next coalesced pipeline, bounded by its caller's deadline."""

    __slots__ = ("deadline", "fields", "future", "stream", "taken", "timeout")

    def __init__(
        self, stream: str, fields: dict[str, bytes], deadline: float, timeout: float
    ) -> None:
        self.stream = stream
        self.fields = fields
        self.future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.deadline = deadline  # event-loop time when the caller stops waiting
        self.timeout = timeout  # the caller's time limit, for the error message
        self.taken = False  # put into a pipeline: it may reach Redis from then on

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(SendTimeoutError(self.timeout, outcome_unknown=self.taken))


def xadd_command(stream: str, fields: dict[str, bytes]) -> Command:
    return ("XADD", stream, "*", *(item for pair in fields.items() for item in pair))


def entry_id_text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def not_confirmed(error: Exception, entry_ids: list[str]) -> Exception:
    """Why a send's entries are not confirmed by replicas: a :class:`ReplicationError`
    naming them, or the WAIT's own error (a lost connection: the outcome is unknown)."""
    return error.for_entries(entry_ids) if isinstance(error, ReplicationError) else error


async def send_xadds(
    redis: aioredis.Redis, commands: list[Command], replication: Replication | None
) -> tuple[list[Any], dict[str, Exception]]:
    """Send the XADD ``commands`` in one round trip (on a cluster, one pipeline per master):
    their replies or errors, and the streams whose entries the replicas did not confirm
    (with why)."""
    if replication is None and isinstance(redis, WaitingRedisCluster):
        return await send_by_node(redis, commands), {}
    pipe = redis.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    if replication is None:
        return await pipe.execute(raise_on_error=False), {}
    count = len(pipe)
    waits = replication.queue_waits(pipe, redis, {command[1] for command in commands})
    replies = await pipe.execute(raise_on_error=False)
    return replies[:count], replication.unconfirmed(redis, waits, replies[count:])
