"""Writes confirmed by replicas: ``WAIT`` after a write, when ``redis_wait_replicas`` > 0.

Redis replicates asynchronously: a write the master acknowledged may be missing from the
replica promoted at a failover. ``WAIT n timeout`` blocks the connection that wrote until ``n``
replicas confirm they have everything that connection wrote (or the timeout passes; it returns
how many did). So it must go on the *same connection*, right after the writes: here it is
queued at the end of the write's pipeline. On a Redis Cluster a pipeline is split per node,
each node's commands going over one connection in order, so one ``WAIT`` is queued per node
written to, addressed to that node (``target_nodes``). After the round trip, a key is
confirmed if its node's ``WAIT`` counted at least ``n`` replicas and the key's slot is still on
that node (a MOVED answer sends the write elsewhere, where no WAIT followed it). A write that
an ASK redirection (a slot being migrated) sent to the importing node is not covered: that
window lasts as long as the migration of the slot.

With ``redis_wait_replicas`` = 0 (the default) nothing here runs: no ``WAIT``, no extra
round trip, no extra check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from common.clients.redis_manager import is_cluster
from common.config import CommonAppSettings
from common.errors import ReplicationError

__all__ = ["Replication", "Waits"]


class Waits:
    """The WAITs queued on one pipeline: per WAIT, the node it went to (None: a single
    server) and the keys it confirms."""

    __slots__ = ("count", "keys", "nodes")

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.keys: list[list[str]] = []
        self.count = 0


class Replication:
    """``redis_wait_replicas`` and ``redis_wait_timeout_ms``: how a write is confirmed."""

    __slots__ = ("replicas", "timeout_ms")

    def __init__(self, replicas: int, timeout_ms: int) -> None:
        self.replicas = replicas
        self.timeout_ms = timeout_ms

    @classmethod
    def of(cls, settings: CommonAppSettings) -> Replication | None:
        """The settings' replication rule; None when writes are not confirmed (the default)."""
        if settings.redis_wait_replicas <= 0:
            return None
        return cls(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)

    def queue_waits(self, pipe: Any, redis: Any, keys: Iterable[str]) -> Waits:
        """Queue the WAIT(s) that confirm the writes to ``keys`` already queued on ``pipe``."""
        waits = Waits()
        if not is_cluster(redis):
            waits.nodes.append(None)
            waits.keys.append(list(keys))
            pipe.wait(self.replicas, self.timeout_ms)
        else:
            by_node: dict[str, int] = {}
            for key in keys:
                node = redis.get_node_from_key(key)
                index = by_node.get(node.name)
                if index is None:
                    index = by_node[node.name] = len(waits.nodes)
                    waits.nodes.append(node)
                    waits.keys.append([])
                    pipe.wait(self.replicas, self.timeout_ms, target_nodes=node)
                waits.keys[index].append(key)
        waits.count = len(waits.nodes)
        return waits

    def unconfirmed(self, redis: Any, waits: Waits, replies: Sequence[Any]) -> dict[str, Exception]:
        """The keys whose writes ``replies`` (the WAITs' replies, in order) do not confirm,
        each with why: the WAIT's own error, or a :class:`ReplicationError`."""
        missing: dict[str, Exception] = {}
        for node, keys, reply in zip(waits.nodes, waits.keys, replies, strict=True):
            for key in keys:
                error = self._check(reply)
                if error is None and node is not None:
                    now = redis.get_node_from_key(key)
                    if now.name != node.name:
                        error = ReplicationError(self.replicas, 0, self.timeout_ms, moved=True)
                if error is not None:
                    missing[key] = error
        return missing

    def _check(self, reply: Any) -> Exception | None:
        if isinstance(reply, Exception):
            return reply
        confirmed = int(reply)
        if confirmed < self.replicas:
            return ReplicationError(self.replicas, confirmed, self.timeout_ms)
        return None

    async def write(
        self, redis: Any, key: str, queue: Callable[[Any], None]
    ) -> tuple[Any, Exception | None]:
        """Run the command(s) ``queue`` puts on a pipeline (writes to ``key``), then WAIT.
        Returns the last command's reply and why it is not confirmed (None: it is); raises
        a command's own error."""
        pipe = redis.pipeline(transaction=False)
        queue(pipe)
        count = len(pipe)
        waits = self.queue_waits(pipe, redis, [key])
        replies = await pipe.execute(raise_on_error=False)
        for reply in replies[:count]:
            if isinstance(reply, Exception):
                raise reply
        missing = self.unconfirmed(redis, waits, replies[count:])
        return replies[count - 1], missing.get(key)
