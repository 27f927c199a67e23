"""The saga's front door: ``POST /checkout`` publishes ``orders.created`` and answers 202.

The event is published on the process's producer (``configure_messaging(...)``, or the
``MessagingTestClient`` in tests); the workers in :mod:`services.saga.workers` take it from
there.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from common.messaging import publish_event

__all__ = ["Checkout", "create_app"]


class Checkout(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0)
    total: float = Field(gt=0)


def create_app() -> FastAPI:
    app = FastAPI(title="saga")

    # ------------------------------------------------------------------------------------
    # PLACEHOLDER for the `@event` decorator (branch h/events, not on main yet). Once it is
    # merged, this endpoint becomes:
    #
    #     @app.post("/checkout", status_code=202)
    #     @event("orders.created", key_field="order_id")
    #     async def checkout(body: Checkout) -> dict[str, Any]:
    #         return {"order_id": uuid.uuid4().hex, **body.model_dump()}
    #
    # (published after the response is sent; nothing on an exception), and its test in
    # tests/integration/test_declarative_services.py asserts it through MessagingTestClient.
    # Until then it publishes explicitly, before answering:
    # ------------------------------------------------------------------------------------
    @app.post("/checkout", status_code=202)
    async def checkout(body: Checkout) -> dict[str, Any]:
        order = {"order_id": uuid.uuid4().hex, **body.model_dump()}
        await publish_event("orders.created", order, key=order["order_id"])
        return order

    return app
