"""Cluster: the master that owns a service's slot goes down and comes back on its port.

A cluster of its own (module-scoped, so that a restarted node cannot disturb other tests),
with ``appendonly yes`` and ``appendfsync always``: a SIGKILLed master loses nothing it had
acknowledged. While 4 senders send and a WorkerPool of 2 workers drains the service's stream,
the master of the stream's slot is SIGKILLed; the test waits until the other masters mark it
failed (``cluster_state:fail``: they refuse every command with ``CLUSTERDOWN``), restarts it on
the same port with its data directory and ``nodes.conf`` (it takes its slots back), and waits
until the cluster is ok again.

Asserted: the same workers go on, running, not restarted; the same client goes on sending;
every send that returned an entry id is handled (duplicates counted apart: at least once);
sends made while the master is down raise (never counted as sent) and none takes longer than
``redis_send_timeout_s``; the group ends with nothing pending or unread; the outage costs a
bounded number of warnings (no busy loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, ResponseError

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.messaging import run_workers, worker
from common.messaging.producer import Producer
from common.testing import RedisCluster
from tests.cluster.conftest import _fast
from tests.cluster.failover_load import Load, LogCounter, handled
from tests.helpers import wait_for
from tests.integration.test_roundtrip import CalcWorker

_SEND_TIMEOUT_S = 3.0
_MAX_WARNINGS = 30  # backoffs double up to 5 s: a handful of lines per worker; a busy loop: 100s
# What a send raises while the master is down or restarting: refused or lost connections,
# CLUSTERDOWN (the cluster marked it failed; it refuses writes for 2 s after its restart),
# or redis_send_timeout_s passed while redis-py was retrying.
_SEND_ERRORS = {"ConnectionError", "ClusterDownError", "SendTimeoutError", "TimeoutError"}
_BEFORE = 200  # actions handled before the kill
_AFTER = 200  # actions acknowledged after the restart


@pytest.fixture(scope="module")
def restart_cluster() -> Iterator[RedisCluster]:
    """A 3-master cluster whose nodes lose nothing acknowledged when SIGKILLed."""
    with RedisCluster(appendonly=True, appendfsync="always", node_timeout_ms=1000) as cluster:
        yield cluster


async def _state_is(port: int, state: str) -> bool:
    """Whether the node on ``port`` reports ``cluster_state:<state>``."""
    direct = aioredis.Redis(port=port, decode_responses=True)
    try:
        info: dict[str, Any] = await direct.cluster("INFO")
        return str(info["cluster_state"]) == state
    finally:
        await direct.aclose()


async def _drained(redis: Any, stream: str) -> bool:
    groups = await redis.xinfo_groups(stream)
    return bool(groups) and all(g["pending"] == 0 and g["lag"] == 0 for g in groups)


async def test_workers_and_senders_go_on_after_their_master_restarts(
    restart_cluster: RedisCluster,
) -> None:
    settings = _fast(redis_url=restart_cluster.url, redis_send_timeout_s=_SEND_TIMEOUT_S)
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        owner = restart_cluster.node_on(redis.get_node_from_key(stream).port)
        survivor = next(node for node in restart_cluster.nodes if node is not owner)
        async with WorkerPool(CalcWorker, settings, redis) as pool:
            workers = list(pool.workers)
            client = BaseRedisClient("api", redis, settings)
            load = Load(client, senders=4)
            load.start()
            await wait_for(lambda: len(handled(pool)) >= _BEFORE, timeout=30)
            with LogCounter() as logs:
                errors_before = sum(load.errors.values())
                owner.kill()
                down = time.monotonic()
                # The other masters mark it failed: the whole cluster refuses commands.
                await wait_for(lambda: _state_is(survivor.port, "fail"), timeout=15, interval=0.1)
                failed = time.monotonic()
                # Each sender has met the outage (a send's retries inside redis-py can take
                # up to redis_send_timeout_s before it raises).
                await wait_for(lambda: sum(load.errors.values()) >= errors_before + 4, timeout=15)
                failed_while_down = sum(load.errors.values()) - errors_before
                owner.start()
                restarted = time.monotonic()
                await asyncio.to_thread(restart_cluster.wait_ok, 20)
                back = time.monotonic()
                await wait_for(lambda: len(load.acked_since(back)) >= _AFTER, timeout=30)
                await load.stop()
                await wait_for(lambda: set(load.acked) <= set(handled(pool)), timeout=30)
                await wait_for(lambda: _drained(redis, stream), timeout=30)
                await client.close()
            assert pool.workers == workers
            assert all(worker.is_running for worker in workers)
            assert pool.health()["restarts"] == 0, logs.summary()
    runs = handled(pool)
    print(
        f"\nmaster restart: marked failed after {failed - down:.1f} s, "
        f"down {restarted - down:.1f} s, cluster ok {back - restarted:.1f} s later; "
        f"{len(load.acked)} acknowledged, all handled; "
        f"{sum(runs.values()) - len(runs)} duplicate runs; {failed_while_down} sends failed "
        f"while down (slowest {load.slowest_error_s:.2f} s): {dict(load.errors)} "
        f"{load.error_texts}; {len(logs.records)} warnings: {logs.summary()}"
    )
    # An entry id is what Redis returned for the send, never an error's text.
    assert all(i.split("-")[0].isdigit() for i in load.entry_ids.values())
    assert set(load.acked) <= set(runs)
    assert failed_while_down >= 4 and load.slowest_error_s <= _SEND_TIMEOUT_S + 0.5
    assert set(load.errors) <= _SEND_ERRORS and all(load.error_texts.values()), load.error_texts
    assert len(logs.records) < _MAX_WARNINGS, logs.summary()


class Unserved:
    """The slot of ``key`` dropped by its owner (``CLUSTER DELSLOTS``: the cluster answers
    ``CLUSTERDOWN Hash slot not served`` for it) until :meth:`serve`, at the latest on exit."""

    def __init__(self, cluster: RedisCluster, redis: Any, key: str) -> None:
        self.cluster = cluster
        self.slot = key_slot(key.encode())
        self.owner = aioredis.Redis(port=redis.get_node_from_key(key).port)

    async def __aenter__(self) -> Unserved:
        await self.owner.execute_command("CLUSTER DELSLOTS", self.slot)
        return self

    async def serve(self) -> None:
        """Give the slot back (unless it has it already) and wait until the cluster is ok."""
        try:
            await self.owner.execute_command("CLUSTER ADDSLOTS", self.slot)
        except ResponseError as exc:
            if "already busy" not in str(exc):
                raise
        await asyncio.to_thread(self.cluster.wait_ok, 20)

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.serve()
        finally:
            await self.owner.aclose()


async def _add_one_and_two(redis: Any, settings: CommonAppSettings) -> None:
    """A pseudo-sync round trip through the service's workers."""
    client = BaseRedisClient("api", redis, settings)
    response = await client.send_action_pseudo_sync(
        DomainAction(action_type="calc.add", data={"a": 1, "b": 2}), timeout=10
    )
    await client.close()
    assert response.success and response.data == {"sum": 3}


