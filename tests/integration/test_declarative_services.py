"""The declarative example services (ETL chain, fan-out, saga) on a real redis-server, asserted
with common.testing.MessagingTestClient."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from common import CommonAppSettings
from common.testing import MessagingTestClient
from services import etl, fanout, saga


@pytest.fixture(autouse=True)
def _clean_sinks() -> Iterator[None]:
    etl.WAREHOUSE.clear()
    fanout.SINKS.clear()
    saga.LEDGER.reset({"apple": 10})
    yield


async def test_etl_chain_feeds_each_output_topic_to_the_next_worker(
    settings: CommonAppSettings,
) -> None:
    async with MessagingTestClient(etl.extract, etl.transform, etl.load, settings=settings) as b:
        await b.publish("readings.raw", {"reading_id": "r1", "sensor": "s1", "celsius": 100})
        await b.publish(
            "readings.raw", {"reading_id": "r2", "sensor": "s1", "celsius": 1, "test": True}
        )
        await b.publish("readings.raw", {"reading_id": "r3", "sensor": "s2", "celsius": -500})
        await b.wait_handled(etl.load, 1)
        await b.wait_handled(etl.extract, 2)
        [invalid] = await b.wait_dead_letters(etl.extract)
        assert b.published("readings.clean") == [
            {"reading_id": "r1", "sensor": "s1", "celsius": 100.0}
        ]
        assert b.published("readings.enriched") == [
            {"reading_id": "r1", "sensor": "s1", "celsius": 100.0, "fahrenheit": 212.0}
        ]
    assert list(etl.WAREHOUSE.rows) == ["r1"]
    assert (invalid.reason, invalid.attempts, invalid.data["reading_id"]) == ("malformed", 1, "r3")


async def test_fan_out_delivers_each_event_to_all_three_groups(
    settings: CommonAppSettings,
) -> None:
    groups = (fanout.welcome_email, fanout.track_signup, fanout.create_contact)
    users = [{"id": f"u{n}", "name": f"User {n}", "email": f"u{n}@example.com"} for n in range(5)]
    async with MessagingTestClient(*groups, settings=settings) as broker:
        for user in users:
            await broker.publish("users.created", user)
        for group in groups:
            assert len(await broker.wait_handled(group, 5)) == 5
        shares = [c.stats.handled for c in broker.pool.subscribers(fanout.track_signup)]
    assert len(fanout.SINKS.emails) == 5 and sorted(fanout.SINKS.signups) == [
        u["id"] for u in users
    ]
    assert set(fanout.SINKS.contacts) == {u["email"] for u in users}
    assert sum(shares) == 5 and len(shares) == 2  # one group's two consumers share its events


async def test_saga_confirms_a_paid_order_and_compensates_a_declined_one(
    settings: CommonAppSettings,
) -> None:
    steps = (saga.reserve_inventory, saga.process_payment, saga.confirm_order)
    async with MessagingTestClient(*steps, saga.compensate_inventory, settings=settings) as b:
        await b.publish(
            "orders.created", {"order_id": "ok", "sku": "apple", "quantity": 2, "total": 20}
        )
        await b.publish(
            "orders.created", {"order_id": "no", "sku": "apple", "quantity": 3, "total": 500}
        )
        await b.publish(
            "orders.created", {"order_id": "big", "sku": "apple", "quantity": 99, "total": 1}
        )
        await b.wait_handled(saga.confirm_order)
        await b.wait_handled(saga.compensate_inventory)
        [short] = await b.wait_dead_letters(saga.reserve_inventory)
        assert b.published("orders.confirmed") == [{"order_id": "ok", "status": "confirmed"}]
        assert b.published("orders.cancelled") == [
            {"order_id": "no", "status": "cancelled", "reason": "card declined"}
        ]
        assert b.published("payments.failed") == [{"order_id": "no", "reason": "card declined"}]
    assert saga.LEDGER.outcomes == {"ok": "confirmed", "no": "cancelled"}
    assert saga.LEDGER.stock == {"apple": 8}  # the declined order's 3 apples came back
    assert (short.reason, short.data["order_id"]) == ("non_retryable", "big")


async def test_saga_checkout_endpoint_publishes_orders_created() -> None:
    # The endpoint publishes with @event, after the response: the test waits for the handled
    # order, not for the response; the invalid body (422) publishes nothing.
    app = saga.create_app()
    steps = (saga.reserve_inventory, saga.process_payment, saga.confirm_order)
    async with MessagingTestClient(*steps, saga.compensate_inventory) as broker:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://saga") as http:
            reply = await http.post("/checkout", json={"sku": "apple", "quantity": 1, "total": 5})
            invalid = await http.post("/checkout", json={"sku": "apple", "quantity": 0, "total": 5})
        assert reply.status_code == 202 and invalid.status_code == 422
        order_id = reply.json()["order_id"]
        [confirmed] = await broker.wait_handled(saga.confirm_order)
        [created] = broker.events("orders.created")
    assert confirmed["order_id"] == order_id
    assert created.key == order_id and created.data["total"] == 5
