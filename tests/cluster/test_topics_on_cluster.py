"""Topic streams on a 3-master Redis Cluster: every key of one topic (partition) and subscriber
group (the stream, the group's dead letters, its delay set, scheduled sends) is on one slot, and
a declarative round trip with retries, a dead letter and its replay works there; a partitioned
topic's partitions spread over the masters (tests/ops/test_partitioned_topics.py, re-run)."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from common import CommonAppSettings
from common.clients.queue_manager import QueueManager
from common.clients.scheduled import scheduled_key
from common.messaging import ActionContext, RetryPolicy, run_workers, worker
from common.messaging.producer import Producer
from common.workers.delays import delay_set_key
from tests.helpers import wait_for
from tests.ops.conftest import Invoke
from tests.ops.test_partitioned_topics import (
    test_a_partitioned_topic_two_groups_order_dead_letters_replay_and_status,
    test_a_smaller_partition_count_drains_what_the_larger_partitions_hold,
)

__all__ = [
    "test_a_partitioned_topic_two_groups_order_dead_letters_replay_and_status",
    "test_a_smaller_partition_count_drains_what_the_larger_partitions_hold",
]


async def test_a_topic_round_trip_with_retries_a_dead_letter_and_its_replay(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer, cli: Invoke
) -> None:
    queues = QueueManager(settings.queue_prefix, settings.environment)
    cluster: Any = redis
    state = {"broken": True}
    attempts: dict[int, list[int]] = {}
    handled: list[int] = []

    @worker(
        topic="parcels",
        retry_policy=RetryPolicy(
            max_retries=3, backoff="fixed", initial_delay=0.01, max_delay=0.01
        ),
    )
    async def ship(parcel: dict[str, int], context: ActionContext) -> None:
        attempts.setdefault(parcel["n"], []).append(context.delivery_count)
        if state["broken"] and parcel["n"] % 2:
            raise ConnectionError("carrier down")
        handled.append(parcel["n"])

    async with run_workers(ship, settings=settings) as pool:
        [consumer] = pool.subscribers(ship)
        group = consumer.group
        stream = queues.topic_stream("parcels")
        dead = queues.topic_dead_letter_stream("parcels", group)
        keys = (stream, dead, delay_set_key(stream, group), scheduled_key(stream))
        assert len({cluster.keyslot(key) for key in keys}) == 1
        for n in range(6):
            await producer.send("parcels", {"n": n})
        await wait_for(lambda: consumer.stats.dead_lettered.get("max_retries") == 3)
        await wait_for(lambda: sorted(handled) == [0, 2, 4])
        assert {n: attempts[n] for n in (1, 3, 5)} == {n: [1, 2, 3] for n in (1, 3, 5)}
        assert consumer.stats.retried == 6  # through the delay set, on the topic's slot
        assert await redis.xlen(dead) == 3

        listed = await cli("dlq", "list", "parcels", "--group", group, "--json")
        assert listed.exit_code == 0, listed.output
        records = json.loads(listed.stdout)
        events = [json.loads(json.loads(r["original"])["event"]) for r in records]
        assert sorted(event["data"]["n"] for event in events) == [1, 3, 5]
        state["broken"] = False
        replayed = await cli("dlq", "replay", "parcels", "--group", group, "--yes", "--json")
        assert replayed.exit_code == 0, replayed.output
        assert len(json.loads(replayed.stdout)["replayed"]) == 3
        await wait_for(lambda: sorted(handled) == list(range(6)))
    assert await redis.xlen(dead) == 0