def _unavailable(logs: LogCounter) -> int:
    """Warnings of a wait for Redis (``Redis unavailable (...); retrying in ...``)."""
    return sum("Redis unavailable" in record.getMessage() for record in logs.records)


async def _start_while_unserved(
    slot: Unserved, logs: LogCounter, start: Coroutine[Any, Any, Any], attempts: int
) -> None:
    """``start`` waits while the slot is not served (``attempts`` warnings seen, not done),
    and is done once it is served."""
    starting = asyncio.create_task(start)
    await wait_for(lambda: _unavailable(logs) >= attempts, timeout=15)
    assert not starting.done()
    await slot.serve()
    await asyncio.wait_for(starting, 15)


async def test_a_read_refused_with_clusterdown_is_retried_not_a_crash(
    restart_cluster: RedisCluster,
) -> None:
    """While the cluster cannot serve the stream's slot (here the owner drops it: ``CLUSTER
    DELSLOTS``; above, a master restarting), reads get ``CLUSTERDOWN``: the worker backs off
    and reads again once the slot is served, it does not crash (a restart and its backoff)."""
    settings = _fast(redis_url=restart_cluster.url)
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        async with WorkerPool(CalcWorker, settings, redis) as pool:
            await wait_for(lambda: all(w._reading for w in pool.workers))
            with LogCounter() as logs:
                async with Unserved(restart_cluster, redis, stream):
                    await wait_for(
                        lambda: pool.health()["restarts"] or _every_read_refused(logs, pool),
                        timeout=15,
                    )
                await _add_one_and_two(redis, settings)
            assert pool.health()["restarts"] == 0, logs.summary()


