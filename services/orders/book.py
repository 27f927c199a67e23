"""The order book: orders by id and their status, shared by the HTTP API and the workers.

Like the inventory ledger it lives in the process (a stand-in for a database): with several
replicas, a callback may reach a replica that did not take the order, which then records it
with what the callback says.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["Order", "OrderBook", "OrderStatus"]


class OrderStatus(StrEnum):
    PENDING = "pending"  # waiting for inventory's callback
    RESERVED = "reserved"  # inventory reserved the stock
    REJECTED = "rejected"  # inventory said no (not enough stock)
    FAILED = "failed"  # inventory could not process the reservation


class Order(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    sku: str | None = None
    quantity: int | None = None
    status: OrderStatus = OrderStatus.PENDING
    reservation_id: str | None = None
    error: dict[str, Any] | None = None


class OrderBook:
    def __init__(self) -> None:
        self._orders: dict[str, Order] = {}
        self.callbacks_received = 0

    def __iter__(self) -> Iterator[Order]:
        return iter(list(self._orders.values()))

    def get(self, order_id: str) -> Order | None:
        return self._orders.get(order_id)

    def put(self, order: Order) -> Order:
        self._orders[order.order_id] = order
        return order

    def resolve(self, order_id: str, status: OrderStatus, **fields: Any) -> Order:
        """Record the outcome of ``order_id`` (a repeated callback just overwrites it)."""
        current = self._orders.get(order_id) or Order(order_id=order_id)
        return self.put(current.model_copy(update={"status": status, **fields}))
