"""The inventory service's FastAPI app: its workers run in the app's lifespan.

Run it with ``uvicorn --factory services.inventory.app:create_app`` (settings from the
environment: ``REDIS_URL``, ``NUM_INTERNAL_WORKERS``...).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from common.config import CommonAppSettings
from common.workers.pool import WorkerPool
from services.inventory.stock import StockLedger
from services.inventory.worker import InventoryWorker
from services.settings import service_settings

__all__ = ["SERVICE_NAME", "create_app"]

SERVICE_NAME = "inventory"


def create_app(
    settings: CommonAppSettings | None = None, *, ledger: StockLedger | None = None
) -> FastAPI:
    """The inventory app; ``settings`` default to the environment (service name: inventory).

    ``app.state`` holds ``settings``, ``ledger`` and ``pool`` (the running workers).
    """
    settings = service_settings(SERVICE_NAME, settings)
    ledger = ledger if ledger is not None else StockLedger()
    # The ledger is the workers' shared resource (one per pool) and the HTTP routes' too.
    pool = WorkerPool(InventoryWorker, settings, resources={"ledger": ledger})
    app = FastAPI(title="inventory", lifespan=pool.lifespan)
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.pool = pool

    @app.get("/stock/{sku}")
    async def get_stock(sku: str) -> dict[str, Any]:
        return {"sku": sku, "available": ledger.available(sku)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return pool.health()

    return app
