"""Streams for the dashboard tests: dead letters written by real workers, and a lagging group.

- ``calc``: two ``calc.reject`` actions dead-lettered (``non_retryable``) by a pool that is then
  stopped, so nothing reads a replayed entry; one payload holds ``<script>`` markup;
- ``users``: three actions, and a group whose consumer ``users-1`` has read one of them and
  not ACKed it (lag 2, pending 1);
- :func:`seed_partitioned`: ``calc`` with :data:`PARTITIONS` partitions and dead letters on two.

The dashboard itself reads through a pool of service ``board`` (:func:`board_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from common.clients.queue_manager import QueueManager
from tests.helpers import wait_for
from tests.integration.workers import CalcWorker

SCRIPT = "<script>alert('owned')</script>"
AUTH_TOKEN = "let-me-in"


@dataclass(frozen=True, slots=True)
class Seeded:
    calc_stream: str
    calc_dead_letters: str
    users_stream: str
    dead_letter_ids: list[str]  # oldest first: the plain one, then the one with SCRIPT


def board_settings(settings: CommonAppSettings, password: str = "s3cret") -> CommonAppSettings:
    """The dashboard app's pool: service ``board``, its URL with a password (Redis without
    ``requirepass`` accepts any for the ``default`` user) that must never be shown."""
    url = settings.redis_url.replace("redis://", f"redis://default:{password}@", 1)
    return settings.model_copy(update={"service_name": "board", "redis_url": url})


async def seed(settings: CommonAppSettings, redis: aioredis.Redis) -> Seeded:
    queues = QueueManager(settings.queue_prefix, settings.environment)
    calc = settings.model_copy(update={"service_name": "calc"})
    dead_letters = queues.dead_letter_stream("calc")
    async with WorkerPool(CalcWorker, calc, num_workers=1) as pool:
        client = BaseRedisClient("api", redis, calc)
        for message in ("bad input, never retry", SCRIPT):
            action = DomainAction(
                action_type="calc.reject", data={"message": message, "note": message}
            )
            await client.send_action_async(action)
        dead = pool.workers[0].stats.dead_lettered
        await wait_for(lambda: dead.get("non_retryable") == 2)

        async def written() -> bool:
            return int(await redis.xlen(dead_letters)) == 2

        await wait_for(written)
        await client.close()
    users = queues.action_stream("users")
    client = BaseRedisClient("api", redis, settings)
    for n in range(3):
        await client.send_action_async(DomainAction(action_type="users.create", data={"n": n}))
    await client.close()
    await redis.xgroup_create(users, "users-group", id="0")
    await redis.xreadgroup("users-group", "users-1", {users: ">"}, count=1)
    ids = [
        entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        for entry_id, _ in await redis.xrange(dead_letters)
    ]
    return Seeded(queues.action_stream("calc"), dead_letters, users, ids)


PARTITIONS = 3


def key_for(partition: int) -> str:
    """A partition key that falls on ``partition`` of :data:`PARTITIONS`."""
    return next(
        key
        for key in (f"key{i}" for i in range(1000))
        if QueueManager.partition_of(key, PARTITIONS) == partition
    )


async def seed_partitioned(settings: CommonAppSettings, redis: aioredis.Redis) -> None:
    """Service ``calc`` with :data:`PARTITIONS` partitions, by a pool then stopped: partition 0
    one action handled, partition 1 one dead letter, partition 2 two."""
    calc = settings.model_copy(update={"service_name": "calc", "stream_partitions": PARTITIONS})
    async with WorkerPool(CalcWorker, calc, num_workers=1) as pool:
        client = BaseRedisClient("api", redis, calc)
        add = DomainAction(action_type="calc.add", data={"a": 1, "b": 2})
        await client.send_action_async(add, partition_key=key_for(0))
        for partition in (1, 2, 2):
            action = DomainAction(action_type="calc.reject", data={"message": f"p{partition}"})
            await client.send_action_async(action, partition_key=key_for(partition))
        worker = pool.workers[0]
        await wait_for(lambda: worker.stats.dead_lettered.get("non_retryable") == 3)
        await wait_for(lambda: len(worker.handled) == 1)
        queues = QueueManager(settings.queue_prefix, settings.environment)

        async def written() -> bool:
            counts = [await redis.xlen(queues.dead_letter_stream("calc", k)) for k in (1, 2)]
            return counts == [1, 2]

        await wait_for(written)
        await client.close()
