"""The declarative layer against the engine it runs on, measured in the same run.

- ``@worker`` draining pre-loaded events with a no-op handler / a ``BaseWorker`` draining the
  same number of pre-loaded actions with a no-op handler (same data, same default settings,
  one consumer each);
- the same ``@worker`` with one ``Depends`` dependency / the ``BaseWorker`` drain;
- ``Producer.send`` awaited one at a time / ``send_action_async`` awaited one at a time.

Here "ours" is the declarative side and "raw" the ``BaseWorker``/``BaseRedisClient`` side, so the
ratio is declarative/engine (issue 13's targets: 0.90, 0.80, 0.90).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench import ours
from bench.report import Row
from bench.workload import (
    PRELOAD_CHUNK,
    SERVICE,
    encode_entries,
    make_actions,
    make_data,
    median,
    new_prefix,
    settings_for,
    wait_until,
)
from common import RedisManager
from common.clients.queue_manager import QueueManager
from common.messaging import Depends, MessagingPool, Producer, worker
from common.messaging.events import EVENT_FIELD, Event, encode_event
from common.messaging.runner import subscription_of
from common.messaging.subscription import Subscription

if TYPE_CHECKING:
    from bench.suite import Suite

__all__ = ["drain", "scenario", "send_awaited"]

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


async def drain(url: str, prefix: str, entries: Sequence[bytes], target: Subscription) -> float:
    """Throughput (events/s) of one consumer of ``target`` draining pre-loaded events."""
    settings = settings_for(url, prefix)
    n = len(entries)
    stream = QueueManager(prefix, "dev").topic_stream(TOPIC)
    async with RedisManager(settings) as manager:
        redis = manager.get_client()
        field = EVENT_FIELD.encode()
        for first in range(0, n, PRELOAD_CHUNK):
            pipe = redis.pipeline(transaction=False)
            for raw in entries[first : first + PRELOAD_CHUNK]:
                pipe.xadd(stream, {field: raw})
            await pipe.execute()
        pool = MessagingPool([target], settings, redis)
        start = time.perf_counter()
        await pool.start()
        try:
            await wait_until(lambda: sum(w.stats.acked for w in pool.workers) >= n, timeout=300)
            return n / (time.perf_counter() - start)
        finally:
            await pool.stop()


async def send_awaited(url: str, prefix: str, n: int) -> float:
    """Throughput of ``Producer.send`` awaited one at a time (the same data as the actions)."""
    settings = settings_for(url, prefix)
    data = [make_data(i) for i in range(n)]
    async with RedisManager(settings) as manager:
        producer = Producer(settings, manager.get_client())
        start = time.perf_counter()
        for message in data:
            await producer.send(TOPIC, message)
        elapsed = time.perf_counter() - start
        await producer.close()
    return n / elapsed


async def scenario(suite: Suite) -> list[Row]:
    s = suite.sizes
    suite.log(f"declarative: {s.drain} pre-loaded events / actions, {s.send} awaited sends")
    events = encode_events(s.drain)
    actions = encode_entries(make_actions(s.drain))
    awaited = make_actions(s.send)
    url = suite.url
    plain, injected = subscription_of(noop), subscription_of(noop_with_depends)
    r = await suite._runs(
        {
            "base_drain": lambda: ours.drain(url, new_prefix(), actions, 1),
            "worker_drain": lambda: drain(url, new_prefix(), events, plain),
            "depends_drain": lambda: drain(url, new_prefix(), events, injected),
            "send_action_async": lambda: ours.send_awaited(url, new_prefix(), awaited),
            "producer_send": lambda: send_awaited(url, new_prefix(), s.send),
        }
    )
    m = {name: median(values) for name, values in r.items()}
    drains = {k: v for k, v in r.items() if k.endswith("drain")}
    sends = {k: v for k, v in r.items() if not k.endswith("drain")}
    return [
        Row(
            "declarative_drain",
            "@worker no-op drain / BaseWorker drain, 1 consumer",
            "msg/s",
            m["worker_drain"],
            m["base_drain"],
            target=DRAIN_TARGET,
            ratio_of="@worker/BaseWorker",
            detail={"runs": drains},
        ),
        Row(
            "declarative_depends_drain",
            "@worker + 1 Depends drain / BaseWorker drain",
            "msg/s",
            m["depends_drain"],
            m["base_drain"],
            target=DEPENDS_TARGET,
            ratio_of="@worker+Depends/BaseWorker",
        ),
        Row(
            "declarative_send",
            "producer.send awaited / send_action_async awaited",
            "msg/s",
            m["producer_send"],
            m["send_action_async"],
            target=SEND_TARGET,
            ratio_of="send/send_action_async",
            detail={"runs": sends},
        ),
    ]
