"""The orders service: places orders by calling inventory (pseudo-sync, or with a callback)."""

from services.orders.app import SERVICE_NAME, OrderRequest, create_app
from services.orders.book import Order, OrderBook, OrderStatus
from services.orders.worker import RESERVATION_CALLBACK, OrdersWorker

__all__ = [
    "RESERVATION_CALLBACK",
    "SERVICE_NAME",
    "Order",
    "OrderBook",
    "OrderRequest",
    "OrderStatus",
    "OrdersWorker",
    "create_app",
]
