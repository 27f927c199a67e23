"""A Redis Cluster client whose callers wait for a connection past ``redis_max_connections``.

redis-py's asyncio ``RedisCluster`` bounds each node's connections by ``max_connections`` but
does not wait: a command past the bound fails at once with ``MaxConnectionsError``. On one
server the toolkit's pool makes callers wait instead (up to 30 s); :class:`WaitingRedisCluster`
does the same on a cluster. At most ``max_connections`` commands, pipelines or transactions of
one client are in flight at once (each holds at most one connection per node, so no node ever
needs more); the others wait for one to finish, up to :attr:`connection_wait_s`, then fail
with a (transient) ``MaxConnectionsError`` that names the setting.

It also finds the keys of ``XREADGROUP`` and ``XREAD`` itself: redis-py asks the server
(``COMMAND GETKEYS``, one more round trip) for every command whose keys move, as a read's do;
and the key of the hot single-key commands (XADD, XACK, ...) without redis-py's table walk.

A command that redis-py issues while one of ours is in flight (a pipeline re-sending a
redirected command, a command run on several nodes) belongs to that one and does not wait.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any, cast

from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import MaxConnectionsError, RedisClusterException

__all__ = ["WaitingRedisCluster", "stream_read_keys"]

_HOLDING: ContextVar[bool] = ContextVar("common_cluster_slot_held", default=False)

DEFAULT_WAIT_S = 30.0
"""How long a caller waits for a free connection (as the standalone pool does)."""


class WaitingRedisCluster(RedisCluster):
    """``RedisCluster`` with callers past ``max_connections`` waiting (see the module)."""

    connection_wait_s: float = DEFAULT_WAIT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = int(
            self.nodes_manager.connection_kwargs.get("max_connections") or 100
        )
        self._slots = asyncio.Semaphore(self.max_connections)
        self.connections_in_use = 0  # commands, pipelines and transactions in flight

    async def _acquire(self) -> bool:
        """Wait for a free slot (False: this task already holds one)."""
        if _HOLDING.get():
            return False
        try:
            async with asyncio.timeout(self.connection_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise MaxConnectionsError(
                f"no Redis Cluster connection free within {self.connection_wait_s:g} s: "
                f"all redis_max_connections={self.max_connections} are in use"
            ) from None
        self.connections_in_use += 1
        return True

    def _release(self) -> None:
        self.connections_in_use -= 1
        self._slots.release()

    async def _bounded(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        if not await self._acquire():
            return await call(*args, **kwargs)
        token = _HOLDING.set(True)
        try:
            return await call(*args, **kwargs)
        finally:
            _HOLDING.reset(token)
            self._release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        return await self._bounded(super().execute_command, *args, **kwargs)

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if command in _FIRST_KEY and args:  # the hot commands: one key, the first argument
            return int(self.keyslot(args[0]))
        keys = stream_read_keys(command, args)
        if keys is None:
            slot: int = await super()._determine_slot(command, *args)
            return slot
        slots = {self.keyslot(key) for key in keys}
        if len(slots) != 1:
            raise RedisClusterException(f"{command} - all keys must map to the same key slot")
        return slots.pop()

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's own pipeline() builds its ClusterPipeline the same way (mypy takes its
        # lazily set _event_dispatcher for an abstract attribute).
        return _WaitingPipeline(self, transaction)  # type: ignore[abstract]


# Commands of one key, their first argument, as redis-py spells them (its parser agrees; this
# only skips its per-command table walk, which a pipeline of sends pays on every XADD).
_FIRST_KEY = frozenset(
    {
        *("XADD", "XACK", "XCLAIM", "XAUTOCLAIM", "XPENDING", "XLEN", "XTRIM", "XDEL"),
        *("XRANGE", "XREVRANGE", "RPUSH", "EXPIRE"),
        *("ZADD", "ZREM", "ZCARD", "ZRANGE", "ZRANGEBYSCORE", "ZSCORE"),
    }
)
_READS = {"XREADGROUP": 3, "XREAD": 0}  # the read command: where its options start
_OPTIONS = {"COUNT": 2, "BLOCK": 2, "NOACK": 1}  # an option: how many arguments it takes


def stream_read_keys(command: Any, args: tuple[Any, ...]) -> list[Any] | None:
    """The stream keys of an ``XREADGROUP``/``XREAD`` (``args``: its arguments after the
    command name), None for another command or a form this does not know (redis-py asks the
    server then)."""
    name = command.decode() if isinstance(command, bytes) else str(command)
    i = _READS.get(name.upper())
    if i is None:
        return None
    while i < len(args):
        word = args[i]
        word = (word.decode() if isinstance(word, bytes) else str(word)).upper()
        if word == "STREAMS":
            rest = args[i + 1 :]
            if not rest or len(rest) % 2:
                return None
            return list(rest[: len(rest) // 2])
        step = _OPTIONS.get(word)
        if step is None:
            return None
        i += step
    return None


class _WaitingPipeline(ClusterPipeline):
    """A pipeline (or transaction) of a :class:`WaitingRedisCluster`: waits as one command."""

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        client = cast(WaitingRedisCluster, self.cluster_client)
        run = super().execute
        result: list[Any] = await client._bounded(run, raise_on_error, allow_redirections)
        return result
