"""Partitioned action streams (``stream_partitions``) on a real 3-master Redis Cluster: the
partitions spread over the masters, one worker reads them all, per-key order holds and nothing
is lost; lowering P drains what the dropped partitions still hold."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from common import BaseRedisClient, BaseWorker, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from common.testing import RedisCluster, RedisServer
from tests.fault.harness import FaultRun
from tests.helpers import wait_for

P = 6


def _queues(settings: CommonAppSettings) -> QueueManager:
    return QueueManager(settings.queue_prefix, settings.environment)


def _node(redis: aioredis.Redis, key: str) -> str:
    cluster: Any = redis
    return str(cluster.get_node_from_key(key).name)


class SeqWorker(BaseWorker):
    """Records (key, seq) of each ``calc.step`` in the order handled."""

    seen: list[tuple[str, int]] = []

    async def _handle_calc_step(self, action: DomainAction) -> None:
        type(self).seen.append((action.data["key"], action.data["seq"]))

    async def _handle_calc_echo(self, action: DomainAction) -> dict[str, Any]:
        return {"n": action.data["n"]}


def _steps(keys: int, per_key: int) -> list[DomainAction]:
    """``per_key`` actions for each of ``keys`` keys, interleaved (k0#0, k1#0, ... k0#1 ...)."""
    return [
        DomainAction(action_type="calc.step", data={"key": f"k{k}", "seq": seq})
        for seq in range(per_key)
        for k in range(keys)
    ]


def _key_of(action: DomainAction) -> str:
    return str(action.data["key"])


def _assert_order_and_complete(seen: list[tuple[str, int]], keys: int, per_key: int) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, seq in seen:
        by_key[key].append(seq)
    assert len(by_key) == keys
    for key, seqs in by_key.items():
        assert seqs == list(range(per_key)), f"{key}: {seqs}"  # in order, once each, none lost


async def test_partitions_spread_over_the_masters_and_one_worker_keeps_per_key_order(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"stream_partitions": P, "worker_batch_size": 7})
    queues = _queues(settings)
    partitions = list(queues.partition_streams("calc", P))
    assert len({_node(redis, s) for s in partitions}) == 3  # {calc}..{calc:5}: every master
    SeqWorker.seen = []
    keys, per_key = 24, 25
    client = BaseRedisClient("api", redis, settings)
    async with WorkerPool(SeqWorker, settings, num_workers=1) as pool:
        assert set(pool.workers[0].streams) == set(partitions)
        actions = _steps(keys, per_key)
        half = len(actions) // 2
        await client.send_actions_async(actions[:half], partition_by=_key_of)
        for action in actions[half:]:  # single sends, coalesced, while the worker reads
            await client.send_action_async(action, partition_key=_key_of(action))
        await wait_for(lambda: len(SeqWorker.seen) >= keys * per_key, timeout=20)
        # The default key (the action id) spreads a pseudo-sync round trip over partitions.
        replies = await asyncio.gather(
            *(
                client.send_action_pseudo_sync(
                    DomainAction(action_type="calc.echo", data={"n": n}), timeout=10
                )
                for n in range(30)
            )
        )
        assert [r.data["n"] for r in replies] == list(range(30))
        assert pool.workers[0].stats.reclaimed == 0  # nothing waited for a reclaim
    await client.close()
    _assert_order_and_complete(SeqWorker.seen, keys, per_key)
    lengths = [await redis.xlen(s) for s in partitions]
    assert sum(lengths) == keys * per_key + 30 and all(lengths), lengths
    for stream in partitions:
        assert (await redis.xpending(stream, "calc-group"))["pending"] == 0


async def test_callbacks_go_to_the_partition_of_their_key(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"stream_partitions": P})
    queues = _queues(settings)
    client = BaseRedisClient("api", redis, settings)
    await client.send_action_async_with_callback(
        DomainAction(action_type="calc.echo", data={"n": 1}), "api.done", partition_key="k7"
    )
    await client.close()
    k = QueueManager.partition_of("k7", P)
    [(_, [(_, fields)])] = await redis.xread({queues.action_stream("calc", k): "0"})
    action = DomainAction.model_validate_json(fields[b"action"])
    assert action.callback_queue_name == queues.action_stream("api", k)
    assert queues.is_valid_target(action.callback_queue_name)


