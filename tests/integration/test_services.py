"""The example services on a real redis-server: apps started through their lifespans, orders
calling inventory pseudo-synchronously and with a callback, and clean shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI

from common import BaseRedisClient, CommonAppSettings, DomainAction, QueueManager
from services import inventory, orders
from services.inventory.stock import StockLedger
from services.orders.book import OrderBook
from tests.helpers import wait_for


@asynccontextmanager
async def running(*apps: FastAPI) -> AsyncIterator[None]:
    """Run the apps' lifespans (their worker pools) for the body of the block."""
    async with AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield


@asynccontextmanager
async def orders_http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as http:
        yield http


async def test_post_orders_reserves_stock_with_a_pseudo_sync_call(
    settings: CommonAppSettings,
) -> None:
    ledger = StockLedger({"apple": 10})
    inventory_app = inventory.create_app(settings, ledger=ledger)
    orders_app = orders.create_app(settings)
    async with running(inventory_app, orders_app), orders_http(orders_app) as http:
        placed = await http.post("/orders", json={"sku": "apple", "quantity": 3})
        refused = await http.post("/orders", json={"sku": "apple", "quantity": 100})
        invalid = await http.post("/orders", json={"sku": "apple", "quantity": 0})
        fetched = await http.get(f"/orders/{placed.json()['order_id']}")

    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "reserved" and order["reservation_id"]
    assert fetched.json() == order
    # The reservation was made by an inventory worker, for this order.
    reservation = ledger.reservations[order["order_id"]]
    assert (reservation.sku, reservation.quantity) == ("apple", 3)
    assert reservation.reservation_id == order["reservation_id"]
    assert ledger.available("apple") == 7

    assert refused.status_code == 409
    assert refused.json()["status"] == "rejected"
    assert refused.json()["error"]["error_type"] == "InsufficientStockError"
    assert invalid.status_code == 422  # rejected by the HTTP layer, never sent
    stats = [w.stats for w in inventory_app.state.pool.workers]
    assert sum(s.handled for s in stats) == 2


async def test_async_order_comes_back_as_a_callback_to_the_orders_workers(
    settings: CommonAppSettings,
) -> None:
    ledger = StockLedger({"pear": 5})
    book = OrderBook()
    inventory_app = inventory.create_app(settings, ledger=ledger)
    orders_app = orders.create_app(settings, book=book)
    async with running(inventory_app, orders_app), orders_http(orders_app) as http:
        accepted = await http.post("/orders/async", json={"sku": "pear", "quantity": 2})
        too_many = await http.post("/orders/async", json={"sku": "pear", "quantity": 50})
        assert accepted.status_code == 202 and accepted.json()["status"] == "pending"
        order_id, refused_id = accepted.json()["order_id"], too_many.json()["order_id"]

        async def status(oid: str) -> Any:
            response = await http.get(f"/orders/{oid}")
            return response.json()["status"]

        await wait_for(lambda: _settled(book, order_id, refused_id), timeout=5)
        assert await status(order_id) == "reserved"
        assert await status(refused_id) == "rejected"

    order = book.get(order_id)
    assert order is not None
    assert order.reservation_id == ledger.reservations[order_id].reservation_id
    assert book.callbacks_received == 2
    assert sum(w.stats.handled for w in orders_app.state.pool.workers) == 2
    assert ledger.available("pear") == 3


def _settled(book: OrderBook, *order_ids: str) -> bool:
    return all((o := book.get(i)) is not None and o.status != "pending" for i in order_ids)


async def test_lifespan_runs_the_pool_and_exit_stops_it(settings: CommonAppSettings) -> None:
    orders_app = orders.create_app(settings)
    inventory_app = inventory.create_app(settings)
    pools = [orders_app.state.pool, inventory_app.state.pool]
    async with running(inventory_app, orders_app), orders_http(orders_app) as http:

        async def all_running() -> Any:
            health = (await http.get("/health")).json()
            return health if all(w["running"] for w in health["workers"]) else None

        # start() returns once the worker tasks exist; they begin running a moment later.
        health = await wait_for(all_running, timeout=5)
        assert health["running"] is True
        assert len(health["workers"]) == settings.num_internal_workers
        assert isinstance(orders_app.state.client, BaseRedisClient)
        assert orders_app.state.settings.service_name == "orders"
        assert inventory_app.state.settings.service_name == "inventory"
    for pool in pools:
        assert not pool.running
        assert pool.workers and not any(w.is_running for w in pool.workers)
    assert orders_app.state.client is None
    # Stopped: the HTTP API says so instead of hanging.
    async with orders_http(orders_app) as http:
        response = await http.post("/orders", json={"sku": "apple", "quantity": 1})
    assert response.status_code == 503


async def test_inventory_failures_are_dead_lettered_and_answered(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    inventory_app = inventory.create_app(settings)
    queues = QueueManager(settings.queue_prefix, settings.environment)
    dlq = queues.dead_letter_stream("inventory")
    async with running(inventory_app), BaseRedisClient("tester", redis, settings) as client:
        audit = await client.send_action_pseudo_sync(
            DomainAction(action_type="inventory.audit"), timeout=10
        )
        unknown = await client.send_action_pseudo_sync(
            DomainAction(action_type="inventory.teleport"), timeout=5
        )
        invalid = await client.send_action_pseudo_sync(
            DomainAction(action_type="inventory.reserve", data={"sku": "x"}), timeout=5
        )
        await wait_for(lambda: _xlen(redis, dlq, 3), timeout=5)

    assert (audit.success, audit.status_code) == (False, 500)
    assert audit.error is not None and audit.error.error_type == "AuditUnavailableError"
    assert (unknown.success, unknown.status_code) == (False, 404)
    assert (invalid.success, invalid.status_code) == (False, 422)
    assert await _dead_letter_reasons(redis, dlq) == [
        "max_retries",
        "non_retryable",
        "unknown_action",
    ]
    retried = sum(w.stats.retried for w in inventory_app.state.pool.workers)
    assert retried == settings.max_retries - 1


async def _xlen(redis: aioredis.Redis, stream: str, n: int) -> bool:
    return int(await redis.xlen(stream)) >= n


async def _dead_letter_reasons(redis: aioredis.Redis, stream: str) -> list[str]:
    entries: Any = await redis.xrange(stream)
    return sorted(fields[b"reason"].decode() for _id, fields in entries)
