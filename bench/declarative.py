"""The declarative layer against the engine it runs on, measured in the same run.

- ``@worker`` draining pre-loaded events with a no-op handler / a ``BaseWorker`` draining the
  same number of pre-loaded actions with a no-op handler (same data, same default settings,
  one consumer each);
- the same ``@worker`` with one ``Depends`` dependency / the ``BaseWorker`` drain;
- ``Producer.send(topic, data)`` awaited one at a time / ``send_action_async(DomainAction(...))``
  awaited one at a time (each side builds its envelope from the same data in the loop).

Here "ours" is the declarative side and "raw" the ``BaseWorker``/``BaseRedisClient`` side, so the
ratio is declarative/engine (issue 13's targets: 0.90, 0.80, 0.90). Both sides are timed in
wall time and in this process's CPU time; the rows compare items per CPU-second (the wall-time
rates are in each row's detail), because on the shared 2-core machine wall time swings by 2-4x
with the neighbours' load while the CPU cost per message does not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from bench import ours
from bench.report import Row
from bench.workload import (
    ACTION_TYPE,
    PRELOAD_CHUNK,
    SERVICE,
    NoopWorker,
    action_stream,
    encode_entries,
    make_actions,
    make_data,
    median,
    new_prefix,
    settings_for,
    wait_until,
)
from common import BaseRedisClient, DomainAction, RedisManager, WorkerPool
from common.clients.queue_manager import QueueManager
from common.messaging import Depends, MessagingPool, Producer, worker
from common.messaging.events import EVENT_FIELD, Event, encode_event
from common.messaging.runner import subscription_of
from common.messaging.subscription import Subscription
from common.models.codec import ACTION_FIELD
from common.workers.consumer_pool import ConsumerPool

if TYPE_CHECKING:
    from bench.suite import Suite

__all__ = ["base_drain", "drain", "scenario", "send_action_awaited", "send_awaited"]

TOPIC = "bench.events"
DRAIN_TARGET = 0.90
DEPENDS_TARGET = 0.80
SEND_TARGET = 0.90


def _one() -> int:
    return 1


@worker(topic=TOPIC)
async def noop(payload: dict[str, Any]) -> None:
    return None


@worker(topic=TOPIC)
async def noop_with_depends(payload: dict[str, Any], one: int = Depends(_one)) -> None:
    return None


def encode_events(n: int) -> list[bytes]:
    """``n`` topic entries with the same data as the engine side's actions."""
    return [
        encode_event(Event(name=TOPIC, data=make_data(i), source=SERVICE), 1 << 20)[EVENT_FIELD]
        for i in range(n)
    ]


class Rate(dict[str, float]):
    """``wall``: items per second; ``cpu``: items per CPU-second of this process (what the
    ratio compares: on a shared 2-core machine, wall time swings with the neighbours' load)."""


def _rate(n: int, wall_s: float, cpu_s: float) -> Rate:
    return Rate(wall=n / wall_s, cpu=n / max(cpu_s, 1e-9))


async def _preload(
    redis: aioredis.Redis, stream: str, field: str, entries: Sequence[bytes]
) -> None:
    key = field.encode()
    for first in range(0, len(entries), PRELOAD_CHUNK):
        pipe = redis.pipeline(transaction=False)
        for raw in entries[first : first + PRELOAD_CHUNK]:
            pipe.xadd(stream, {key: raw})
        await pipe.execute()


async def _drain(pool: ConsumerPool[Any], n: int) -> Rate:
    wall, cpu = time.perf_counter(), time.process_time()
    await pool.start()
    try:
        await wait_until(lambda: sum(w.stats.acked for w in pool.workers) >= n, timeout=300)
        return _rate(n, time.perf_counter() - wall, time.process_time() - cpu)
    finally:
        await pool.stop()


