"""``redis_wait_replicas``: sends and a worker's writes confirmed by replicas (``WAIT``).

On a master with one replica: sends (single, coalesced, batch, delayed, events) return once the
replica has them, and a worker's replies, ACKs and dead letters go through; asking for more
replicas than there are raises :class:`ReplicationError` naming the entries (applied on the
master, not resent), and a worker keeps the entry pending and says why. On the cluster (no
replicas), the WAIT goes to the node of the key written, and only there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.errors import ConfigurationError, ReplicationError
from common.messaging.producer import Producer
from common.testing import RedisCluster, RedisServer
from tests.cluster.conftest import _fast
from tests.helpers import wait_for
from tests.integration.test_roundtrip import CalcWorker

_NO_DELAY = ("--repl-diskless-sync-delay", "0")


@pytest.fixture(scope="module")
def replicated() -> Iterator[RedisServer]:
    """A master with one replica in sync; yields the master."""
    with RedisServer(extra_args=_NO_DELAY) as master:
        replica = RedisServer(extra_args=(*_NO_DELAY, "--replicaof", "127.0.0.1", str(master.port)))
        with replica:

            async def synced() -> bool:
                client = aioredis.Redis(port=replica.port)
                try:
                    return (await client.info("replication"))["master_link_status"] == "up"
                finally:
                    await client.aclose()

            asyncio.run(wait_for(synced, timeout=20))
            yield master


@pytest.fixture
async def master(replicated: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(replicated.url)
    yield client
    await client.aclose()


def _action(n: int = 1) -> DomainAction:
    return DomainAction(action_type="calc.add", data={"a": n, "b": 0})


async def _waits(redis: aioredis.Redis, **kwargs: Any) -> int:
    stats = await redis.info("commandstats", **kwargs)
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def test_sends_are_confirmed_by_the_replica(
    replicated: RedisServer, master: aioredis.Redis
) -> None:
    settings = _fast(redis_url=replicated.url, redis_wait_replicas=1)
    client = BaseRedisClient("api", master, settings)
    before = await _waits(master)
    single = await client.send_action_async(_action())
    coalesced = await asyncio.gather(*(client.send_action_async(_action(n)) for n in range(20)))
    batch = await client.send_actions_async([_action(n) for n in range(5)])
    await client.send_action_async(_action(), delay=60)
    event = await Producer(settings, master).send("calc.done", {"n": 1})
    await client.close()
    assert len({single, *coalesced, *batch}) == 26 and event
    assert await _waits(master) - before >= 5  # single, coalesced (1+), batch, delayed, event


async def test_too_few_replicas_raise_replication_error_naming_the_entries(
    replicated: RedisServer, master: aioredis.Redis
) -> None:
    settings = _fast(redis_url=replicated.url, redis_wait_replicas=2, redis_wait_timeout_ms=50)
    client = BaseRedisClient("api", master, settings)
    stream = client.stream_for(_action())
    with pytest.raises(ReplicationError) as caught:
        await client.send_action_async(_action())
    error = caught.value
    assert (error.wanted, error.confirmed, error.timeout_ms) == (2, 1, 50)
    assert "only 1 of 2 replicas confirmed it within 50 ms" in str(error)
    [entry_id] = error.entry_ids
    assert await master.xrange(stream, entry_id, entry_id)  # applied on the master
    results = await asyncio.gather(
        *(client.send_action_async(_action(n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ReplicationError) and len(r.entry_ids) == 1 for r in results)
    with pytest.raises(ReplicationError) as batch:
        await client.send_actions_async([_action(n) for n in range(3)])
    assert len(batch.value.entry_ids) == 3
    await client.close()


async def test_a_worker_answers_acks_and_dead_letters_through_wait(
    replicated: RedisServer, master: aioredis.Redis
) -> None:
    settings = _fast(redis_url=replicated.url, redis_wait_replicas=1)
    queues = QueueManager(settings.queue_prefix, settings.environment)
    stream = queues.action_stream("calc")
    async with WorkerPool(CalcWorker, settings, master) as pool:
        client = BaseRedisClient("api", master, settings)
        response = await client.send_action_pseudo_sync(_action(4), timeout=10)
        assert response.success and response.data == {"sum": 4}
        await master.xadd(stream, {"action": b"not json"})
        await wait_for(lambda: sum(sum(w.stats.dead_lettered.values()) for w in pool.workers) == 1)
        await client.close()

        async def settled() -> bool:
            groups = await master.xinfo_groups(stream)
            return all(g["pending"] == 0 and g["lag"] == 0 for g in groups)

        await wait_for(settled)
    assert await master.xlen(queues.dead_letter_stream("calc")) == 1


async def test_a_worker_keeps_an_unconfirmed_entry_pending_and_says_why(
    replicated: RedisServer, master: aioredis.Redis
) -> None:
    settings = _fast(redis_url=replicated.url)
    wanting = settings.model_copy(update={"redis_wait_replicas": 2, "redis_wait_timeout_ms": 50})
    async with WorkerPool(CalcWorker, wanting, master) as pool:
        client = BaseRedisClient("api", master, settings)  # the sender does not wait
        await client.send_action_async(_action())
        await client.close()
        await wait_for(lambda: any(w.stats.flush_error for w in pool.workers))
        errors = {w.stats.flush_error for w in pool.workers} - {None}
        assert any("ReplicationError" in e and "only 1 of 2" in e for e in errors if e)
        # Run and ACKed on the master, but not confirmed: the worker holds it and ACKs it
        # again at its next attempt (at least once, never lost).
        assert sum(len(w.outbox) for w in pool.workers) == 1
        assert sum(len(w.held) for w in pool.workers) == 1


async def test_on_a_cluster_the_wait_goes_to_the_node_of_the_key(
    redis_cluster: RedisCluster,
) -> None:
    """The cluster fixture has no replicas: WAIT 1 confirms nothing, on the key's node only."""
    settings = _fast(redis_url=redis_cluster.url, redis_wait_replicas=1, redis_wait_timeout_ms=20)
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        client = BaseRedisClient("api", redis, settings)
        stream = client.stream_for(_action())
        node = redis.get_node_from_key(stream)
        before = {n.name: await _waits(redis, target_nodes=n) for n in redis.get_primaries()}
        with pytest.raises(ReplicationError) as caught:
            await client.send_action_async(_action())
        assert caught.value.confirmed == 0 and len(caught.value.entry_ids) == 1
        after = {n.name: await _waits(redis, target_nodes=n) for n in redis.get_primaries()}
        await client.close()
    assert {name: after[name] - before[name] for name in after} == {
        n: int(n == node.name) for n in after
    }


def test_settings_check_the_wait_timeout() -> None:
    with pytest.raises(ConfigurationError, match="redis_wait_timeout_ms=10000 must be shorter"):
        CommonAppSettings(redis_wait_replicas=1, redis_wait_timeout_ms=10_000)
    with pytest.raises(ConfigurationError, match="redis_socket_timeout_s=3 would cut"):
        CommonAppSettings(
            redis_wait_replicas=1, redis_wait_timeout_ms=5000, redis_socket_timeout_s=3
        )
    CommonAppSettings(redis_wait_timeout_ms=60_000)  # without WAIT, the timeout is unused
