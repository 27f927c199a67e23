"""The inventory worker: restock, check and reserve stock; audit always fails."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import NonRetryableError
from common.models.actions import DomainAction, DomainActionResponse, ErrorDetail
from common.workers.base_worker import BaseWorker
from common.workers.resources import Resources
from services.inventory.stock import InsufficientStockError, StockLedger

__all__ = ["AuditUnavailableError", "InventoryWorker"]

M = TypeVar("M", bound=BaseModel)


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Restock(_Payload):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)


class Check(_Payload):
    sku: str = Field(min_length=1, max_length=64)


class Reserve(_Payload):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    order_id: str | None = Field(None, max_length=200)


class AuditUnavailableError(RuntimeError):
    """The audit backend never answers: ``inventory.audit`` fails on every delivery."""


def _parse(model: type[M], action: DomainAction) -> M:
    try:
        return model.model_validate(action.data)
    except ValidationError as exc:
        # Bad input never gets better by retrying: dead-letter it and tell the caller (422).
        raise NonRetryableError(
            f"invalid {action.action_type} data: {exc.errors()[0]['msg']}"
        ) from exc


class InventoryWorker(BaseWorker):
    """Handles ``inventory.restock``, ``inventory.check``, ``inventory.reserve`` and
    ``inventory.audit`` against one :class:`StockLedger` shared by all workers of the pool.

    The ledger is a shared resource: :meth:`on_startup` creates it once per pool (unless one
    was passed as ``WorkerPool(..., resources={"ledger": ledger})``), so every worker, however
    many, sees the same stock, also under ``python -m common run ... --workers 4``.
    """

    @classmethod
    async def on_startup(cls, resources: Resources) -> None:
        resources.setdefault("ledger", StockLedger)

    @property
    def ledger(self) -> StockLedger:
        ledger: StockLedger = self.resources.ledger
        return ledger

    async def _handle_inventory_restock(self, action: DomainAction) -> dict[str, Any]:
        req = _parse(Restock, action)
        available = self.ledger.restock(req.sku, req.quantity, key=str(action.action_id))
        return {"sku": req.sku, "available": available}

    async def _handle_inventory_check(self, action: DomainAction) -> dict[str, Any]:
        req = _parse(Check, action)
        return {"sku": req.sku, "available": self.ledger.available(req.sku)}

    async def _handle_inventory_reserve(self, action: DomainAction) -> DomainActionResponse:
        req = _parse(Reserve, action)
        order_id = req.order_id or action.correlation_id or str(action.action_id)
        try:
            reservation = self.ledger.reserve(req.sku, req.quantity, order_id=order_id)
        except InsufficientStockError as exc:
            # Not a failure of the worker: the caller gets a definite "no" (HTTP-like 409).
            return DomainActionResponse(
                success=False,
                status_code=409,
                data={"order_id": order_id, "sku": exc.sku, "available": exc.available},
                error=ErrorDetail.from_exception(exc, requested=exc.requested),
            )
        return DomainActionResponse(
            status_code=201,
            data={
                "order_id": order_id,
                "reservation_id": reservation.reservation_id,
                "sku": reservation.sku,
                "quantity": reservation.quantity,
                "remaining": self.ledger.available(reservation.sku),
            },
        )

    async def _handle_inventory_audit(self, action: DomainAction) -> None:
        raise AuditUnavailableError(
            "the audit backend is unreachable (inventory.audit always fails, to show "
            "retries and dead letters)"
        )
