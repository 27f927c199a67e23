"""The example services give the same answers whatever the number of workers: their ledger and
order book are one per pool (shared resources), also when the command-line runner starts them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from common import BaseRedisClient, CommonAppSettings, DomainAction, WorkerPool
from services import inventory
from services.orders.worker import RESERVATION_CALLBACK, OrdersWorker
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4


def _action(action_type: str, **data: Any) -> DomainAction:
    return DomainAction(action_type=action_type, data=data)


async def _restock_check_reserve(
    client: BaseRedisClient, checks: int, until: Any = None
) -> tuple[list[int], Any]:
    """Restock 15, then sequential checks (every worker in turn answers one: a blocked reader
    is served first come, first served), then reserve 2."""
    restocked = await client.send_action_pseudo_sync(
        _action("inventory.restock", sku="apple", quantity=15), timeout=20
    )
    assert restocked.success and restocked.data["available"] == 15, restocked
    answers: list[int] = []
    while len(answers) < checks or (until is not None and not until()):
        reply = await client.send_action_pseudo_sync(
            _action("inventory.check", sku="apple"), timeout=5
        )
        answers.append(reply.data["available"])
        assert len(answers) < 200, "not every worker answered a check"
    reserved = await client.send_action_pseudo_sync(
        _action("inventory.reserve", sku="apple", quantity=2, order_id="o-1"), timeout=5
    )
    return answers, reserved


def _run_inventory_cli(settings: CommonAppSettings) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "QUEUE_PREFIX": settings.queue_prefix,
        "WORKER_BLOCK_MS": "100",
        "PYTHONPATH": str(ROOT),
    }
    target = "services.inventory.worker:InventoryWorker"
    command = ["-m", "common", "run", target, "--service", "inventory", "--workers", str(WORKERS)]
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_inventory_run_by_the_cli_with_4_workers_shares_one_ledger(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """The README's example, ``python -m common run ...InventoryWorker --workers 4``."""
    proc = _run_inventory_cli(settings)
    try:
        async with BaseRedisClient("tester", redis, settings) as client:
            answers, reserved = await _restock_check_reserve(client, checks=3 * WORKERS)
        stream = client.queues.action_stream("inventory")
        consumers = await redis.xinfo_consumers(stream, "inventory-group")
        proc.terminate()
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        output = proc.communicate()[0]
    assert len(consumers) == WORKERS, output
    assert answers == [15] * len(answers), answers
    assert (reserved.success, reserved.status_code) == (True, 201), reserved
    assert reserved.data["remaining"] == 13


async def test_inventory_app_with_4_workers_gives_every_worker_the_same_answer(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"num_internal_workers": WORKERS})
    app = inventory.create_app(settings)
    pool = app.state.pool
    async with (
        app.router.lifespan_context(app),
        BaseRedisClient("tester", redis, settings) as client,
    ):

        def every_worker_answered() -> bool:
            return all(w.stats.handled >= 2 for w in pool.workers)  # a check besides restock

        answers, reserved = await _restock_check_reserve(
            client, checks=WORKERS, until=every_worker_answered
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://inventory") as http:
            stock = (await http.get("/stock/apple")).json()
    assert len(pool.workers) == WORKERS
    assert answers == [15] * len(answers), answers
    assert (reserved.success, reserved.status_code) == (True, 201), reserved
    assert stock == {"sku": "apple", "available": 13}
    assert app.state.ledger is pool.resources.ledger
    assert all(w.ledger is app.state.ledger for w in pool.workers)


async def test_orders_workers_of_one_pool_record_callbacks_in_one_book(
    settings: CommonAppSettings, redis: aioredis.Redis
) -> None:
    """Like the CLI does: a bare pool of the orders worker, no app around it."""
    orders_settings = settings.model_copy(update={"service_name": "orders"})
    pool = WorkerPool(OrdersWorker, orders_settings, num_workers=WORKERS)
    async with pool, BaseRedisClient("inventory", redis, settings) as client:
        order_ids = [f"order-{i}" for i in range(3 * WORKERS)]
        for order_id in order_ids:
            await client.send_action_async(
                DomainAction(
                    action_type=RESERVATION_CALLBACK,
                    correlation_id=order_id,
                    data={"reservation_id": f"r-{order_id}", "sku": "apple", "quantity": 1},
                    metadata={"success": True, "status_code": 201},
                )
            )
        book = pool.resources.book
        await wait_for(lambda: book.callbacks_received == len(order_ids), timeout=10)
        assert len(pool.workers) == WORKERS
        assert all(w.book is book for w in pool.workers)
    assert sorted(o.order_id for o in book) == sorted(order_ids)
    assert {o.status for o in book} == {"reserved"}
