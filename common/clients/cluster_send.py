"""A batch of commands to a Redis Cluster (a send's single-key writes; a read's XREADGROUP of
each slot group), one pipeline per master, without redis-py's per-command cluster pipeline
work.

redis-py's ``ClusterPipeline`` finds each command's node through its command policies, flags
and slot (several calls and objects per command, measured at about twice a plain pipeline's
Python per XADD). A batch of sends knows its keys: here each command's node comes from its
key's slot in the client's slot table (looked up once per key), each node's commands go out in
order as one pipeline on one connection of that node, the nodes concurrently; a command holds
no more than that (one connection per node, as a ``ClusterPipeline`` does).

What can go wrong is left to the ``ClusterPipeline`` whenever resending is safe, so redirections
and topology changes are followed exactly as before:

- a command answered ``MOVED``, ``ASK``, ``TRYAGAIN`` or ``CLUSTERDOWN`` was not run: it is
  sent again through a ``ClusterPipeline`` (with the others of its kind, in the batch's order;
  those of one key keep their order, as a slot's answers change only one way during a move);
- a node whose connection could not be opened got nothing: its commands go the same way;
- a connection lost once the commands were written leaves their outcome unknown: each of them
  (from the first unread reply on) gets that error, and nothing is resent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ResponseError,
    TryAgainError,
)

from common.clients.cluster_client import WaitingRedisCluster
from common.clients.pool import _closed_while_idle
from common.clients.redis_manager import CONNECTION_ERRORS

__all__ = ["Command", "send_by_node"]

Command = tuple[Any, ...]  # a command's name and arguments; the key is the second item

_NOT_RUN = (MovedError, AskError, TryAgainError, ClusterDownError)  # the server did not run it


async def send_by_node(
    cluster: WaitingRedisCluster,
    commands: Sequence[Command],
    keys: Sequence[Any] | None = None,
) -> list[Any]:
    """The reply of each command, or its error, in order. A command's node is its key's:
    ``keys[i]`` (one of its keys, all in one slot), by default its first argument.

    Holds one of the client's ``redis_max_connections`` slots for the whole batch."""
    result: list[Any] = await cluster._bounded(_send, cluster, commands, keys)
    return result


async def _send(
    cluster: WaitingRedisCluster, commands: Sequence[Command], keys: Sequence[Any] | None
) -> list[Any]:
    if cluster._initialize:
        await cluster.initialize()
    nodes_manager = cluster.nodes_manager
    node_of: dict[Any, ClusterNode] = {}
    groups: dict[str, tuple[ClusterNode, list[int]]] = {}
    for index, command in enumerate(commands):
        key = command[1] if keys is None else keys[index]
        node = node_of.get(key)
        if node is None:
            node = node_of[key] = nodes_manager.get_node_from_slot(cluster.keyslot(key))
        group = groups.get(node.name)
        if group is None:
            group = groups[node.name] = (node, [])
        group[1].append(index)
    results: list[Any] = [None] * len(commands)
    again: list[int] = []  # not sent: to send through a ClusterPipeline
    held: list[tuple[ClusterNode, Connection]] = []
    unread: set[Connection] = set()  # written, replies not read yet
    try:
        written: list[tuple[ClusterNode, Connection, list[int]]] = []
        for node, indexes in groups.values():  # write to every node, then read each
            connection = node.acquire_connection()
            held.append((node, connection))
            batch = [commands[i] for i in indexes]
            try:
                await _open(node, connection)
            except CONNECTION_ERRORS:
                again.extend(indexes)  # nothing sent
                continue
            try:
                unread.add(connection)
                await connection.send_packed_command(connection.pack_commands(batch))
            except CONNECTION_ERRORS as exc:  # maybe written: the outcome is unknown
                unread.discard(connection)
                for index in indexes:
                    results[index] = exc
                continue
            written.append((node, connection, indexes))
        for node, connection, indexes in written:
            if await _read(node, connection, commands, indexes, results):
                unread.discard(connection)
    finally:
        for node, connection in held:
            try:
                if connection in unread:  # replies left on it: never hand it out again as is
                    await connection.disconnect(nowait=True)
                await node.disconnect_if_needed(connection)
            finally:
                node.release(connection)
    again.extend(i for i, value in enumerate(results) if isinstance(value, _NOT_RUN))
    if again:
        again.sort()  # the batch's order
        pipe = cluster.pipeline(transaction=False)
        for index in again:
            pipe.execute_command(*commands[index])
        for index, value in zip(again, await pipe.execute(raise_on_error=False), strict=True):
            results[index] = value
    return results


async def _open(node: ClusterNode, connection: Connection) -> None:
    """Make ``connection`` ready to write (raises a connection error: nothing was sent)."""
    await node.disconnect_if_needed(connection)
    if connection.is_connected and _closed_while_idle(connection):
        await connection.disconnect(nowait=True)  # closed by the server while idle
    if not connection.is_connected:
        await connection.connect()  # type: ignore[no-untyped-call]


async def _read(
    node: ClusterNode,
    connection: Connection,
    commands: Sequence[Command],
    indexes: list[int],
    results: list[Any],
) -> bool:
    """The replies (or errors) of ``commands[i]`` for ``i`` in ``indexes``, into ``results``;
    False if the connection was lost before the last one."""
    done = 0
    try:
        for index in indexes:
            try:
                results[index] = await node.parse_response(connection, commands[index][0])
            except ResponseError as exc:
                results[index] = exc
            done += 1
    except CONNECTION_ERRORS as exc:  # written, maybe run: the outcome is unknown
        for index in indexes[done:]:
            results[index] = exc
        return False
    return True