async def test_lowering_partitions_loses_nothing_unread_or_pending(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Sent with P = 6; a consumer of P = 6 took some entries of partitions 4 and 5 and died.
    Workers restarted with P = 3 also read partitions 3..5 while they hold work: every entry
    runs, once, nothing stays pending; a drained leftover is no longer read after that."""
    queues = _queues(settings)
    six = settings.model_copy(update={"stream_partitions": 6})
    three = settings.model_copy(update={"stream_partitions": 3})
    keys, per_key = 12, 10
    sender = BaseRedisClient("api", redis, six)
    await sender.send_actions_async(_steps(keys, per_key), partition_by=_key_of)
    await sender.close()
    group = queues.consumer_group("calc")
    held = 0
    for k in (4, 5):  # a P = 6 consumer read these, then died
        stream = queues.action_stream("calc", k)
        await redis.xgroup_create(stream, group, id="0")
        got = await redis.xreadgroup(group, "calc-worker-dead-0", {stream: ">"}, count=3)
        held += sum(len(entries) for _, entries in got)
    assert held == 6
    SeqWorker.seen = []
    async with WorkerPool(SeqWorker, three, num_workers=2) as pool:
        read = set(pool.workers[0].streams)
        assert read == set(queues.partition_streams("calc", 6))  # 3..5 still hold work
        await wait_for(lambda: len(SeqWorker.seen) >= keys * per_key, timeout=20)

        async def nothing_pending() -> bool:
            for stream in read:
                if (await redis.xpending(stream, group))["pending"]:
                    return False
            return True

        await wait_for(nothing_pending, timeout=10)
    expected = sorted((f"k{k}", s) for k in range(keys) for s in range(per_key))
    assert sorted(SeqWorker.seen) == expected
    async with WorkerPool(SeqWorker, three, num_workers=1) as pool:  # drained: not read again
        assert set(pool.workers[0].streams) == set(queues.partition_streams("calc", 3))


async def test_a_sigkilled_worker_s_entries_are_reclaimed_on_the_cluster(
    redis: aioredis.Redis, redis_cluster: RedisCluster, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A worker process (3 partitions on the cluster) is SIGKILLed with handlers running;
    another process reclaims what it held on every partition: each action completes, none
    stays pending, and only actions the dead one had started run twice."""
    records = aioredis.Redis.from_url(redis_server.url)
    run = FaultRun(redis_cluster.url, redis, records, redis_server.url, tmp_path)
    try:
        settings = CommonAppSettings(
            redis_url=redis_cluster.url, service_name="faultclient", queue_prefix=run.prefix
        ).model_copy(update={"stream_partitions": 3})
        client = BaseRedisClient("faultclient", redis, settings)
        actions = [DomainAction(action_type="fault.slow", data={"seconds": 0.2}) for _ in range(30)]
        await client.send_actions_async(actions)
        await client.close()
        ids = {str(a.action_id) for a in actions}
        options = {"partitions": 3, "workers": 2, "concurrency": 4, "visibility": 1.0}
        [victim] = await run.start(**options)
        await wait_for(lambda: _started(run, 6), timeout=15)
        await run.kill(victim)
        started_by_victim = set(await run.counts("started"))
        await run.start(**options)
        await wait_for(lambda: _handled_all(run, ids), timeout=30)
        queues = QueueManager(run.prefix, "dev")
        streams = list(queues.partition_streams("fault", 3))

        async def nothing_pending() -> bool:
            pending = [(await redis.xpending(s, run.group))["pending"] for s in streams]
            return not any(pending)

        await wait_for(nothing_pending, timeout=10)
        handled = await run.counts("handled")
        assert set(handled) == ids
        twice = {aid for aid, n in handled.items() if n > 1}
        assert twice <= started_by_victim
        assert await run.total_stat("reclaimer.reclaimed") >= 1
    finally:
        run.cleanup()
        await records.aclose()


async def _started(run: FaultRun, n: int) -> bool:
    return sum((await run.counts("started")).values()) >= n


async def _handled_all(run: FaultRun, ids: set[str]) -> bool:
    return set(await run.counts("handled")) >= ids
