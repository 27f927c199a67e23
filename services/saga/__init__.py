"""A saga of ``@worker`` steps with a compensation step when payment fails (seed 002's).

``orders.created`` -> :func:`reserve_inventory` -> ``inventory.reserved`` ->
:func:`process_payment` -> ``payments.completed`` -> :func:`confirm_order` ->
``orders.confirmed``. A declined payment is published on ``payments.failed`` instead, where
:func:`compensate_inventory` releases the reservation and publishes ``orders.cancelled``.
:func:`create_app` is a FastAPI front door that publishes ``orders.created``.
"""

from services.saga.app import create_app
from services.saga.workers import (
    CARD_LIMIT,
    LEDGER,
    SagaLedger,
    compensate_inventory,
    confirm_order,
    process_payment,
    reserve_inventory,
)

__all__ = [
    "CARD_LIMIT",
    "LEDGER",
    "SagaLedger",
    "compensate_inventory",
    "confirm_order",
    "create_app",
    "process_payment",
    "reserve_inventory",
]
