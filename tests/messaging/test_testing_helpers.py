"""common.testing: declarative workers and pipelines in-process on memory://, with assertions
on what was handled, published and dead-lettered; and a BaseWorker service with a client."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import BaseModel

from common import CommonAppSettings
from common.messaging import get_producer, publish, worker
from common.messaging.settings import configure_messaging, messaging_settings, reset_messaging
from common.testing import MessagingTestClient, WorkerTestClient, memory_settings
from services.inventory import InventoryWorker


def _pipeline() -> tuple[Any, Any, Any]:
    @worker(topic="raw.data", output_topic="clean.data")
    async def extract(raw: dict[str, Any]) -> dict[str, Any] | None:
        if raw.get("skip"):
            return None  # publishes nothing
        return {"id": raw["id"], "value": raw["value"]}

    @worker(topic="clean.data", output_topic="transformed.data")
    async def transform(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "value": row["value"] * 2}

    @worker(topic="transformed.data")
    async def load(row: dict[str, Any]) -> None:
        return None

    return extract, transform, load


async def test_a_three_step_pipeline_is_asserted_end_to_end_in_well_under_a_second() -> None:
    extract, transform, load = _pipeline()
    started = time.perf_counter()
    async with MessagingTestClient(extract, transform, load) as broker:
        await broker.publish("raw.data", {"id": 1, "value": 21})
        await broker.publish("raw.data", {"id": 2, "skip": True})
        await broker.wait_handled(load, 1)
        await broker.wait_handled(extract, 2)
        assert broker.published("clean.data") == [{"id": 1, "value": 21}]
        assert broker.published("transformed.data") == [{"id": 1, "value": 42}]
        assert broker.handled(load) == [{"id": 1, "value": 42}]
        assert broker.dead_letters(extract) == broker.dead_letters(load) == []
        [out] = broker.events("transformed.data")
        [sent, _] = broker.events("raw.data")
        assert out.trace_id == sent.trace_id  # the chain keeps the trace
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"three-step pipeline took {elapsed:.3f}s"


async def test_a_failing_worker_is_dead_lettered_after_its_retries_and_on_its_dlq_topic() -> None:
    calls: list[int] = []

    @worker(topic="payments", max_retries=3, dlq_topic="payments.dlq")
    async def charge(payment: dict[str, Any]) -> None:
        calls.append(payment["id"])
        raise ConnectionError("gateway timeout")

    @worker(topic="payments.dlq")
    async def on_failed(failure: dict[str, Any]) -> None:
        return None

    async with MessagingTestClient(charge, on_failed) as broker:
        await broker.publish("payments", {"id": 7})
        [dead] = await broker.wait_dead_letters(charge)
        [failure] = await broker.wait_handled(on_failed)
    assert calls == [7, 7, 7]
    assert (dead.data, dead.reason, dead.attempts) == ({"id": 7}, "max_retries", 3)
    assert dead.error.error_type == "ConnectionError" and "gateway" in dead.error.message
    assert failure["original"] == {"id": 7} and failure["retries"] == 3
    assert broker.handled(charge) == []


async def test_an_invalid_payload_is_dead_lettered_at_once_as_malformed() -> None:
    class Payment(BaseModel):
        payment_id: str
        amount: float

    @worker(topic="payments", input_schema=Payment)
    async def charge(payment: dict[str, Any]) -> None:
        return None

    async with MessagingTestClient(charge) as broker:
        await broker.publish("payments", {"payment_id": "p1"})
        await broker.publish("payments", {"payment_id": "p2", "amount": 3})
        [dead] = await broker.wait_dead_letters(charge)
        assert await broker.wait_handled(charge) == [{"payment_id": "p2", "amount": 3.0}]
    assert (dead.data, dead.reason, dead.attempts) == ({"payment_id": "p1"}, "malformed", 1)


async def test_publishing_from_handlers_and_code_under_test_reaches_the_client() -> None:
    @worker(topic="user.created")
    async def fan_out(user: dict[str, Any]) -> None:
        await get_producer().send("notifications.welcome", {"user_id": user["id"]})
        await publish("analytics.user.created", {"user_id": user["id"]})

    async with MessagingTestClient(fan_out) as broker:
        assert messaging_settings() is broker.settings
        await publish("user.created", {"id": 5})  # code under test uses the module functions
        await broker.wait_handled(fan_out)
        assert broker.published("notifications.welcome") == [{"user_id": 5}]
        assert broker.published("analytics.user.created") == [{"user_id": 5}]


async def test_process_defaults_are_restored_and_prefixes_are_unique() -> None:
    @worker(topic="a.b")
    async def noop(x: Any) -> None:
        return None

    configure_messaging(service_name="mine")
    try:
        before = messaging_settings()
        async with MessagingTestClient(noop) as one, MessagingTestClient(noop) as two:
            assert one.settings.queue_prefix != two.settings.queue_prefix
            assert one.settings.redis_url.startswith("memory://")
        assert messaging_settings() is before
    finally:
        reset_messaging()


async def test_a_wait_that_times_out_says_what_was_recorded() -> None:
    @worker(topic="jobs", max_retries=1)
    async def broken(job: Any) -> None:
        raise ValueError("bad job")

    async with MessagingTestClient(broken) as broker:
        await broker.publish("jobs", {"n": 1})
        await broker.wait_dead_letters(broken)
        started = time.monotonic()
        with pytest.raises(AssertionError, match=r"handled 0 of 1 .*bad job"):
            await broker.wait_handled(broken, timeout=0.2)
        assert time.monotonic() - started < 1.0


async def test_the_same_client_runs_on_a_real_redis(settings: CommonAppSettings) -> None:
    extract, transform, load = _pipeline()
    async with MessagingTestClient(extract, transform, load, settings=settings) as broker:
        await broker.publish("raw.data", {"id": 3, "value": 5})
        assert await broker.wait_handled(load) == [{"id": 3, "value": 10}]
        assert broker.published("transformed.data") == [{"id": 3, "value": 10}]


async def test_worker_test_client_runs_a_base_worker_service_with_a_client() -> None:
    async with WorkerTestClient(InventoryWorker, service_name="inventory") as svc:
        await svc.send("inventory.restock", {"sku": "apple", "quantity": 5})
        await svc.wait_handled(1)
        reply = await svc.call("inventory.check", {"sku": "apple"})
        assert reply.success and reply.data["available"] == 5
        await svc.send("inventory.restock", {"sku": "apple", "quantity": -1})
        stats = await svc.wait_dead_letters(1)
        assert stats.dead_lettered == {"non_retryable": 1}
        [entry] = await svc.dead_letter_entries()
        assert entry[b"reason"] == b"non_retryable"
    assert memory_settings().redis_url.startswith("memory://")
