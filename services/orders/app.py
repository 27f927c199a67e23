"""The orders service's FastAPI app: an HTTP API in front of inventory, with workers.

``POST /orders`` reserves stock with a pseudo-synchronous call to inventory and answers with
the outcome; ``POST /orders/async`` sends the same request with a callback and answers 202 at
once; the orders workers record inventory's callback (``GET /orders/{id}`` shows it). Run it
with ``uvicorn --factory services.orders.app:create_app``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from common.clients.base_redis_client import BaseRedisClient
from common.config import CommonAppSettings
from common.errors import ActionTimeoutError
from common.models.actions import DomainAction
from common.workers.pool import WorkerPool
from services.orders.book import Order, OrderBook, OrderStatus
from services.orders.worker import RESERVATION_CALLBACK, OrdersWorker
from services.settings import service_settings

__all__ = ["SERVICE_NAME", "OrderRequest", "create_app"]

SERVICE_NAME = "orders"


class OrderRequest(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)


def _reserve_action(order_id: str, request: OrderRequest) -> DomainAction:
    return DomainAction(
        action_type="inventory.reserve",
        correlation_id=order_id,
        data={"sku": request.sku, "quantity": request.quantity, "order_id": order_id},
    )


def create_app(
    settings: CommonAppSettings | None = None,
    *,
    book: OrderBook | None = None,
    call_timeout_s: float = 5.0,
) -> FastAPI:
    """The orders app; ``settings`` default to the environment (service name: orders).

    ``app.state`` holds ``settings``, ``book``, ``pool`` and, while the app runs, ``client``
    (the pool's :class:`BaseRedisClient`, which calls inventory).
    """
    settings = service_settings(SERVICE_NAME, settings)
    book = book if book is not None else OrderBook()
    # The book is the workers' shared resource (one per pool) and the HTTP routes' too.
    pool = WorkerPool(OrdersWorker, settings, resources={"book": book})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with pool.lifespan(app):
            app.state.client = pool.client  # the pool's client: one reply listener per process
            try:
                yield
            finally:
                app.state.client = None

    app = FastAPI(title="orders", lifespan=lifespan)
    app.state.settings = settings
    app.state.book = book
    app.state.pool = pool
    app.state.client = None

    def client() -> BaseRedisClient:
        current: BaseRedisClient | None = app.state.client
        if current is None:
            raise HTTPException(503, "the orders service is not running")
        return current

    @app.post("/orders", status_code=201)
    async def place_order(request: OrderRequest) -> Any:
        """Reserve stock now (pseudo-sync call to inventory) and answer with the outcome."""
        order_id = uuid.uuid4().hex
        try:
            reply = await client().send_action_pseudo_sync(
                _reserve_action(order_id, request), timeout=call_timeout_s
            )
        except ActionTimeoutError as exc:
            raise HTTPException(504, f"inventory did not answer: {exc}") from exc
        if reply.success:
            return book.put(
                Order(
                    order_id=order_id,
                    sku=request.sku,
                    quantity=request.quantity,
                    status=OrderStatus.RESERVED,
                    reservation_id=reply.data.get("reservation_id"),
                )
            )
        error = reply.error.model_dump() if reply.error else None
        status = OrderStatus.REJECTED if reply.status_code == 409 else OrderStatus.FAILED
        order = book.put(
            Order(
                order_id=order_id,
                sku=request.sku,
                quantity=request.quantity,
                status=status,
                error=error,
            )
        )
        # Inventory's "no" passes through as 409; anything else is the upstream's failure.
        code = 409 if status is OrderStatus.REJECTED else 502
        return JSONResponse(order.model_dump(mode="json"), status_code=code)

    @app.post("/orders/async", status_code=202)
    async def place_order_async(request: OrderRequest) -> Order:
        """Ask inventory to reserve; its answer comes back as an ``orders`` callback action."""
        order_id = uuid.uuid4().hex
        order = book.put(Order(order_id=order_id, sku=request.sku, quantity=request.quantity))
        await client().send_action_async_with_callback(
            _reserve_action(order_id, request), RESERVATION_CALLBACK
        )
        return order

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> Order:
        order = book.get(order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        return order

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return pool.health()

    return app
