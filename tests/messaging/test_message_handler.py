"""@message_handler functions on a real Redis: topics, schemas, retries with a fixed delay."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

from common import CommonAppSettings
from common.messaging import ActionContext, Event, RetryPolicy, message_handler, run_workers
from common.messaging.producer import Producer
from common.messaging.runner import subscription_of
from tests.helpers import wait_for


class OrderCreated(BaseModel):
    order_id: int
    user_id: int
    total: float


async def test_a_handler_gets_each_message_of_every_topic_it_lists(
    settings: CommonAppSettings, producer: Producer
) -> None:
    seen: list[tuple[str, Any]] = []

    @message_handler(topic=["orders.created", "orders.updated"])
    async def sync_inventory(message: dict[str, Any], context: ActionContext) -> None:
        seen.append((context.stream.rsplit("{", 1)[1].split("}")[0], message))

    sub = subscription_of(sync_inventory)
    assert sub.kind == "message_handler" and sub.topics == ("orders.created", "orders.updated")
    async with run_workers(sync_inventory, settings=settings):
        await producer.send("orders.created", {"order_id": 1})
        await producer.send("orders.updated", {"order_id": 1, "status": "paid"})
        await wait_for(lambda: len(seen) == 2)
    assert sorted(seen, key=lambda s: s[0]) == [
        ("orders.created", {"order_id": 1}),
        ("orders.updated", {"order_id": 1, "status": "paid"}),
    ]
    assert sub.handler is not None and sub.handler.func is sync_inventory  # returned unchanged


async def test_a_schema_validates_and_gives_the_model_when_asked_and_drops_invalid_messages(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    models: list[OrderCreated] = []
    dicts: list[dict[str, Any]] = []

    @message_handler(topic="orders.created", schema=OrderCreated, max_retries=5)
    async def handle_order(message: OrderCreated) -> None:
        models.append(message)

    @message_handler(topic="orders.created", schema=OrderCreated, group_id="as-dicts")
    async def handle_as_dict(message: dict[str, Any]) -> None:
        dicts.append(message)

    async with run_workers(handle_order, handle_as_dict, settings=settings) as pool:
        await producer.send("orders.created", {"order_id": "x", "user_id": 1, "total": 1})
        await producer.send("orders.created", {"order_id": 1, "user_id": 2, "total": "9.5"})
        [subscriber] = pool.subscribers(handle_order)
        await wait_for(lambda: len(models) == 1 and len(dicts) == 1)
        await wait_for(lambda: subscriber.stats.dead_lettered == {"malformed": 1})
    assert models == [OrderCreated(order_id=1, user_id=2, total=9.5)]
    assert dicts == [{"order_id": 1, "user_id": 2, "total": 9.5}]
    assert subscriber.stats.failed == 0  # the invalid message never ran, never retried
    [(_, dead)] = await redis.xrange(subscriber.outbox.dead_letter_stream)
    assert dead[b"reason"] == b"malformed"


async def test_retries_wait_retry_delay_each_time_then_dead_letter(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    attempts: list[tuple[int, float]] = []

    @message_handler(topic="payments.process", max_retries=3, retry_delay=0.2)
    async def process_payment(message: dict[str, Any], context: ActionContext) -> None:
        attempts.append((context.delivery_count, time.monotonic()))
        raise ConnectionError("gateway down")

    handler = subscription_of(process_payment).handler
    assert handler is not None
    policy = handler.policy_from(RetryPolicy.from_settings(settings))
    assert policy is not None and policy.max_retries == 3
    assert [policy.get_delay(n) for n in (1, 2, 3)] == [0.2, 0.2, 0.2]  # not growing
    async with run_workers(process_payment, settings=settings) as pool:
        await producer.send("payments.process", {"amount": 10})
        [subscriber] = pool.subscribers(process_payment)
        await wait_for(lambda: subscriber.stats.dead_lettered == {"max_retries": 1})
    assert [n for n, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    [(_, dead)] = await redis.xrange(subscriber.outbox.dead_letter_stream)
    assert b"gateway down" in dead[b"error"]


async def test_the_handler_may_ask_for_the_event(
    settings: CommonAppSettings, producer: Producer
) -> None:
    events: list[Event] = []

    @message_handler(topic="audit")
    async def audit(message: dict[str, Any], event: Event) -> None:
        events.append(event)

    async with run_workers(audit, settings=settings):
        await producer.send_event("audit", Event(name="user.logged_in", data={"id": 3}))
        await wait_for(lambda: len(events) == 1)
    assert events[0].name == "user.logged_in" and events[0].data == {"id": 3}


def test_retry_options() -> None:
    @message_handler(topic="a", max_retries=4)
    async def only_retries(message: dict[str, Any]) -> None: ...

    @message_handler(topic="a", retry_delay=90)
    async def only_delay(message: dict[str, Any]) -> None: ...

    own = RetryPolicy(max_retries=2, backoff="linear", initial_delay=0.5, max_delay=5.0)

    @message_handler(topic="a", retry_policy=own)
    async def with_policy(message: dict[str, Any]) -> None: ...

    default = RetryPolicy(max_retries=5, backoff="exponential", initial_delay=1.0, max_delay=60.0)
    for func, expected in (
        (only_retries, (4, [1.0, 2.0, 4.0])),
        (only_delay, (5, [90.0, 90.0, 90.0])),  # above the default's max_delay: still 90
        (with_policy, (2, [0.5, 1.0, 1.5])),
    ):
        handler = subscription_of(func).handler
        assert handler is not None
        policy = handler.policy_from(default)
        assert policy is not None
        assert (policy.max_retries, [policy.get_delay(n) for n in (1, 2, 3)]) == expected


def test_bad_options_fail_when_decorating() -> None:
    with pytest.raises(ValueError, match="invalid topic"):
        message_handler(topic="Orders Created")
    with pytest.raises(ValueError, match="at least one topic"):
        message_handler(topic=[])
    with pytest.raises(ValueError, match="max_retries"):
        message_handler(topic="a", max_retries=0)
    with pytest.raises(ValueError, match="retry_delay"):
        message_handler(topic="a", retry_delay=-1)
    with pytest.raises(TypeError, match="pydantic"):
        message_handler(topic="a", schema=dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async def"):
        message_handler(topic="a")(lambda message: None)  # type: ignore[arg-type,return-value]
