"""Settlement by hand through a DeliveryContext, and retry policies chosen per delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from common import CommonAppSettings
from common.workers.context import DeliveryContext
from common.workers.delays import delay_set_key
from common.workers.engine import StreamConsumer
from common.workers.outcome import Ack, Delivery, Outcome
from common.workers.retry import RetryPolicy
from tests.helpers import wait_for

Handler = Callable[[DeliveryContext], Awaitable[None]]


class ContextConsumer(StreamConsumer):
    """Runs ``handler(context)`` for each entry; returning settles as Ack when auto_ack."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: CommonAppSettings,
        handler: Handler,
        *,
        auto_ack: bool = True,
        policy: RetryPolicy | None = None,
    ) -> None:
        stream = f"{settings.queue_prefix}:{{ctx}}:in"
        super().__init__(
            redis,
            settings,
            stream=stream,
            group="g",
            consumer="c1",
            dead_letter_stream=f"{settings.queue_prefix}:{{ctx}}:dead",
        )
        self.handler = handler
        self.auto_ack = auto_ack
        self.policy = policy
        self.runs: list[tuple[bytes, int]] = []

    async def _process_delivery(self, delivery: Delivery) -> Outcome:
        delivery.policy = self.policy
        context = DeliveryContext(self, delivery, auto_ack=self.auto_ack)
        self.runs.append((delivery.entry_id, delivery.attempt))
        await self.handler(context)
        return context.resolve(Ack())


async def _run(consumer: ContextConsumer, check: Callable[[], Awaitable[bool]]) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        await wait_for(check, timeout=10)
    finally:
        await consumer.stop()
        await asyncio.wait_for(task, 10)


async def _pending(redis: aioredis.Redis, consumer: ContextConsumer) -> int:
    return int((await redis.xpending(consumer.stream, consumer.group))["pending"])


async def test_reject_with_a_delay_retries_through_the_delay_set_and_calls_are_idempotent(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(ctx: DeliveryContext) -> None:
        if ctx.delivery_count == 1:
            assert await ctx.reject(requeue=True, delay=0.3)
            assert not await ctx.ack() and not await ctx.reject(requeue=False)  # the first one wins
            seen.append({"stream": ctx.stream, "group": ctx.group, "raw": ctx.raw})
        else:
            assert await ctx.ack()

    consumer = ContextConsumer(redis, settings, handler)
    entry_id = await redis.xadd(consumer.stream, {"k": "v"})

    async def retried_then_acked() -> bool:
        return len(consumer.runs) == 2 and await _pending(redis, consumer) == 0

    await _run(consumer, retried_then_acked)
    assert [attempt for _, attempt in consumer.runs] == [1, 2]
    assert seen == [{"stream": consumer.stream, "group": "g", "raw": {b"k": b"v"}}]
    assert consumer.runs[0][0] == entry_id
    assert await redis.zcard(delay_set_key(consumer.stream, "g")) == 0


async def test_reject_without_requeue_dead_letters_at_once(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async def handler(ctx: DeliveryContext) -> None:
        await ctx.reject(requeue=False)

    consumer = ContextConsumer(redis, settings, handler)
    await redis.xadd(consumer.stream, {"k": "v"})

    async def dead() -> bool:
        return await redis.xlen(consumer.outbox.dead_letter_stream) == 1

    await _run(consumer, dead)
    [(_, record)] = await redis.xrange(consumer.outbox.dead_letter_stream)
    assert record[b"reason"] == b"rejected" and record[b"retries"] == b"1"
    assert len(consumer.runs) == 1


async def test_manual_mode_retries_what_the_handler_left_unsettled(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """auto_ack off: returning without ack() is a retry, never a silent ACK or a loss."""

    async def handler(ctx: DeliveryContext) -> None:
        if ctx.delivery_count == 2:
            await ctx.ack()

    consumer = ContextConsumer(redis, settings, handler, auto_ack=False)
    await redis.xadd(consumer.stream, {"k": "v"})

    async def acked_on_the_second() -> bool:
        return len(consumer.runs) == 2 and await _pending(redis, consumer) == 0

    await _run(consumer, acked_on_the_second)


async def test_a_delivery_s_own_retry_policy_wins_over_the_consumer_s(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    async def handler(ctx: DeliveryContext) -> None:
        raise RuntimeError("always")

    policy = RetryPolicy(max_retries=2, backoff="fixed", initial_delay=0.0, max_delay=0.0)
    s = settings.model_copy(update={"max_retries": 9})
    consumer = ContextConsumer(redis, s, handler, policy=policy)
    await redis.xadd(consumer.stream, {"k": "v"})

    async def dead() -> bool:
        return await redis.xlen(consumer.outbox.dead_letter_stream) == 1

    await _run(consumer, dead)
    assert [attempt for _, attempt in consumer.runs] == [1, 2]
