"""@consumer classes with @on_event methods on a real Redis: routes, injection, unhandled
events, retries, auto_start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from common import CommonAppSettings
from common.clients.queue_manager import QueueManager
from common.messaging import (
    ActionContext,
    Depends,
    Event,
    consumer,
    on_event,
    registry,
    run_workers,
)
from common.messaging.producer import Producer
from common.messaging.runner import subscription_of
from tests.helpers import wait_for


async def test_each_event_goes_to_its_method_with_the_event_the_context_and_dependencies(
    settings: CommonAppSettings, producer: Producer
) -> None:
    sessions: list[str] = []

    async def get_db() -> AsyncIterator[str]:
        sessions.append("open")
        yield "session"
        sessions.append("closed")

    @consumer("order-service", topics=["user-events", "payment-events"])
    class OrderEventsConsumer:
        def __init__(self) -> None:
            self.seen: list[tuple[str, Any, str, int]] = []

        @on_event("user.created")
        async def handle_user_created(
            self, event: Event, context: ActionContext, db: str = Depends(get_db)
        ) -> None:
            self.seen.append((event.name, event.data, db, context.delivery_count))

        @on_event("payment.completed", "payment.refunded")
        async def handle_payment(self, event: Event) -> None:
            self.seen.append((event.name, event.data, event.source or "", 1))

    sub = subscription_of(OrderEventsConsumer)
    assert sub.kind == "consumer" and sub.topics == ("user-events", "payment-events")
    instance = sub.by_event["user.created"].func.__self__  # type: ignore[attr-defined]
    assert sub.by_event["payment.refunded"].func.__self__ is instance  # type: ignore[attr-defined]

    async with run_workers(OrderEventsConsumer, settings=settings):
        await producer.send_event("user-events", Event(name="user.created", data={"id": 1}))
        await producer.send_event(
            "payment-events", Event(name="payment.completed", data={"order_id": 7}, source="pay")
        )
        await producer.send_event("payment-events", Event(name="payment.refunded", data=None))
        await wait_for(lambda: len(instance.seen) == 3)
    assert sorted(instance.seen) == [
        ("payment.completed", {"order_id": 7}, "pay", 1),
        ("payment.refunded", None, "", 1),
        ("user.created", {"id": 1}, "session", 1),
    ]
    assert sessions == ["open", "closed"]  # a scoped dependency: once per message


async def test_an_event_no_method_handles_is_acked_and_counted_not_dead_lettered(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    handled: list[int] = []

    @consumer("mailer", topics="user-events")
    class Mailer:
        @on_event("user.created")
        async def welcome(self, event: Event) -> None:
            handled.append(event.data["id"])

    async with run_workers(Mailer, settings=settings) as pool:
        await producer.send_event("user-events", Event(name="user.deleted", data={"id": 1}))
        await producer.send_event("user-events", Event(name="user.renamed", data={"id": 1}))
        await producer.send_event("user-events", Event(name="user.created", data={"id": 2}))
        [subscriber] = pool.subscribers(Mailer)
        await wait_for(lambda: handled == [2] and subscriber.unhandled == 2)
        await wait_for(lambda: subscriber.stats.acked == 3)
        queues = QueueManager(settings.queue_prefix, settings.environment)
        stream = queues.topic_stream("user-events")
        assert (await redis.xpending(stream, "mailer"))["pending"] == 0  # all three ACKed
    assert await redis.xlen(queues.topic_dead_letter_stream("user-events", "mailer")) == 0
    assert subscriber.stats.dead_lettered == {} and subscriber.stats.failed == 0


async def test_a_failing_method_is_retried_with_the_consumers_policy(
    settings: CommonAppSettings, redis: aioredis.Redis, producer: Producer
) -> None:
    attempts: list[int] = []

    @consumer("flaky", topics=["jobs"], max_retries=2)
    class Flaky:
        @on_event("job.run")
        async def run(self, event: Event, context: ActionContext) -> None:
            attempts.append(context.delivery_count)
            raise ConnectionError("down")

    async with run_workers(Flaky, settings=settings) as pool:
        await producer.send_event("jobs", Event(name="job.run", data={}))
        [subscriber] = pool.subscribers(Flaky)
        await wait_for(lambda: sum(subscriber.stats.dead_lettered.values()) == 1)
    assert attempts == [1, 2]
    [(_, entry)] = await redis.xrange(subscriber.outbox.dead_letter_stream)
    assert entry[b"reason"] == b"max_retries"


async def test_auto_start_false_is_registered_but_runs_only_when_named(
    settings: CommonAppSettings, producer: Producer
) -> None:
    registry._registry.clear()  # only this test's targets (the fixture restores the registry)
    seen: list[str] = []

    @consumer("always", topics=["audit"])
    class Always:
        @on_event("audit.logged")
        async def log(self, event: Event) -> None:
            seen.append("always")

    @consumer("on-demand", topics=["audit"], auto_start=False)
    class OnDemand:
        @on_event("audit.logged")
        async def log(self, event: Event) -> None:
            seen.append("on-demand")

    assert subscription_of(OnDemand) in registry.registered()
    async with run_workers(settings=settings) as pool:
        assert [s.name for s in pool.subscriptions] == [subscription_of(Always).name]
        await producer.send_event("audit", Event(name="audit.logged"))
        await wait_for(lambda: seen == ["always"])
    async with run_workers(OnDemand, settings=settings):  # named: it runs (from the start)
        await wait_for(lambda: seen == ["always", "on-demand"])


async def test_hooks_run_once_per_process(settings: CommonAppSettings) -> None:
    calls: list[str] = []

    @consumer("hooked", topics=["audit"], consumers=2)
    class Hooked:
        async def on_startup(self) -> None:
            calls.append("startup")

        async def on_shutdown(self) -> None:
            calls.append("shutdown")

        @on_event("audit.logged")
        async def log(self, event: Event) -> None:
            pass

    async with run_workers(Hooked, settings=settings):
        assert calls == ["startup"]
    assert calls == ["startup", "shutdown"]


def test_bad_consumers_fail_when_decorating() -> None:
    with pytest.raises(ValueError, match="no @on_event method"):

        @consumer("empty", topics=["audit"])
        class Empty:
            pass

    with pytest.raises(ValueError, match="handled by both"):

        @consumer("twice", topics=["audit"])
        class Twice:
            @on_event("audit.logged")
            async def one(self, event: Event) -> None: ...

            @on_event("audit.logged")
            async def two(self, event: Event) -> None: ...

    with pytest.raises(ValueError, match="invalid topic"):
        consumer("group", topics=["Not A Topic"])
    with pytest.raises(ValueError, match="at least one topic"):
        consumer("group", topics=[])
    with pytest.raises(ValueError, match="invalid group_id"):
        consumer("bad group!", topics=["audit"])
    with pytest.raises(TypeError, match="async def"):
        on_event("audit.logged")(lambda self, event: None)


def test_a_subclass_method_overrides_its_bases_route() -> None:
    class Base:
        @on_event("a.happened")
        async def on_a(self, event: Event) -> None: ...

        @on_event("b.happened")
        async def on_b(self, event: Event) -> None: ...

    @consumer("child", topics=["letters"])
    class Child(Base):
        @on_event("b.happened")
        async def on_b_better(self, event: Event) -> None: ...

    by_event = subscription_of(Child).by_event
    routes = {name: h.name.rsplit(".", 1)[-1] for name, h in by_event.items()}
    assert routes == {"a.happened": "on_a", "b.happened": "on_b_better"}
