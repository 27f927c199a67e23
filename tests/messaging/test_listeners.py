"""Seed 000's listeners on a real Redis: Message, hooks, manual settlement, delays across a
restart, visibility, and retry_on_error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from common import CommonAppSettings
from common.clients.queue_manager import QueueManager
from common.messaging import (
    JobListener,
    Message,
    MessageContext,
    job_listener,
    run_workers,
)
from common.messaging.producer import Producer
from tests.helpers import wait_for


def _fast(settings: CommonAppSettings, **update: Any) -> CommonAppSettings:
    return settings.model_copy(
        update={"retry_initial_delay_s": 0.01, "claim_interval_s": 0.1, **update}
    )


async def _dead(redis: aioredis.Redis, settings: CommonAppSettings, queue: str, group: str) -> Any:
    queues = QueueManager(settings.queue_prefix, settings.environment)
    return await redis.xrange(queues.topic_dead_letter_stream(queue, group))


async def test_a_listener_gets_messages_with_their_count_and_its_hooks_run_once(
    settings: CommonAppSettings, producer: Producer
) -> None:
    calls: list[str] = []
    seen: list[tuple[str, Any, int]] = []
    errors: list[tuple[Message, BaseException]] = []

    @job_listener(queue="email-notifications", workers=3, retry_on_error=True, max_retries=3)
    class SendEmailListener(JobListener):
        async def on_startup(self) -> None:
            calls.append("startup")

        async def on_shutdown(self) -> None:
            calls.append("shutdown")

        async def handle(self, message: Message) -> None:
            seen.append((message.id, message.body, message.received_count))
            if message.body["to"] == "broken@example.com":
                raise ConnectionError("smtp down")

        async def on_error(self, message: Message, error: BaseException) -> None:
            errors.append((message, error))

    async with run_workers(SendEmailListener, settings=_fast(settings)) as pool:
        assert len(pool.subscribers(SendEmailListener)) == 3
        ok = await producer.send("email-notifications", {"to": "a@example.com"})
        await producer.send("email-notifications", {"to": "broken@example.com"})
        await wait_for(lambda: len(errors) == 1)
    assert calls == ["startup", "shutdown"]
    [(message, error)] = errors
    assert isinstance(error, ConnectionError) and message.received_count == 3
    broken = [(i, n) for i, body, n in seen if body["to"] == "broken@example.com"]
    assert [n for _, n in broken] == [1, 2, 3]
    assert {i for i, _ in broken} == {message.id}  # the same id on every delivery
    assert message.event is not None and message.id == message.event.event_id
    assert [n for _, body, n in seen if body["to"] == "a@example.com"] == [1]
    assert isinstance(ok, str)


async def test_retry_on_error_off_dead_letters_a_failure_at_once(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    attempts: list[int] = []
    errors: list[str] = []

    @job_listener(queue="stripe-webhooks", workers=2, group_id="stripe")  # retry_on_error=False
    class StripeWebhookListener(JobListener):
        async def handle(self, message: Message) -> None:
            attempts.append(message.received_count)
            raise KeyError("event_type")

        async def on_error(self, message: Message, error: BaseException) -> None:
            errors.append(message.body["event_id"])

    async with run_workers(StripeWebhookListener, settings=_fast(settings)):
        await producer.send("stripe-webhooks", {"event_id": "evt_1"})
        dead = await wait_for(lambda: _dead(redis, settings, "stripe-webhooks", "stripe"))
    assert attempts == [1] and errors == ["evt_1"]
    [(_, fields)] = dead
    assert fields[b"reason"] == b"non_retryable" and b"KeyError" in fields[b"error"]


async def test_manual_mode_acks_rejects_and_retries_what_was_left_unsettled(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    deliveries: list[tuple[str, int]] = []
    settled: list[tuple[str, bool]] = []

    @job_listener(queue="orders", auto_ack=False, workers=2, group_id="orders-manual")
    class OrderListener(JobListener):
        async def handle(self, message: Message, context: MessageContext) -> None:
            kind = message.body["kind"]
            deliveries.append((kind, message.received_count))
            if kind == "good":
                settled.append((kind, await context.ack()))
                settled.append((kind, await context.ack()))  # idempotent: False
            elif kind == "invalid":
                settled.append((kind, await context.reject(requeue=False)))
            elif message.received_count == 1:
                return  # forgot to settle: retried, not lost, not ACKed
            else:
                await context.ack()

    async with run_workers(OrderListener, settings=_fast(settings)) as pool:
        for kind in ("good", "invalid", "forgetful"):
            await producer.send("orders", {"kind": kind})
        dead = await wait_for(lambda: _dead(redis, settings, "orders", "orders-manual"))
        await wait_for(lambda: ("forgetful", 2) in deliveries)
        consumers = pool.subscribers(OrderListener)
        await wait_for(lambda: sum(c.stats.handled for c in consumers) == 2)
        stream = consumers[0].stream
        await wait_for(
            lambda: _pending_count(redis, stream, "orders-manual"), timeout=5, interval=0.05
        )
    assert sorted(deliveries) == [("forgetful", 1), ("forgetful", 2), ("good", 1), ("invalid", 1)]
    assert settled == [("good", True), ("good", False), ("invalid", True)]
    assert [f[b"reason"] for _, f in dead] == [b"rejected"]


async def _pending_count(redis: aioredis.Redis, stream: str, group: str) -> bool:
    return (await redis.xpending(stream, group))["pending"] == 0  # type: ignore[no-any-return]


async def test_a_reject_delay_is_honoured_across_a_worker_restart(
    settings: CommonAppSettings, producer: Producer
) -> None:
    delay = 1.5
    rejected_at: list[float] = []
    seen_at: list[tuple[int, float]] = []

    @job_listener(queue="payments", auto_ack=False, visibility_timeout=1, group_id="pay")
    class PaymentListener(JobListener):
        async def handle(self, message: Message, context: MessageContext) -> None:
            seen_at.append((message.received_count, time.monotonic()))
            if message.received_count == 1:
                rejected_at.append(time.monotonic())
                await context.reject(requeue=True, visibility_timeout=delay)  # seed 000's name
            else:
                await context.ack()

    fast = _fast(settings)
    async with run_workers(PaymentListener, settings=fast) as pool:
        await producer.send("payments", {"order_id": "o-1"})
        [consumer] = pool.subscribers(PaymentListener)
        await wait_for(lambda: consumer.stats.failed == 1)  # the retry is scheduled
    assert len(seen_at) == 1  # stopped well before the delay ran out
    async with run_workers(PaymentListener, settings=fast) as pool:  # a new process, in effect
        [consumer] = pool.subscribers(PaymentListener)
        await wait_for(lambda: consumer.stats.handled == 1, timeout=10)
    [(first_count, _), (count, second)] = seen_at
    assert (first_count, count) == (1, 2)
    assert second - rejected_at[0] >= delay  # no earlier than asked


async def test_extending_visibility_past_the_timeout_keeps_a_long_job_from_being_stolen(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    runs: list[tuple[str, int]] = []
    extended: list[bool] = []

    @job_listener(queue="video-processing", visibility_timeout=0.5, workers=2, group_id="video")
    class ProcessVideoListener(JobListener):
        async def handle(self, message: Message, context: MessageContext) -> None:
            runs.append((context.consumer, message.received_count))
            for _ in range(4):  # 2 s in all: four visibility timeouts
                extended.append(await context.extend_visibility(600))
                await asyncio.sleep(0.5)
            await context.ack()

    async with run_workers(ProcessVideoListener, settings=_fast(settings)) as pool:
        await producer.send("video-processing", {"video_url": "s3://bucket/v.mp4"})
        consumers = pool.subscribers(ProcessVideoListener)
        await wait_for(lambda: sum(c.stats.handled for c in consumers) == 1, timeout=10)
        stream = consumers[0].stream
        await wait_for(lambda: _pending_count(redis, stream, "video"), timeout=5)
        reclaimed = sum(c.stats.reclaimed for c in consumers)
    assert len(runs) == 1 and runs[0][1] == 1  # ran once, never claimed by the other consumer
    assert extended == [True] * 4 and reclaimed == 0
