"""Batch sends on a cluster: one pipeline per master (``common.clients.cluster_send``), with
redirections, unopened connections and lost connections handled as by redis-py's pipeline."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from common import BaseRedisClient, CommonAppSettings, DomainAction
from common.clients import cluster_send
from common.clients.cluster_client import _WaitingPipeline
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.errors import PartialSendError
from common.testing import RedisCluster
from tests.cluster.test_slot_moves import move_slot

P = 6


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """A cluster of this module's own: its slot moves must not meet another module's (a
    session cluster whose slots moved before showed redirection loops, "TTL exhausted")."""
    with RedisCluster(masters=3) as cluster:
        yield cluster


def _steps(keys: int, per_key: int, first: int = 0) -> list[DomainAction]:
    """``per_key`` actions for each of ``keys`` keys, interleaved (k0#0, k1#0, ... k0#1 ...)."""
    return [
        DomainAction(action_type="calc.step", data={"key": f"k{k}", "seq": seq})
        for seq in range(first, first + per_key)
        for k in range(keys)
    ]


def _key_of(action: DomainAction) -> str:
    return str(action.data["key"])


@pytest.fixture
def partitioned(settings: CommonAppSettings) -> CommonAppSettings:
    return settings.model_copy(update={"stream_partitions": P})


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The XADDs of each redis-py cluster pipeline with XADDs executed during the test."""
    sizes: list[int] = []
    execute = _WaitingPipeline.execute

    async def counted(self: _WaitingPipeline, *args: Any, **kwargs: Any) -> list[Any]:
        queued = self._execution_strategy._command_queue  # type: ignore[attr-defined]
        xadds = sum(1 for command in queued if command.args[0] == "XADD")
        if xadds:
            sizes.append(xadds)
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(_WaitingPipeline, "execute", counted)
    return sizes


async def _stored(
    redis: aioredis.Redis, settings: CommonAppSettings
) -> dict[str, list[tuple[str, str, int]]]:
    """Each partition's entries: (entry id, key, seq) in stream order."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    streams = QueueManager(settings.queue_prefix, settings.environment).partition_streams("calc", P)
    for stream in streams:
        entries = await redis.xrange(stream)
        out[stream] = [(entry_id.decode(), *_key_seq(fields)) for entry_id, fields in entries]
    return out


def _key_seq(fields: dict[bytes, bytes]) -> tuple[str, int]:
    action = DomainAction.model_validate_json(next(iter(fields.values())))
    return str(action.data["key"]), int(action.data["seq"])


def _assert_in_order(
    stored: dict[str, list[tuple[str, str, int]]], ids: list[str], keys: int, per_key: int
) -> None:
    """Every entry once, on one partition per key, each key's in order; ``ids`` are theirs."""
    seqs: dict[str, list[int]] = defaultdict(list)
    partition_of: dict[str, str] = {}
    for stream, entries in stored.items():
        for _, key, seq in entries:
            seqs[key].append(seq)
            assert partition_of.setdefault(key, stream) == stream
    assert dict(seqs) == {f"k{k}": list(range(per_key)) for k in range(keys)}
    assert sorted(ids) == sorted(e[0] for entries in stored.values() for e in entries)


async def test_a_batch_over_three_masters_lands_each_entry_on_its_partition_in_order(
    partitioned: CommonAppSettings, redis: aioredis.Redis, pipelines: list[int]
) -> None:
    cluster: Any = redis
    streams = QueueManager(partitioned.queue_prefix, partitioned.environment).partition_streams(
        "calc", P
    )
    assert len({cluster.get_node_from_key(s).name for s in streams}) == 3
    client = BaseRedisClient("api", redis, partitioned)
    ids: list[str] = []
    for first in (0, 10):
        ids += await client.send_actions_async(_steps(12, 10, first), partition_by=_key_of)
    await client.close()
    _assert_in_order(await _stored(redis, partitioned), ids, keys=12, per_key=20)
    assert pipelines == []  # no redis-py cluster pipeline was needed


async def test_a_batch_follows_ask_then_moved_during_a_slot_move(
    redis_cluster: RedisCluster,
    partitioned: CommonAppSettings,
    redis: aioredis.Redis,
    pipelines: list[int],
) -> None:
    """Batches sent while one partition's slot migrates (ASK: its key has moved) and after
    (MOVED): the redirected XADDs go through redis-py's pipeline, the others do not; nothing
    is lost or doubled, each key's order holds."""
    cluster: Any = redis
    queues = QueueManager(partitioned.queue_prefix, partitioned.environment)
    moved = queues.action_stream("calc", 0)
    source = cluster.get_node_from_key(moved)
    target = next(n for n in cluster.get_primaries() if n.name != source.name)
    client = BaseRedisClient("api", redis, partitioned)
    ids = await client.send_actions_async(_steps(12, 5), partition_by=_key_of)
    batches = 1

    async def send_more() -> None:  # after each step of the move
        nonlocal ids, batches
        ids += await client.send_actions_async(_steps(12, 5, 5 * batches), partition_by=_key_of)
        batches += 1

    await move_slot(redis_cluster, key_slot(moved.encode()), source.port, target.port, send_more)
    assert pipelines and max(pipelines) < 60  # only the moved partition's XADDs
    await send_more()  # MOVED: the client learns the slot's new master
    assert cluster.get_node_from_key(moved).name == target.name
    before = len(pipelines)
    await send_more()
    assert len(pipelines) == before  # straight to the new master now
    await client.close()
    _assert_in_order(await _stored(redis, partitioned), ids, keys=12, per_key=5 * batches)


async def test_a_master_that_cannot_be_reached_gets_its_commands_through_redis_py(
    partitioned: CommonAppSettings,
    redis: aioredis.Redis,
    pipelines: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection that could not be opened sent nothing: its commands are sent again."""
    cluster: Any = redis
    refused = cluster.get_primaries()[0]
    real_open = cluster_send._open

    async def refusing(node: ClusterNode, connection: Any) -> None:
        if node.name == refused.name:
            raise RedisConnectionError("refused (test)")
        await real_open(node, connection)

    monkeypatch.setattr(cluster_send, "_open", refusing)
    client = BaseRedisClient("api", redis, partitioned)
    ids = await client.send_actions_async(_steps(12, 10), partition_by=_key_of)
    await client.close()
    _assert_in_order(await _stored(redis, partitioned), ids, keys=12, per_key=10)
    assert len(pipelines) == 1 and 0 < pipelines[0] < 120


async def test_a_connection_lost_after_the_write_is_reported_not_resent(
    partitioned: CommonAppSettings,
    redis: aioredis.Redis,
    pipelines: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The XADDs of a connection lost while reading their replies may have run (here they
    all did): they are reported (PartialSendError), never resent; the next batch reads its
    own replies (no reply of the lost batch is left on a connection)."""
    cluster: Any = redis
    lost = cluster.get_primaries()[0]
    parse = ClusterNode.parse_response
    reads = 0

    async def losing(self: ClusterNode, connection: Any, command: str, **kw: Any) -> Any:
        nonlocal reads
        if self.name == lost.name:
            reads += 1
            if reads == 3:
                raise RedisConnectionError("lost (test)")  # unlike redis-py: not closed
        return await parse(self, connection, command, **kw)

    monkeypatch.setattr(ClusterNode, "parse_response", losing)
    client = BaseRedisClient("api", redis, partitioned)
    with pytest.raises(PartialSendError) as caught:
        await client.send_actions_async(_steps(12, 10), partition_by=_key_of)
    monkeypatch.setattr(ClusterNode, "parse_response", parse)
    assert all(isinstance(e, RedisConnectionError) for e in caught.value.errors)
    known = [i for i in caught.value.entry_ids if i is not None]
    assert 0 < len(caught.value.errors) < 120 and len(known) + len(caught.value.errors) == 120
    assert pipelines == []  # nothing resent
    stored = await _stored(redis, partitioned)
    assert sum(len(entries) for entries in stored.values()) == 120  # each once
    ids = await client.send_actions_async(_steps(12, 10, 10), partition_by=_key_of)
    await client.close()
    stored = await _stored(redis, partitioned)
    latest = [e[0] for entries in stored.values() for e in entries if e[2] >= 10]
    assert sorted(ids) == sorted(latest)  # each reply its own, none left from the lost batch
    first = [e[0] for entries in stored.values() for e in entries if e[2] < 10]
    assert not set(known) - set(first)


async def test_an_error_while_reading_closes_the_connections_left_unread(
    partitioned: CommonAppSettings, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = ClusterNode.parse_response

    async def failing(self: ClusterNode, connection: Any, command: str, **kw: Any) -> Any:
        raise RuntimeError("parser broke (test)")

    monkeypatch.setattr(ClusterNode, "parse_response", failing)
    client = BaseRedisClient("api", redis, partitioned)
    with pytest.raises(RuntimeError):
        await client.send_actions_async(_steps(12, 5), partition_by=_key_of)
    monkeypatch.setattr(ClusterNode, "parse_response", parse)
    ids = await client.send_actions_async(_steps(12, 5, 5), partition_by=_key_of)
    await client.close()
    stored = await _stored(redis, partitioned)
    assert sum(len(entries) for entries in stored.values()) == 120
    latest = [e[0] for entries in stored.values() for e in entries if e[2] >= 5]
    assert sorted(ids) == sorted(latest)  # each reply its own, none left from the failed batch


async def test_concurrent_batches_keep_to_the_connection_bound(
    settings: CommonAppSettings,
) -> None:
    bounded = settings.model_copy(update={"redis_max_connections": 1, "stream_partitions": P})
    async with RedisManager(bounded) as manager:
        redis = manager.get_client()
        client = BaseRedisClient("api", redis, bounded)
        batches = [_steps(12, 5, 5 * b) for b in range(8)]
        await asyncio.gather(*(client.send_actions_async(b, partition_by=_key_of) for b in batches))
        await client.close()
        cluster: Any = redis
        assert max(len(node._connections) for node in cluster.get_nodes()) <= 1
        stored = await _stored(redis, bounded)
        assert sum(len(entries) for entries in stored.values()) == 480
