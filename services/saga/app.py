"""The saga's front door: ``POST /checkout`` answers 202, then publishes ``orders.created``.

The event is published on the process's producer (``configure_messaging(...)``, or the
``MessagingTestClient`` in tests); the workers in :mod:`services.saga.workers` take it from
there.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from common.messaging import event

__all__ = ["Checkout", "create_app"]


class Checkout(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    total: float = Field(gt=0)


def create_app() -> FastAPI:
    app = FastAPI(title="saga")

    @app.post("/checkout", status_code=202)
    @event("orders.created", key_field="order_id")
    async def checkout(body: Checkout) -> dict[str, Any]:
        """Answers 202 with the new order; ``orders.created`` is published after the response
        is sent (nothing is published if this raises, or if the body is invalid)."""
        return {"order_id": uuid.uuid4().hex, **body.model_dump()}

    return app
