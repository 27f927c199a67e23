"""@worker functions and Worker classes on a real Redis: pipelines, schemas, groups, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from common import CommonAppSettings, NonRetryableError
from common.clients.queue_manager import QueueManager
from common.messaging import (
    ActionContext,
    Event,
    RetryPolicy,
    Worker,
    run_workers,
    worker,
)
from common.messaging.producer import Producer
from tests.helpers import wait_for


def _fast(settings: CommonAppSettings, **update: Any) -> CommonAppSettings:
    return settings.model_copy(update={"retry_initial_delay_s": 0.01, **update})


async def _events(redis: aioredis.Redis, settings: CommonAppSettings, topic: str) -> list[Event]:
    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream(topic)
    return [Event.model_validate_json(f[b"event"]) for _, f in await redis.xrange(stream)]


async def test_a_two_step_pipeline_publishes_each_result_to_the_next_topic(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    loaded: list[dict[str, Any]] = []

    @worker(topic="raw.data", output_topic="transformed.data")
    async def transform(raw: dict[str, Any]) -> dict[str, Any]:
        return {"value": raw["value"] * 2}

    @worker(topic="transformed.data")
    async def load(data: dict[str, Any]) -> None:
        loaded.append(data)

    assert await transform({"value": 1}) == {"value": 2}  # still a plain function
    async with run_workers(transform, load, settings=settings):
        entry = await producer.send("raw.data", {"value": 21})
        await wait_for(lambda: loaded == [{"value": 42}])
    assert isinstance(entry, str)
    [published] = await _events(redis, settings, "transformed.data")
    [sent] = await _events(redis, settings, "raw.data")
    assert published.trace_id == sent.trace_id and published.source == settings.service_name


async def test_two_groups_each_get_every_event_and_one_group_shares_them(
    settings: CommonAppSettings, producer: Producer
) -> None:
    seen: dict[str, list[int]] = {"billing": [], "audit": []}

    @worker(topic="orders.created", group_id="billing", consumers=3, concurrency=2)
    async def billing(order: dict[str, int]) -> None:
        seen["billing"].append(order["n"])

    @worker(topic="orders.created", group_id="audit")
    async def audit(order: dict[str, int]) -> None:
        seen["audit"].append(order["n"])

    async with run_workers(billing, audit, settings=settings) as pool:
        for n in range(30):
            await producer.send("orders.created", {"n": n})
        await wait_for(lambda: len(seen["billing"]) == 30 and len(seen["audit"]) == 30)
        shares = [c.stats.handled for c in pool.subscribers(billing)]
    assert sorted(seen["billing"]) == sorted(seen["audit"]) == list(range(30))  # no duplicate
    assert len(shares) == 3 and sum(shares) == 30


class PaymentIn(BaseModel):
    amount: float


class PaymentOut(BaseModel):
    paid: float


async def test_schemas_validate_in_and_out_and_invalid_payloads_are_not_retried(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    calls: list[Any] = []

    @worker(
        topic="payments",
        output_topic="payments.done",
        input_schema=PaymentIn,
        output_schema=PaymentOut,
        max_retries=5,
    )
    async def pay(payment: PaymentIn) -> dict[str, Any]:
        calls.append(payment)
        if payment.amount > 100:
            return {"wrong": "shape"}
        return {"paid": payment.amount}

    async with run_workers(pay, settings=_fast(settings)) as pool:
        await producer.send("payments", {"amount": "not a number"})
        await producer.send("payments", {"amount": 500})
        await producer.send("payments", {"amount": 5})
        [consumer] = pool.subscribers(pay)
        await wait_for(lambda: sum(consumer.stats.dead_lettered.values()) == 2)
        await wait_for(lambda: consumer.stats.handled == 1)
    assert [c.amount for c in calls] == [500.0, 5.0]  # the invalid one never ran
    assert isinstance(calls[0], PaymentIn)
    assert [e.data for e in await _events(redis, settings, "payments.done")] == [{"paid": 5.0}]
    dead = await redis.xrange(consumer.outbox.dead_letter_stream)
    assert [f[b"reason"] for _, f in dead] == [b"malformed", b"non_retryable"]


async def test_failures_retry_then_go_to_the_dlq_topic_which_is_an_ordinary_topic(
    settings: CommonAppSettings, producer: Producer
) -> None:
    attempts: list[int] = []
    failed: list[dict[str, Any]] = []

    @worker(
        topic="emails",
        dlq_topic="emails.dlq",
        retry_policy=RetryPolicy(
            max_retries=3, backoff="fixed", initial_delay=0.01, max_delay=0.01
        ),
    )
    async def send_email(email: dict[str, Any], context: ActionContext) -> None:
        attempts.append(context.delivery_count)
        raise ConnectionError("smtp down")

    @worker(topic="emails.dlq")
    async def handle_failed(message: dict[str, Any]) -> None:
        failed.append(message)

    async with run_workers(send_email, handle_failed, settings=settings):
        await producer.send("emails", {"to": "a@example.com"})
        await wait_for(lambda: len(failed) == 1)
    assert attempts == [1, 2, 3]
    [record] = failed
    assert record["original"] == {"to": "a@example.com"}
    assert record["error"]["error_type"] == "ConnectionError" and record["retries"] == 3
    assert record["worker"].endswith("send_email")


async def test_none_publishes_nothing_and_non_retryable_dead_letters_at_once(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    runs: list[str] = []

    @worker(topic="jobs", output_topic="jobs.out", max_retries=5)
    async def job(payload: dict[str, str]) -> dict[str, str] | None:
        runs.append(payload["kind"])
        if payload["kind"] == "bad":
            raise NonRetryableError("never")
        return None

    async with run_workers(job, settings=_fast(settings)) as pool:
        await producer.send("jobs", {"kind": "ok"})
        await producer.send("jobs", {"kind": "bad"})
        [consumer] = pool.subscribers(job)
        await wait_for(lambda: consumer.stats.dead_lettered.get("non_retryable") == 1)
        await wait_for(lambda: consumer.stats.handled == 1)
    assert runs == ["ok", "bad"]
    assert await _events(redis, settings, "jobs.out") == []


class OrderProcessor(Worker):
    input_topic = "orders.placed"
    output_topic = "orders.processed"
    group_id = "order-processor"
    max_retries = 2
    events: list[str] = []

    async def on_startup(self) -> None:
        OrderProcessor.events.append("startup")

    async def on_shutdown(self) -> None:
        OrderProcessor.events.append("shutdown")

    async def process(self, order: dict[str, Any]) -> dict[str, Any]:
        if order.get("fail"):
            raise ValueError("cannot process")
        return {"order_id": order["order_id"], "status": "processed"}

    async def on_success(self, order: dict[str, Any], result: dict[str, Any]) -> None:
        OrderProcessor.events.append(f"success:{order['order_id']}")

    async def on_error(self, order: dict[str, Any], error: BaseException) -> None:
        OrderProcessor.events.append(f"error:{order['order_id']}:{error}")


async def test_a_worker_class_runs_its_hooks_and_is_callable_in_a_unit_test(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    assert await OrderProcessor().process({"order_id": "u1"}) == {
        "order_id": "u1",
        "status": "processed",
    }
    OrderProcessor.events = []
    async with run_workers(OrderProcessor, settings=_fast(settings)):
        assert OrderProcessor.events == ["startup"]
        await producer.send("orders.placed", {"order_id": "1"})
        await producer.send("orders.placed", {"order_id": "2", "fail": True})
        await wait_for(lambda: len(OrderProcessor.events) == 3)
    assert OrderProcessor.events == ["startup", "success:1", "error:2:cannot process", "shutdown"]
    [out] = await _events(redis, settings, "orders.processed")
    assert out.data == {"order_id": "1", "status": "processed"}


async def test_manual_ack_and_reject_with_a_delay(
    settings: CommonAppSettings, producer: Producer
) -> None:
    seen: list[tuple[str, int]] = []

    @worker(topic="manual.jobs")
    async def manual(payload: dict[str, str], ctx: ActionContext) -> None:
        seen.append((payload["id"], ctx.delivery_count))
        if ctx.delivery_count == 1:
            await ctx.reject(requeue=True, delay=0.2)
        else:
            await ctx.ack()

    async with run_workers(manual, settings=settings):
        started = asyncio.get_running_loop().time()
        await producer.send("manual.jobs", {"id": "a"})
        await wait_for(lambda: len(seen) == 2)
        waited = asyncio.get_running_loop().time() - started
    assert seen == [("a", 1), ("a", 2)] and waited >= 0.2


async def test_a_malformed_topic_entry_is_dead_lettered_and_the_worker_goes_on(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    got: list[Any] = []

    @worker(topic="mixed")
    async def handle(payload: Any) -> None:
        got.append(payload)

    stream = QueueManager(settings.queue_prefix, settings.environment).topic_stream("mixed")
    async with run_workers(handle, settings=settings) as pool:
        await redis.xadd(stream, {"event": b"{not json"})
        await redis.xadd(stream, {"other": b"field"})
        await producer.send("mixed", [1, 2, 3])
        await wait_for(lambda: got == [[1, 2, 3]])
        [consumer] = pool.subscribers(handle)
        await wait_for(lambda: consumer.stats.dead_lettered.get("malformed") == 2)
    dead = await redis.xrange(consumer.outbox.dead_letter_stream)
    assert orjson.loads(dead[0][1][b"original"]) == {"event": "{not json"}


def test_bad_options_fail_when_decorating() -> None:
    with pytest.raises(ValueError, match="invalid topic"):
        worker(topic="Orders Created")
    with pytest.raises(ValueError, match="concurrency"):
        worker(topic="ok", concurrency=0)
    with pytest.raises(TypeError, match="async def"):

        @worker(topic="ok")
        def sync(payload: dict[str, Any]) -> None:  # type: ignore[type-var]
            return None
