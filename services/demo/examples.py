"""The declarative examples in the demo: the ETL chain, the fan-out and the saga, each run in
this process on the demo's settings, with one line per thing it did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from common.config import CommonAppSettings
from common.messaging import configure_messaging, get_producer, run_workers
from common.messaging.producer import Producer
from services import etl, fanout, saga

__all__ = ["ExampleResult", "run_examples"]


@dataclass(slots=True)
class ExampleResult:
    name: str
    ok: bool = False
    lines: list[str] = field(default_factory=list)


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _etl(settings: CommonAppSettings, producer: Producer, timeout: float) -> ExampleResult:
    result = ExampleResult("ETL chain (extract -> transform -> load)")
    etl.WAREHOUSE.clear()
    readings = [
        {"reading_id": "r1", "sensor": "boiler", "celsius": 100},
        {"reading_id": "r2", "sensor": "fridge", "celsius": 4},
        {"reading_id": "r3", "sensor": "probe", "celsius": 21, "test": True},  # dropped
    ]
    async with run_workers(etl.extract, etl.transform, etl.load, settings=settings):
        for reading in readings:
            await producer.send("readings.raw", reading)
        result.ok = await _until(lambda: len(etl.WAREHOUSE.rows) == 2, timeout)
    for row in etl.WAREHOUSE.rows.values():
        result.lines.append(
            f"loaded {row['reading_id']} ({row['sensor']}): {row['celsius']} C = "
            f"{row['fahrenheit']} F"
        )
    result.lines.append("dropped r3 (test data: extract returned None, nothing published)")
    return result


async def _fanout(settings: CommonAppSettings, producer: Producer, timeout: float) -> ExampleResult:
    result = ExampleResult("fan-out (users.created -> 3 groups)")
    fanout.SINKS.clear()
    users = [{"id": f"u{n}", "name": f"User {n}", "email": f"u{n}@example.com"} for n in range(3)]
    groups = (fanout.welcome_email, fanout.track_signup, fanout.create_contact)
    sinks = fanout.SINKS
    async with run_workers(*groups, settings=settings):
        for user in users:
            await producer.send("users.created", user)
        result.ok = await _until(
            lambda: (len(sinks.emails), len(sinks.signups), len(sinks.contacts)) == (3, 3, 3),
            timeout,
        )
    result.lines += [
        f"email group sent {len(sinks.emails)} welcome emails",
        f"analytics group (2 consumers) tracked {len(sinks.signups)} sign-ups",
        f"crm group created {len(sinks.contacts)} contacts",
    ]
    return result


async def _saga(settings: CommonAppSettings, producer: Producer, timeout: float) -> ExampleResult:
    result = ExampleResult("saga (reserve -> pay -> confirm, compensate on decline)")
    ledger = saga.LEDGER
    ledger.reset({"apple": 10})
    steps = (saga.reserve_inventory, saga.process_payment, saga.confirm_order)
    orders = [
        {"order_id": "o1", "sku": "apple", "quantity": 2, "total": 20.0},
        {"order_id": "o2", "sku": "apple", "quantity": 3, "total": 500.0},  # declined
    ]
    async with run_workers(*steps, saga.compensate_inventory, settings=settings):
        for order in orders:
            await producer.send("orders.created", order)
        result.ok = await _until(lambda: len(ledger.outcomes) == 2, timeout)
    result.ok = result.ok and ledger.outcomes == {"o1": "confirmed", "o2": "cancelled"}
    result.ok = result.ok and ledger.stock == {"apple": 8}
    for order_id, outcome in sorted(ledger.outcomes.items()):
        result.lines.append(f"order {order_id}: {outcome}")
    result.lines.append(f"stock after compensation: {ledger.stock}")
    return result


async def run_examples(settings: CommonAppSettings, timeout: float = 10.0) -> list[ExampleResult]:
    """Run the three examples one after the other (each with its own workers)."""
    settings = settings.model_copy(update={"service_name": "examples"})
    # The saga publishes with publish(): the process defaults must be the demo's settings.
    configure_messaging(**settings.model_dump())
    producer = get_producer()
    try:
        return [
            await _etl(settings, producer, timeout),
            await _fanout(settings, producer, timeout),
            await _saga(settings, producer, timeout),
        ]
    finally:
        await producer.close()
