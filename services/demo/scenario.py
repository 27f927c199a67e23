"""The scripted client: runs both services in this process and sends them a known workload.

Everything the demo sends has a known expected outcome (handled, replied to, called back or
dead-lettered with a given reason), so that :mod:`services.demo.report` can check that nothing
was lost and nothing unexpected happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from common.clients.base_redis_client import BaseRedisClient
from common.clients.queue_manager import QueueManager
from common.clients.redis_manager import RedisManager
from common.config import CommonAppSettings
from common.models.actions import DomainAction
from common.workers.pool import WorkerPool
from common.workers.stats import WorkerStats
from services import inventory, orders
from services.inventory.stock import StockLedger
from services.orders.book import OrderBook, OrderStatus

__all__ = ["DemoOptions", "DemoResult", "Plan", "Scenario"]

SKUS = ("apple", "pear", "plum", "fig", "kiwi")
SEED_QUANTITY = 10_000
OVERSIZED = 10**9  # more than inventory will ever have: a guaranteed "409 not enough stock"
CLIENT_SERVICE = "demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    actions: int = 300
    concurrency: int = 32
    timeout_s: float = 25.0
    call_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Plan:
    """How many of each kind the demo sends, derived from ``--actions``."""

    restocks: int  # async inventory.restock (fire-and-forget)
    checks: int  # direct pseudo-sync inventory.check
    http_orders: int  # POST /orders -> pseudo-sync inventory.reserve (the last one oversized)
    callback_orders: int  # POST /orders/async -> callback (the last one oversized)
    audits_async: int = 2  # inventory.audit fire-and-forget: always fails
    audits_sync: int = 1  # inventory.audit pseudo-sync: the caller gets a 500 after retries
    malformed: int = 2  # raw junk XADDed onto inventory's stream
    unknown: int = 1  # pseudo-sync inventory.teleport: the caller gets a 404

    @classmethod
    def for_actions(cls, actions: int) -> Plan:
        return cls(
            restocks=actions,
            checks=max(10, actions // 10),
            http_orders=max(10, actions // 10),
            callback_orders=max(5, actions // 20),
        )

    @property
    def pseudo_sync_calls(self) -> int:
        return self.checks + self.http_orders + self.audits_sync + self.unknown

    def expected_dead_letters(self) -> dict[str, int]:
        return {
            "max_retries": self.audits_async + self.audits_sync,
            "malformed": self.malformed,
            "unknown_action": self.unknown,
        }


@dataclass(slots=True)
class DemoResult:
    """What the demo observed; :mod:`services.demo.report` turns it into checks."""

    plan: Plan
    settings: CommonAppSettings
    restock_ids: list[str] = field(default_factory=list)
    restocks_applied: int = 0
    check_replies: int = 0
    http_statuses: Counter[int] = field(default_factory=Counter)
    callback_order_ids: list[str] = field(default_factory=list)
    callback_statuses: Counter[str] = field(default_factory=Counter)
    audit_sync_status: int | None = None
    unknown_status: int | None = None
    check_latencies_s: list[float] = field(default_factory=list)
    http_latencies_s: list[float] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    stats: dict[str, WorkerStats] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    stock: dict[str, int] = field(default_factory=dict)
    expected_stock: dict[str, int] = field(default_factory=dict)
    late_replies: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _sum_stats(pool: WorkerPool[Any]) -> WorkerStats:
    total = WorkerStats()
    for worker in pool.workers:
        s = worker.stats
        for f in dataclasses.fields(WorkerStats):
            value = getattr(s, f.name)
            if isinstance(value, int):
                setattr(total, f.name, getattr(total, f.name) + value)
        for reason, n in s.dead_lettered.items():
            total.dead_lettered[reason] = total.dead_lettered.get(reason, 0) + n
    return total


class Scenario:
    """One run of the demo. ``await scenario.run()`` returns the :class:`DemoResult`."""

    def __init__(self, settings: CommonAppSettings, options: DemoOptions | None = None) -> None:
        self.options = options or DemoOptions()
        self.settings = settings
        self.plan = Plan.for_actions(self.options.actions)
        self.result = DemoResult(self.plan, settings)
        self.queues = QueueManager(settings.queue_prefix, settings.environment)
        self.ledger = StockLedger()
        self.book = OrderBook()
        self.inventory_app = inventory.create_app(settings, ledger=self.ledger)
        self.orders_app = orders.create_app(
            settings, book=self.book, call_timeout_s=self.options.call_timeout_s
        )
        self.inventory_pool: WorkerPool[Any] = self.inventory_app.state.pool
        self.orders_pool: WorkerPool[Any] = self.orders_app.state.pool
        self._limit = asyncio.Semaphore(self.options.concurrency)
        self._calls_done = 0

    # -- progress (polled by the progress view) --------------------------------------------

    def progress(self) -> list[tuple[str, int, int]]:
        """(label, done, total) for each kind of work."""
        plan, r = self.plan, self.result
        applied = sum(1 for i in r.restock_ids if self.ledger.has_restock(i))
        called_back = sum(
            1
            for i in r.callback_order_ids
            if (o := self.book.get(i)) is not None and o.status is not OrderStatus.PENDING
        )
        dead = sum(_sum_stats(self.inventory_pool).dead_lettered.values())
        return [
            ("async inventory.restock handled", applied, plan.restocks),
            ("pseudo-sync calls answered", self._calls_done, plan.pseudo_sync_calls),
            ("callbacks received by orders", called_back, plan.callback_orders),
            ("dead letters", dead, sum(plan.expected_dead_letters().values())),
        ]

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> DemoResult:
        started = time.monotonic()
        async with AsyncExitStack() as outer:
            manager = await outer.enter_async_context(RedisManager(self.settings))
            redis = manager.get_client()
            client = BaseRedisClient(CLIENT_SERVICE, redis, self.settings)
            outer.push_async_callback(client.close)
            since = await _server_time_ms(redis)
            try:
                async with AsyncExitStack() as services:
                    for app in (self.inventory_app, self.orders_app):
                        await services.enter_async_context(app.router.lifespan_context(app))
                    transport = httpx.ASGITransport(app=self.orders_app)
                    http = await services.enter_async_context(
                        httpx.AsyncClient(transport=transport, base_url="http://orders")
                    )
                    async with asyncio.timeout(self.options.timeout_s):
                        await self._seed(client)
                        await self._traffic(client, redis, http)
                        await self._settle(redis, since)
            except TimeoutError:
                self.result.errors.append(
                    f"timed out after {self.options.timeout_s:g}s: {self._unsettled()}"
                )
            except Exception as exc:
                self.result.errors.append(f"demo crashed: {exc!r}")
            # The pools have stopped: their stats are final.
            self.result.late_replies = client.late_replies
            await self._collect(redis, since)
        self.result.elapsed_s = time.monotonic() - started
        return self.result

    async def _seed(self, client: BaseRedisClient) -> None:
        await asyncio.gather(
            *(
                client.send_action_pseudo_sync(
                    DomainAction(
                        action_type="inventory.restock",
                        data={"sku": sku, "quantity": SEED_QUANTITY},
                    ),
                    timeout=self.options.call_timeout_s,
                )
                for sku in SKUS
            )
        )

    async def _traffic(
        self, client: BaseRedisClient, redis: aioredis.Redis, http: httpx.AsyncClient
    ) -> None:
        plan = self.plan
        jobs: list[Awaitable[None]] = [
            self._restocks(client),
            self._malformed(redis),
            *(self._guarded(self._check, client, i) for i in range(plan.checks)),
            *(self._guarded(self._http_order, http, i) for i in range(plan.http_orders)),
            *(self._guarded(self._callback_order, http, i) for i in range(plan.callback_orders)),
            *(self._guarded(self._audit_async, client, i) for i in range(plan.audits_async)),
            *(self._guarded(self._audit_sync, client, i) for i in range(plan.audits_sync)),
            *(self._guarded(self._unknown, client, i) for i in range(plan.unknown)),
        ]
        await asyncio.gather(*jobs)

    async def _guarded(
        self, job: Callable[[Any, int], Awaitable[None]], target: Any, i: int
    ) -> None:
        async with self._limit:
            try:
                await job(target, i)
            except Exception as exc:
                self.result.errors.append(f"{job.__name__} #{i} failed: {exc!r}")

    async def _restocks(self, client: BaseRedisClient) -> None:
        batch = 50
        for start in range(0, self.plan.restocks, batch):
            actions = [
                DomainAction(
                    action_type="inventory.restock",
                    data={"sku": SKUS[i % len(SKUS)], "quantity": 1},
                )
                for i in range(start, min(start + batch, self.plan.restocks))
            ]
            self.result.restock_ids.extend(str(a.action_id) for a in actions)
            await client.send_actions_async(actions)
            await asyncio.sleep(0)  # let the other traffic interleave

    async def _check(self, client: BaseRedisClient, i: int) -> None:
        action = DomainAction(action_type="inventory.check", data={"sku": SKUS[i % len(SKUS)]})
        t0 = time.perf_counter()
        reply = await client.send_action_pseudo_sync(action, timeout=self.options.call_timeout_s)
        self.result.check_latencies_s.append(time.perf_counter() - t0)
        self._calls_done += 1
        if reply.success and "available" in reply.data:
            self.result.check_replies += 1

    def _order_body(self, i: int, last: bool) -> dict[str, Any]:
        return {"sku": SKUS[i % len(SKUS)], "quantity": OVERSIZED if last else 1 + i % 3}

    async def _http_order(self, http: httpx.AsyncClient, i: int) -> None:
        body = self._order_body(i, i == self.plan.http_orders - 1)
        t0 = time.perf_counter()
        response = await http.post("/orders", json=body)
        self.result.http_latencies_s.append(time.perf_counter() - t0)
        self._calls_done += 1
        self.result.http_statuses[response.status_code] += 1

    async def _callback_order(self, http: httpx.AsyncClient, i: int) -> None:
        body = self._order_body(i, i == self.plan.callback_orders - 1)
        response = await http.post("/orders/async", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"POST /orders/async answered {response.status_code}")
        self.result.callback_order_ids.append(response.json()["order_id"])

    async def _audit_async(self, client: BaseRedisClient, i: int) -> None:
        await client.send_action_async(DomainAction(action_type="inventory.audit", data={"i": i}))

    async def _audit_sync(self, client: BaseRedisClient, i: int) -> None:
        action = DomainAction(action_type="inventory.audit", data={"i": i})
        reply = await client.send_action_pseudo_sync(action, timeout=self.options.call_timeout_s)
        self._calls_done += 1
        self.result.audit_sync_status = reply.status_code

    async def _unknown(self, client: BaseRedisClient, i: int) -> None:
        action = DomainAction(action_type="inventory.teleport", data={"i": i})
        reply = await client.send_action_pseudo_sync(action, timeout=self.options.call_timeout_s)
        self._calls_done += 1
        self.result.unknown_status = reply.status_code

    async def _malformed(self, redis: aioredis.Redis) -> None:
        stream = self.queues.action_stream(inventory.SERVICE_NAME)
        junk: list[dict[bytes, bytes]] = [
            {b"junk": b"this is not an action"},  # no 'action' field at all
            {b"action": b"{not json"},  # an 'action' field that is not JSON
        ]
        for fields in junk[: self.plan.malformed]:
            await redis.xadd(stream, fields)  # type: ignore[arg-type]  # bytes keys are fine

    # -- waiting until everything has settled ----------------------------------------------

    async def _settle(self, redis: aioredis.Redis, since: int) -> None:
        expected_dead = sum(self.plan.expected_dead_letters().values())
        while True:
            dead = await self._dead_letter_count(redis, since)
            pending = await self._pending(redis)
            if not self._unsettled() and dead >= expected_dead and not any(pending.values()):
                return
            await asyncio.sleep(0.02)

    def _unsettled(self) -> str:
        waiting = [
            f"{label} {done}/{total}" for label, done, total in self.progress() if done < total
        ]
        return ", ".join(waiting)

    async def _dead_letter_count(self, redis: aioredis.Redis, since: int) -> int:
        stream = self.queues.dead_letter_stream(inventory.SERVICE_NAME)
        return len(await _entries_since(redis, stream, since))

    async def _pending(self, redis: aioredis.Redis) -> dict[str, int]:
        counts = {}
        for service in (inventory.SERVICE_NAME, orders.SERVICE_NAME):
            stream = self.queues.action_stream(service)
            try:
                info = await redis.xpending(stream, self.queues.consumer_group(service))
                counts[service] = int(info["pending"])
            except aioredis.ResponseError:  # no group yet
                counts[service] = 0
        return counts

    # -- collecting the facts ----------------------------------------------------------------

    async def _collect(self, redis: aioredis.Redis, since: int) -> None:
        r = self.result
        r.restocks_applied = sum(1 for i in r.restock_ids if self.ledger.has_restock(i))
        for order_id in r.callback_order_ids:
            order = self.book.get(order_id)
            r.callback_statuses[order.status.value if order else "missing"] += 1
        r.stats = {
            inventory.SERVICE_NAME: _sum_stats(self.inventory_pool),
            orders.SERVICE_NAME: _sum_stats(self.orders_pool),
        }
        for service in (inventory.SERVICE_NAME, orders.SERVICE_NAME):
            stream = self.queues.dead_letter_stream(service)
            for fields in await _entries_since(redis, stream, since):
                reason = fields.get(b"reason", b"?")
                r.dead_letters[reason.decode() if isinstance(reason, bytes) else str(reason)] += 1
        r.pending = await self._pending(redis)
        r.stock = {sku: self.ledger.available(sku) for sku in SKUS}
        r.expected_stock = self._expected_stock()

    def _expected_stock(self) -> dict[str, int]:
        """Seed + async restocks - what the order book says was reserved: computed without
        the ledger, so a lost restock or a reservation no order knows of shows up."""
        expected = {sku: SEED_QUANTITY for sku in SKUS}
        for i in range(self.plan.restocks):
            expected[SKUS[i % len(SKUS)]] += 1
        for order in self.book:
            if order.status is OrderStatus.RESERVED and order.sku and order.quantity:
                expected[order.sku] -= order.quantity
        return expected


async def _entries_since(
    redis: aioredis.Redis, stream: str, since_ms: int
) -> list[dict[bytes | str, bytes | str]]:
    """The fields of the entries added to ``stream`` since ``since_ms`` (server time)."""
    entries = await redis.xrange(stream, min=f"{since_ms}-0", max="+") or []
    return [fields for _id, fields in entries if fields is not None]


async def _server_time_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


def unique_prefix() -> str:
    return "demo" + uuid.uuid4().hex[:8]
