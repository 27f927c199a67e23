"""How one worker reads P = 6 partitions on a real 3-master Redis Cluster: successive reads
start at successive partitions (none starves), a hot partition beside idle ones is read in
full, and if one partition's read fails, what the others delivered is run rather than left
pending until a reclaim."""

from __future__ import annotations

from collections import Counter

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from common import BaseWorker, CommonAppSettings, DomainAction
from common.clients.queue_manager import QueueManager
from common.testing import RedisCluster
from common.workers.outcome import Delivery

P = 6


class Idle(BaseWorker):
    async def _handle_calc_step(self, action: DomainAction) -> None:
        return None


async def _worker(settings: CommonAppSettings, redis: aioredis.Redis) -> tuple[Idle, list[str]]:
    settings = settings.model_copy(update={"stream_partitions": P})
    worker = Idle(settings, redis)
    await worker.initialize()
    streams = list(
        QueueManager(settings.queue_prefix, settings.environment).partition_streams("calc", P)
    )
    assert set(worker.streams) == set(streams)
    return worker, streams


async def _fill(redis: aioredis.Redis, stream: str, n: int) -> None:
    for seq in range(n):
        await redis.xadd(
            stream,
            {"data": DomainAction(action_type="calc.step").model_dump_json(), "seq": str(seq)},
        )


def _per_stream(batch: list[Delivery]) -> Counter[str]:
    return Counter(delivery.stream for delivery in batch)


async def test_successive_reads_start_at_successive_partitions(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    worker, streams = await _worker(settings, redis)
    for stream in streams:
        await _fill(redis, stream, 10)
    firsts = []
    for _ in range(P):
        batch = await worker._read(10, 10)
        assert len(batch) == 10 and len(_per_stream(batch)) == 1  # one partition's, in order
        assert [d.fields[b"seq"] for d in batch] == [str(i).encode() for i in range(10)]
        firsts.append(batch[0].stream)
    assert sorted(firsts) == sorted(streams)  # none starves behind another


async def test_a_hot_partition_beside_idle_ones_is_read_in_full(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    worker, streams = await _worker(settings, redis)
    await _fill(redis, streams[3], 50)
    batch = await worker._read(40, 10)
    assert _per_stream(batch) == {streams[3]: 40}
    batch = await worker._read(40, 10)
    assert _per_stream(batch) == {streams[3]: 10}
    await _fill(redis, streams[1], 3)
    await _fill(redis, streams[5], 20)
    first = await worker._read(20, 10)
    second = await worker._read(20, 10)
    assert _per_stream(first) + _per_stream(second) == {streams[1]: 3, streams[5]: 20}


async def test_entries_of_the_others_run_when_one_partition_s_read_fails(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    worker, streams = await _worker(settings, redis)
    for stream in streams:
        await _fill(redis, stream, 4)
    order = list(worker.streams)  # the first read sweeps them in this order
    failing, others = order[-1], order[:-1]
    await redis.xgroup_destroy(failing, worker.group)  # e.g. flushed by a restart
    with pytest.raises(ResponseError, match="NOGROUP"):
        await worker._read(60, 10)
    # Delivered by the reads before: held and queued to run next, not left pending.
    assert _per_stream(worker.intake) == dict.fromkeys(others, 4)
    assert all(worker.held[d.key] is d for d in worker.intake)
    await worker._ensure_group()
    batch = await worker._next_batch()  # the intake first
    assert _per_stream(batch) == dict.fromkeys(others, 4)
    assert _per_stream(await worker._read(60, 10)) == {failing: 4}


async def test_a_plain_redis_py_cluster_client_reads_every_partition(
    settings: CommonAppSettings, redis_cluster: RedisCluster
) -> None:
    """An application's own ``redis.asyncio.RedisCluster`` (not the toolkit's): the sweep of
    the other partitions goes through its commands."""
    plain = aioredis.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
    try:
        worker, streams = await _worker(settings, plain)
        for i, stream in enumerate(streams):
            await _fill(plain, stream, i + 1)
        batch = await worker._read(100, 10)
        assert _per_stream(batch) == {s: i + 1 for i, s in enumerate(streams)}
    finally:
        await plain.aclose()