async def base_drain(url: str, prefix: str, entries: Sequence[bytes]) -> Rate:
    """One ``BaseWorker`` (no-op handler) draining pre-loaded actions (as ``ours.drain``)."""
    settings = settings_for(url, prefix)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await _preload(redis, action_stream(prefix), ACTION_FIELD, entries)
        return await _drain(WorkerPool(NoopWorker, settings, redis, num_workers=1), len(entries))


async def drain(url: str, prefix: str, entries: Sequence[bytes], target: Subscription) -> Rate:
    """One consumer of ``target`` draining pre-loaded events."""
    settings = settings_for(url, prefix)
    stream = QueueManager(prefix, "dev").topic_stream(TOPIC)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        await _preload(redis, stream, EVENT_FIELD, entries)
        return await _drain(MessagingPool([target], settings, redis), len(entries))


async def send_action_awaited(url: str, prefix: str, n: int) -> Rate:
    """``send_action_async(DomainAction(...))`` awaited one at a time: the action is built in
    the loop, as ``Producer.send`` builds its event (the same data)."""
    settings = settings_for(url, prefix)
    data = [make_data(i) for i in range(n)]
    async with RedisManager(settings) as manager:
        client = BaseRedisClient(ours.CALLER, manager.get_client(), settings)
        wall, cpu = time.perf_counter(), time.process_time()
        for message in data:
            await client.send_action_async(DomainAction(action_type=ACTION_TYPE, data=message))
        rate = _rate(n, time.perf_counter() - wall, time.process_time() - cpu)
        await client.close()
    return rate


async def send_awaited(url: str, prefix: str, n: int) -> Rate:
    """``Producer.send`` awaited one at a time (the same data as the actions)."""
    settings = settings_for(url, prefix)
    data = [make_data(i) for i in range(n)]
    async with RedisManager(settings) as manager:
        producer = Producer(settings, manager.get_client())
        wall, cpu = time.perf_counter(), time.process_time()
        for message in data:
            await producer.send(TOPIC, message)
        rate = _rate(n, time.perf_counter() - wall, time.process_time() - cpu)
        await producer.close()
    return rate


async def scenario(suite: Suite) -> list[Row]:
    s = suite.sizes
    suite.log(f"declarative: {s.drain} pre-loaded events / actions, {s.send} awaited sends")
    events = encode_events(s.drain)
    actions = encode_entries(make_actions(s.drain))
    url = suite.url
    plain, injected = subscription_of(noop), subscription_of(noop_with_depends)
    r = await suite._runs(
        {
            "base_drain": lambda: base_drain(url, new_prefix(), actions),
            "worker_drain": lambda: drain(url, new_prefix(), events, plain),
            "depends_drain": lambda: drain(url, new_prefix(), events, injected),
            "send_action_async": lambda: send_action_awaited(url, new_prefix(), s.send),
            "producer_send": lambda: send_awaited(url, new_prefix(), s.send),
        }
    )
    m = {name: median([run["cpu"] for run in values]) for name, values in r.items()}
    wall = {name: median([run["wall"] for run in values]) for name, values in r.items()}
    drains = {k: v for k, v in r.items() if k.endswith("drain")}
    sends = {k: v for k, v in r.items() if not k.endswith("drain")}
    return [
        Row(
            "declarative_drain",
            "@worker no-op drain / BaseWorker drain, 1 consumer",
            "msg/cpu-s",
            m["worker_drain"],
            m["base_drain"],
            target=DRAIN_TARGET,
            ratio_of="@worker/BaseWorker",
            detail={"runs": drains, "wall_medians": wall},
        ),
        Row(
            "declarative_depends_drain",
            "@worker + 1 Depends drain / BaseWorker drain",
            "msg/cpu-s",
            m["depends_drain"],
            m["base_drain"],
            target=DEPENDS_TARGET,
            ratio_of="@worker+Depends/BaseWorker",
        ),
        Row(
            "declarative_send",
            "producer.send awaited / send_action_async awaited",
            "msg/cpu-s",
            m["producer_send"],
            m["send_action_async"],
            target=SEND_TARGET,
            ratio_of="send/send_action_async",
            detail={"runs": sends},
        ),
    ]
