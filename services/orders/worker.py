"""The orders worker: records inventory's answers, which arrive as callback actions."""

from __future__ import annotations

from common.models.actions import DomainAction
from common.workers.base_worker import BaseWorker
from common.workers.resources import Resources
from services.orders.book import OrderBook, OrderStatus

__all__ = ["RESERVATION_CALLBACK", "OrdersWorker"]

RESERVATION_CALLBACK = "orders.reservation_result"


class OrdersWorker(BaseWorker):
    """Handles ``orders.reservation_result``, the callback of ``inventory.reserve``.

    The :class:`OrderBook` is shared by all workers of the pool (and by the HTTP API): it is
    created once per pool by :meth:`on_startup`, unless one was passed as
    ``WorkerPool(..., resources={"book": book})``.
    """

    @classmethod
    async def on_startup(cls, resources: Resources) -> None:
        resources.setdefault("book", OrderBook)

    @property
    def book(self) -> OrderBook:
        book: OrderBook = self.resources.book
        return book

    async def _handle_orders_reservation_result(self, action: DomainAction) -> None:
        # The callback carries the request's correlation id, which is the order id; its
        # metadata says whether inventory succeeded and with which status code.
        order_id = action.correlation_id or str(action.action_id)
        self.book.callbacks_received += 1
        if action.metadata.get("success"):
            self.book.resolve(
                order_id,
                OrderStatus.RESERVED,
                reservation_id=action.data.get("reservation_id"),
                sku=action.data.get("sku"),
                quantity=action.data.get("quantity"),
            )
        else:
            status = (
                OrderStatus.REJECTED
                if action.metadata.get("status_code") == 409
                else OrderStatus.FAILED
            )
            self.book.resolve(order_id, status, error=action.metadata.get("error") or action.data)
