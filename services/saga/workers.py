"""The saga's steps and its compensation (see the package docstring).

Each step is idempotent per order id, so that a re-delivery (after a crash between the
handler and its ACK) changes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.errors import NonRetryableError
from common.messaging import publish, worker

__all__ = [
    "CARD_LIMIT",
    "LEDGER",
    "SagaLedger",
    "compensate_inventory",
    "confirm_order",
    "process_payment",
    "reserve_inventory",
]

CARD_LIMIT = 100.0  # payments above this are declined: the saga compensates


@dataclass
class SagaLedger:
    """Stock, reservations and the fate of each order (what the demo and the tests read)."""

    stock: dict[str, int] = field(default_factory=dict)
    reservations: dict[str, tuple[str, int]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # order id -> confirmed|cancelled

    def reset(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.reservations.clear()
        self.outcomes.clear()

    def reserve(self, order_id: str, sku: str, quantity: int) -> None:
        if order_id in self.reservations:
            return
        if self.stock.get(sku, 0) < quantity:
            raise NonRetryableError(f"not enough {sku} for order {order_id}")
        self.stock[sku] -= quantity
        self.reservations[order_id] = (sku, quantity)

    def release(self, order_id: str) -> None:
        found = self.reservations.pop(order_id, None)
        if found is not None:
            sku, quantity = found
            self.stock[sku] += quantity


LEDGER = SagaLedger()


# Step 1: reserve inventory
@worker(topic="orders.created", output_topic="inventory.reserved")
async def reserve_inventory(order: dict[str, Any]) -> dict[str, Any]:
    LEDGER.reserve(order["order_id"], order["sku"], order["quantity"])
    return {"order_id": order["order_id"], "amount": order["total"]}


# Step 2: process payment; a decline goes to payments.failed (the compensation's topic)
@worker(topic="inventory.reserved", output_topic="payments.completed")
async def process_payment(reservation: dict[str, Any]) -> dict[str, Any] | None:
    if reservation["amount"] > CARD_LIMIT:
        await publish(
            "payments.failed", {"order_id": reservation["order_id"], "reason": "card declined"}
        )
        return None  # nothing for payments.completed
    return {"order_id": reservation["order_id"], "amount": reservation["amount"]}


# Step 3: confirm the order
@worker(topic="payments.completed", output_topic="orders.confirmed")
async def confirm_order(payment: dict[str, Any]) -> dict[str, Any]:
    LEDGER.outcomes[payment["order_id"]] = "confirmed"
    return {"order_id": payment["order_id"], "status": "confirmed"}


# Compensation: give the stock back, cancel the order
@worker(topic="payments.failed", output_topic="orders.cancelled")
async def compensate_inventory(failure: dict[str, Any]) -> dict[str, Any]:
    LEDGER.release(failure["order_id"])
    LEDGER.outcomes[failure["order_id"]] = "cancelled"
    return {"order_id": failure["order_id"], "status": "cancelled", "reason": failure["reason"]}
