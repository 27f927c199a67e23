"""Partitioned topics (``topic_partitions``) end to end on a real server: a P = 4 topic read by
two groups, every event handled once per group and per key in order by a lone consumer, a
failure retried then dead-lettered on its partition and replayed from there; ``status`` shows
the partitions; a smaller P drains what larger partitions hold. Re-run on a 3-master cluster by
tests/cluster/test_topics_on_cluster.py."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import is_cluster
from common.config import CommonAppSettings
from common.messaging import ActionContext, registry, run_workers, worker
from common.messaging.events import decode_event
from common.messaging.producer import Producer
from tests.helpers import wait_for
from tests.ops.conftest import Invoke

TOPIC = "tparts"  # its 4 partitions' hash tags fall on all 3 masters of the cluster fixture
P = 4
KEYS = [f"k{i}" for i in range(8)]
PER_KEY = 8


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    before = dict(registry._registry)
    yield
    registry._registry.clear()
    registry._registry.update(before)


def _partition(key: str) -> int:
    return QueueManager.partition_of(key, P)


BAD = next(k for k in (f"bad{i}" for i in range(100)) if _partition(k) != 0)


class Seen:
    broken = True
    audit: list[tuple[str, int]] = []
    billed: Counter[tuple[str, int]] = Counter()
    failures: list[int] = []


async def _on_partitions(
    redis: aioredis.Redis, queues: QueueManager, settings: CommonAppSettings
) -> dict[int, list[str]]:
    """The keys of the events on each partition of TOPIC."""
    found: dict[int, list[str]] = {}
    for k in range(P):
        for _, fields in await redis.xrange(queues.topic_stream(TOPIC, k)):
            event = decode_event(fields, settings.max_payload_bytes)
            found.setdefault(k, []).append(str(event.key))
    return found


async def test_a_partitioned_topic_two_groups_order_dead_letters_replay_and_status(
    settings: CommonAppSettings, redis: aioredis.Redis, cli: Invoke
) -> None:
    Seen.broken, Seen.audit, Seen.billed, Seen.failures = True, [], Counter(), []
    settings = settings.model_copy(update={"topic_partitions": {TOPIC: P}, "worker_batch_size": 5})
    queues = QueueManager(settings.queue_prefix, settings.environment)
    partitions = list(queues.topic_partition_streams(TOPIC, "billing", P))

    @worker(TOPIC, group_id="audit")  # one consumer, concurrency 1: per-key order
    async def audit(payload: dict[str, Any]) -> None:
        Seen.audit.append((payload["key"], payload["seq"]))

    @worker(TOPIC, group_id="billing", concurrency=3, consumers=2, max_retries=2)
    async def bill(payload: dict[str, Any], context: ActionContext) -> None:
        if payload["key"] == BAD and Seen.broken:
            Seen.failures.append(context.delivery_count)
            raise RuntimeError("ledger down")
        Seen.billed[(payload["key"], payload["seq"])] += 1

    async with run_workers(audit, bill, settings=settings) as pool:
        for consumer in pool.workers:  # every consumer of both groups reads all P partitions
            assert list(consumer.streams) == partitions
        if is_cluster(redis):
            cluster: Any = redis
            nodes = {cluster.get_node_from_key(stream).name for stream in partitions}
            assert len(nodes) == 3  # the partitions spread over every master

        producer = Producer(settings)
        for seq in range(PER_KEY):
            for key in KEYS:
                await producer.send(TOPIC, {"key": key, "seq": seq}, key=key)
        await producer.send(TOPIC, {"key": BAD, "seq": 0}, key=BAD)
        await producer.close()
        total = len(KEYS) * PER_KEY + 1

        dead = queues.topic_dead_letter_stream(TOPIC, "billing", _partition(BAD))
        await wait_for(lambda: len(Seen.audit) == total and sum(Seen.billed.values()) == total - 1)
        await wait_for(lambda: redis.xlen(dead))
        assert Seen.failures == [1, 2]  # retried once, then dead-lettered on its partition

        # each event on the partition of its key; each handled once per group, keys in order
        on = await _on_partitions(redis, queues, settings)
        assert {k: {_partition(key) for key in keys} for k, keys in on.items()} == {
            k: {k} for k in on
        }
        assert len(on) == P
        assert Counter(Seen.audit) == Counter(
            {(key, s) for key in KEYS for s in range(PER_KEY)} | {(BAD, 0)}
        )
        assert set(Seen.billed.values()) == {1}
        assert set(Seen.billed) == {(key, s) for key in KEYS for s in range(PER_KEY)}
        for key in KEYS:
            assert [s for k, s in Seen.audit if k == key] == list(range(PER_KEY)), key

        status = await cli("status", "--service", TOPIC, "--json")
        assert status.exit_code == 0, status.output
        rows = json.loads(status.stdout)
        assert [(r["kind"], r["partition"], r["stream"]) for r in rows] == [
            ("topic", k, queues.topic_stream(TOPIC, k)) for k in range(P)
        ]
        assert [r["length"] for r in rows] == [len(on[k]) for k in range(P)]
        assert [r["dead_letters"] for r in rows] == [int(k == _partition(BAD)) for k in range(P)]
        for row in rows:
            assert {g["name"]: g["pending"] for g in row["groups"]} == {"audit": 0, "billing": 0}
        table = await cli("status", COLUMNS="200")
        assert table.exit_code == 0, table.output
        assert "partition" in table.stdout

        unnamed = await cli("dlq", "list", TOPIC)
        assert unnamed.exit_code == 1
        assert "has groups audit, billing: name one with --group" in unnamed.output
        listed = await cli("dlq", "list", TOPIC, "--group", "billing", "--json")
        assert listed.exit_code == 0, listed.output
        [record] = json.loads(listed.stdout)
        assert (record["partition"], record["reason"]) == (_partition(BAD), "max_retries")
        assert record["name"] == f"{_partition(BAD)}:{record['id']}"
        assert record["stream"] == queues.topic_stream(TOPIC, _partition(BAD))

        Seen.broken = False
        length = await redis.xlen(record["stream"])
        replayed = await cli("dlq", "replay", TOPIC, "--group", "billing", "--yes", "--json")
        assert replayed.exit_code == 0, replayed.output
        assert list(json.loads(replayed.stdout)["replayed"]) == [record["name"]]
        assert await redis.xlen(record["stream"]) == length + 1  # back on its own partition
        await wait_for(lambda: Seen.billed[(BAD, 0)] == 1)
        await wait_for(lambda: Seen.audit.count((BAD, 0)) == 2)  # every group reads it again
        assert await redis.xlen(dead) == 0

        # ``common publish --key`` puts the event on the key's partition too
        published = await cli(
            "publish", TOPIC, '{"key": "k0", "seq": 99}', "--key", "k0",
            TOPIC_PARTITIONS=json.dumps({TOPIC: P}),
        )  # fmt: skip
        assert published.exit_code == 0, published.output
        assert json.loads(published.stdout)["stream"] == queues.topic_stream(
            TOPIC, _partition("k0")
        )
        await wait_for(lambda: ("k0", 99) in Seen.audit)
        assert [s for k, s in Seen.audit if k == "k0"] == [*range(PER_KEY), 99]


async def test_a_smaller_partition_count_drains_what_the_larger_partitions_hold(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    wide = settings.model_copy(update={"topic_partitions": {TOPIC: P}})
    narrow = settings.model_copy(update={"topic_partitions": {TOPIC: 2}})
    queues = QueueManager(settings.queue_prefix, settings.environment)
    seen: list[int] = []

    @worker(TOPIC, group_id="drain")
    async def drain(payload: dict[str, int]) -> None:
        seen.append(payload["n"])

    producer = Producer(wide)  # published with P = 4 before any subscriber ran
    for n in range(40):
        await producer.send(TOPIC, {"n": n}, key=f"key{n}")
    await producer.close()
    assert all([await redis.exists(queues.topic_stream(TOPIC, k)) for k in range(P)])

    async with run_workers(drain, settings=narrow) as pool:
        [consumer] = pool.workers  # P = 2, and the partitions beyond that hold work
        assert list(consumer.streams) == [queues.topic_stream(TOPIC, k) for k in range(P)]
        await wait_for(lambda: sorted(seen) == list(range(40)))
    async with run_workers(drain, settings=narrow) as pool:
        [consumer] = pool.workers  # drained: no longer read
        assert list(consumer.streams) == [queues.topic_stream(TOPIC, k) for k in range(2)]
    assert sorted(seen) == list(range(40))