def _every_read_refused(logs: LogCounter, pool: WorkerPool[Any]) -> bool:
    """Each worker has logged a refused read (``CLUSTERDOWN Hash slot not served``)."""
    refused = [
        message
        for record in logs.records
        if "Hash slot not served" in (message := record.getMessage())
        and record.name == "common.workers.engine"
    ]
    return all(any(w.consumer in message for message in refused) for w in pool.workers)


async def test_workers_started_while_their_slot_is_not_served_wait_for_it(
    restart_cluster: RedisCluster,
) -> None:
    """Group creation at start refused with ``CLUSTERDOWN`` (the slot's owner dropped it, or a
    master is restarting): ``start()`` waits (a warning per attempt, backing off) and returns
    once the slot is served; the workers then run, none crashed or restarted."""
    settings = _fast(redis_url=restart_cluster.url)
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        pool = WorkerPool(CalcWorker, settings, redis)
        try:
            with LogCounter() as logs:
                async with Unserved(restart_cluster, redis, stream) as slot:
                    await _start_while_unserved(slot, logs, pool.start(), attempts=2)
                await _add_one_and_two(redis, settings)
            assert pool.health()["restarts"] == 0, logs.summary()
            assert len(logs.records) < _MAX_WARNINGS, logs.summary()
        finally:
            await pool.stop()


async def test_start_gives_up_after_connect_timeout_while_the_slot_is_not_served(
    restart_cluster: RedisCluster,
) -> None:
    settings = _fast(redis_url=restart_cluster.url)
    stream = QueueManager(settings.queue_prefix, settings.environment).action_stream("calc")
    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        pool = WorkerPool(CalcWorker, settings, redis)
        pool.connect_timeout_s = 1.0
        async with Unserved(restart_cluster, redis, stream):
            began = time.monotonic()
            with pytest.raises(ClusterDownError):
                await pool.start()
            assert time.monotonic() - began < 5
            assert not pool.running


async def test_declarative_workers_started_while_their_topic_s_slot_is_not_served_wait_for_it(
    restart_cluster: RedisCluster,
) -> None:
    """The same for a ``MessagingPool`` (``run_workers``): its groups are created once the
    topic's slot is served, then the events go through."""
    settings = _fast(redis_url=restart_cluster.url)
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream("parcels")
    seen: list[int] = []

    @worker(topic="parcels")
    async def ship(parcel: dict[str, int]) -> None:
        seen.append(parcel["n"])

    async with RedisManager(settings) as manager:
        redis: Any = manager.get_client()
        running = run_workers(ship, settings=settings, redis=redis)
        with LogCounter() as logs:
            async with Unserved(restart_cluster, redis, stream) as slot:
                await _start_while_unserved(slot, logs, running.__aenter__(), attempts=1)
            try:
                producer = Producer(settings)
                await producer.send("parcels", {"n": 7})
                await producer.close()
                await wait_for(lambda: seen == [7], timeout=10)
            finally:
                await running.__aexit__(None, None, None)
        assert len(logs.records) < _MAX_WARNINGS, logs.summary()
