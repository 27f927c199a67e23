"""Cluster: a service's hash slot moved to another master while its workers drain it.

The migration is the one ``redis-cli --cluster reshard`` does, step by step: the target marks
the slot IMPORTING, the source MIGRATING, the keys move with MIGRATE (the stream with its
group and pending entries, the dead letters, the delay and scheduled sets), then every master
is told the slot's new owner (SETSLOT NODE). Meanwhile senders keep sending and workers keep
reading and ACKing: commands meet ASK (key already moved) and then MOVED (slot moved) answers,
which redis-py's cluster client follows. Nothing acknowledged may be lost, the same workers go
on (no restart), and the move costs a bounded number of warnings (no busy loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.testing import RedisCluster
from tests.cluster.failover_load import Load, LogCounter, handled
from tests.helpers import wait_for
from tests.integration.test_roundtrip import CalcWorker


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    """A cluster of this module's own: its slot moves must not meet another module's (a
    session cluster whose slots moved before showed redirection loops, "TTL exhausted")."""
    with RedisCluster(masters=3) as cluster:
        yield cluster


_MAX_WARNINGS = 20


async def _admin(port: int) -> aioredis.Redis:
    return aioredis.Redis(port=port, decode_responses=True)


async def move_slot(
    cluster: RedisCluster, slot: int, source_port: int, target_port: int, pause: Any
) -> None:
    """Migrate ``slot`` from the master on ``source_port`` to the one on ``target_port``, as
    ``redis-cli --cluster reshard`` does; ``pause()`` is awaited after each step."""
    admins = {node.port: await _admin(node.port) for node in cluster.nodes}
    try:
        ids = {port: await admin.execute_command("CLUSTER MYID") for port, admin in admins.items()}
        source, target = admins[source_port], admins[target_port]
        await target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source_port])
        await source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target_port])
        await pause()
        while keys := await source.execute_command("CLUSTER GETKEYSINSLOT", slot, 10):
            await source.execute_command(
                "MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys
            )
            await pause()
        others = [port for port in admins if port not in (source_port, target_port)]
        for port in (target_port, source_port, *others):
            await admins[port].execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target_port])
    finally:
        for admin in admins.values():
            await admin.aclose()


async def test_workers_and_senders_follow_a_slot_move_and_lose_nothing(
    redis_cluster: RedisCluster, settings: CommonAppSettings
) -> None:
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    slot = key_slot(stream.encode())
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        source = redis.get_node_from_key(stream)
        target = next(n for n in redis.get_primaries() if n.name != source.name)
        async with WorkerPool(CalcWorker, settings, redis) as pool:
            workers = list(pool.workers)
            client = BaseRedisClient("api", redis, settings)
            load = Load(client, senders=4)
            load.start()
            await wait_for(lambda: len(handled(pool)) >= 200, timeout=30)

            async def some_work() -> None:  # a few more actions go through at each step
                count = len(load.acked)
                await wait_for(lambda: len(load.acked) >= count + 20, timeout=30)

            with LogCounter() as logs:
                await move_slot(redis_cluster, slot, source.port, target.port, some_work)
                await some_work()
                moved = len(load.acked)
                await wait_for(lambda: len(load.acked) >= moved + 200, timeout=30)
                await load.stop()
                # An entry id is what Redis returned for the send: never an error's text (a
                # cluster pipeline reports a node's lost connection as that command's result).
                assert all(i.split("-")[0].isdigit() for i in load.entry_ids.values())
                await wait_for(lambda: set(load.acked) <= set(handled(pool)), timeout=30)
                await client.close()
            assert pool.workers == workers and pool.health()["restarts"] == 0
            assert redis.get_node_from_key(stream).name == target.name
            await wait_for(lambda: _drained(redis, stream), timeout=30)
    runs = handled(pool)
    print(
        f"\nslot move: {len(load.acked)} acknowledged, all handled; "
        f"{sum(runs.values()) - len(runs)} duplicate runs; send errors {dict(load.errors)}; "
        f"{len(logs.records)} warnings: {logs.summary()}"
    )
    assert set(load.acked) <= set(runs)
    assert len(logs.records) <= _MAX_WARNINGS


async def _drained(redis: Any, stream: str) -> bool:
    """Every entry read and ACKed (on the slot's new master: asked through the cluster)."""
    groups = await redis.xinfo_groups(stream)
    return all(g["pending"] == 0 and g["lag"] == 0 for g in groups)


async def test_a_read_unblocked_by_a_slot_move_is_read_again(
    redis_cluster: RedisCluster, settings: CommonAppSettings
) -> None:
    """A blocked XREADGROUP whose stream is migrated away gets ``UNBLOCKED the stream key no
    longer exists`` from Redis: the worker reads again (following the redirection), it does
    not crash (a crash would cost a restart and a second of backoff)."""
    settings = settings.model_copy(update={"worker_block_ms": 5000})  # long blocked reads
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        source = redis.get_node_from_key(stream)
        target = next(n for n in redis.get_primaries() if n.name != source.name)
        async with WorkerPool(CalcWorker, settings, redis) as pool:
            await wait_for(lambda: all(w._reading for w in pool.workers))

            async def nothing() -> None:
                pass

            slot = key_slot(stream.encode())
            with LogCounter() as logs:
                await move_slot(redis_cluster, slot, source.port, target.port, nothing)
                client = BaseRedisClient("api", redis, settings)
                response = await client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=10
                )
                await client.close()
            assert response.success and response.data == {"sum": 3}
            assert pool.health()["restarts"] == 0, logs.summary()
