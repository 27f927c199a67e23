"""Declarative workers for the ``common list`` and ``common docs`` tests (imported by name)."""

from __future__ import annotations

from pydantic import BaseModel

from common.messaging import worker


class OrderIn(BaseModel):
    order_id: int
    items: list[str] = []


class OrderOut(BaseModel):
    order_id: int
    total: float


@worker(
    "opsdemo.orders",
    output_topic="opsdemo.processed",
    group_id="opsdemo-billing",
    concurrency=10,
    max_retries=3,
    input_schema=OrderIn,
    output_schema=OrderOut,
)
async def bill(order: OrderIn) -> OrderOut:
    return OrderOut(order_id=order.order_id, total=1.0)


@worker("opsdemo.processed", concurrency=5, consumers=2)
async def archive(payload: dict[str, object]) -> None:
    return None
