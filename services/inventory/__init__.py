"""The inventory service: stock levels, reservations, and an action that always fails."""

from services.inventory.app import SERVICE_NAME, create_app
from services.inventory.stock import InsufficientStockError, Reservation, StockLedger
from services.inventory.worker import AuditUnavailableError, InventoryWorker

__all__ = [
    "SERVICE_NAME",
    "AuditUnavailableError",
    "InsufficientStockError",
    "InventoryWorker",
    "Reservation",
    "StockLedger",
    "create_app",
]
