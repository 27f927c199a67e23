"""The stock ledger: what inventory has, and what it has promised to orders.

The ledger lives in the service process and is shared by its workers (handlers run on one
event loop and never await inside an update, so updates need no lock). It is a stand-in for a
real database: replicas of the service would each have their own. Updates are idempotent,
because delivery is at-least-once: a restock is applied once per key (the action id) and a
reservation once per order id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["InsufficientStockError", "Reservation", "StockLedger"]


class InsufficientStockError(Exception):
    """A reservation asked for more than is available (a business outcome, not a failure)."""

    def __init__(self, sku: str, requested: int, available: int) -> None:
        super().__init__(f"{sku}: requested {requested}, only {available} available")
        self.sku = sku
        self.requested = requested
        self.available = available


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    order_id: str
    sku: str
    quantity: int


class StockLedger:
    """Available quantity per SKU, with idempotent restocks and reservations."""

    def __init__(self, initial: Mapping[str, int] | None = None) -> None:
        self._available: dict[str, int] = dict(initial or {})
        self._restock_keys: set[str] = set()
        self._reservations: dict[str, Reservation] = {}

    def available(self, sku: str) -> int:
        return self._available.get(sku, 0)

    def has_restock(self, key: str) -> bool:
        return key in self._restock_keys

    @property
    def reservations(self) -> dict[str, Reservation]:
        """Reservations by order id."""
        return dict(self._reservations)

    def restock(self, sku: str, quantity: int, *, key: str) -> int:
        """Add ``quantity`` of ``sku`` once per ``key``; returns the quantity now available."""
        if key not in self._restock_keys:
            self._restock_keys.add(key)
            self._available[sku] = self.available(sku) + quantity
        return self.available(sku)

    def reserve(self, sku: str, quantity: int, *, order_id: str) -> Reservation:
        """Take ``quantity`` of ``sku`` for ``order_id`` (again: the same reservation)."""
        existing = self._reservations.get(order_id)
        if existing is not None:
            return existing
        available = self.available(sku)
        if quantity > available:
            raise InsufficientStockError(sku, quantity, available)
        self._available[sku] = available - quantity
        reservation = Reservation(uuid.uuid4().hex, order_id, sku, quantity)
        self._reservations[order_id] = reservation
        return reservation
